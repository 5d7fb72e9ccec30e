package event

import (
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// StringMembers returns the string values of the top-level members of obj named
// names, in their order, "" for a name with no string value. obj must be a JSON
// object that Parse accepted (an Envelope's Detail): it is read once, without
// validating it again, and on anything else the result is only safe, not useful.
//
// It gives what json.Unmarshal into a struct of string fields with those names
// gives, read once instead of twice (the decoder validates before it decodes):
// names match as encoding/json matches field names (case-insensitively, escapes
// decoded), the last member of a name wins, and a member whose value is null or
// not a string leaves the value as it was.
func StringMembers(obj []byte, names ...string) []string {
	folded := make([]string, len(names))
	for i, n := range names {
		folded[i] = string(foldName([]byte(n)))
	}
	values := make([]string, len(names))
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return values
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return values // '}' or not an object after all
		}
		keyEnd := stringEnd(obj, i)
		key := obj[i:keyEnd]
		i = skipSpace(obj, keyEnd)
		if i >= len(obj) || obj[i] != ':' {
			return values
		}
		i = skipSpace(obj, i+1)
		valueEnd := valueEnd(obj, i)
		value := obj[i:valueEnd]
		i = skipSpace(obj, valueEnd)
		if len(value) > 0 && value[0] == '"' {
			for n, f := range folded {
				if nameMatches(key, f) {
					if v, ok := unquote(value); ok {
						values[n] = v
					}
				}
			}
		}
		if i >= len(obj) || obj[i] != ',' {
			return values
		}
		i++
	}
}

// nameMatches reports whether the member name token key folds to folded; a plain
// ASCII name (the usual one) is compared in place.
func nameMatches(key []byte, folded string) bool {
	if len(key) < 2 {
		return false
	}
	inner := key[1 : len(key)-1]
	if !plainASCII(inner) {
		k, ok := unquote(key)
		return ok && string(foldName([]byte(k))) == folded
	}
	if len(inner) != len(folded) {
		return false
	}
	for i, c := range inner {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != folded[i] {
			return false
		}
	}
	return true
}

// plainASCII reports whether a string token's content needs no decoding.
func plainASCII(inner []byte) bool {
	for _, c := range inner {
		if c < 0x20 || c == '\\' || c == '"' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// unquote decodes a JSON string token: by slicing when it is plain ASCII, through
// encoding/json when it has escapes or other bytes (invalid UTF-8 becomes U+FFFD
// there, as in any decode).
func unquote(tok []byte) (string, bool) {
	if len(tok) < 2 || tok[0] != '"' || tok[len(tok)-1] != '"' {
		return "", false
	}
	if inner := tok[1 : len(tok)-1]; plainASCII(inner) {
		return string(inner), true
	}
	var s string
	err := json.Unmarshal(tok, &s)
	return s, err == nil
}

// foldName folds a member name as encoding/json does to match struct fields.
func foldName(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, unicode.ToUpper(unicode.ToLower(r)))
		i += n
	}
	return out
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just after the string that starts at b[i] ('"').
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just after the value that starts at b[i]: a string,
// an object or array (counting brackets outside strings), or a literal or number.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

package event

import (
	"unicode"
	"unicode/utf8"
)

// StringMembers returns the string values of the top-level members of obj named
// names, in their order, "" for a name with no string value. obj must be a JSON
// object that Parse accepted (an Envelope's Detail); on anything else it gives what
// it read before the first error.
//
// It gives what json.Unmarshal into a struct of string fields with those names
// gives, in one pass instead of two (the decoder validates before it decodes):
// names match as encoding/json matches field names (case-insensitively, escapes
// decoded), the last member of a name wins, and a member whose value is null or
// not a string leaves the value as it was.
func StringMembers(obj []byte, names ...string) []string {
	folded := make([]string, len(names))
	for i, n := range names {
		folded[i] = string(foldName([]byte(n)))
	}
	values := make([]string, len(names))
	stringMembers(obj, folded, values, false)
	return values
}

// stringMembers is StringMembers with the names already folded, filling values
// (as long as folded) in place. shared: see stringValue.
func stringMembers(obj []byte, folded, values []string, shared bool) {
	r := reader{b: obj}
	r.space()
	m := r.members('{')
	for key, value, ok := m.next(); ok; key, value, ok = m.next() {
		if value[0] != '"' {
			continue // null, or not a string: the value stays as it was
		}
		for n, f := range folded {
			if nameMatches(key, f) {
				if v, ok := stringValue(value, shared); ok {
					values[n] = v
				}
			}
		}
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
		k, ok := stringValue(key, false)
		return ok && string(foldName([]byte(k))) == folded
	}
	return upperEqual(inner, folded)
}

// upperEqual reports whether plain ASCII name, upper-cased, is upper.
func upperEqual(name []byte, upper string) bool {
	if len(name) != len(upper) {
		return false
	}
	for i, c := range name {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

// plainASCII reports whether a string token's content needs no decoding.
func plainASCII(inner []byte) bool {
	for _, c := range inner {
		if !plainByte[c] {
			return false
		}
	}
	return true
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

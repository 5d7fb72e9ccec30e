package callback

import (
	"bytes"
	"encoding/json"
)

// JSON written for AWS is not HTML-escaped: json.Marshal writes each of <, > and &
// as a 6-byte \u003c escape, which counts against the 256 KiB output limit (50 KB of
// "<" would become a 300 KB claim check). internal/event.MarshalJSON does the same
// for the other packages; this package imports no sibling, hence its own copy.

// marshalJSON encodes v as compact JSON without HTML escaping or trailing newline.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// unescapeHTML rewrites the escapes \u003c, \u003e and \u0026 of valid JSON b as the
// characters <, > and &, which JSON allows unescaped in strings: the same document
// in fewer bytes. In valid JSON a backslash occurs only in a string and always starts
// an escape, so reading escape by escape never mistakes an escaped backslash
// followed by "u003c" for one.
func unescapeHTML(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u00`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' || i+1 >= len(b) {
			out = append(out, c)
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) {
			if r, ok := htmlEscapes[string(bytes.ToLower(b[i+2:i+6]))]; ok {
				out = append(out, r)
				i += 5
				continue
			}
		}
		out = append(out, c, b[i+1]) // any other escape stays as it is
		i++
	}
	return out
}

var htmlEscapes = map[string]byte{"003c": '<', "003e": '>', "0026": '&'}

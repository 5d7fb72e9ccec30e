// Package awsjson encodes JSON the way the worker writes it for AWS (event details,
// task outputs, claim checks, manifests): compact, and without HTML escapes, which
// json.Marshal writes as 6 bytes each against every payload limit.
package awsjson

import (
	"bytes"
	"encoding/json"
)

// Marshal encodes v as compact JSON without HTML escaping: JSON written for AWS
// keeps <, > and & as they are, where json.Marshal writes each as a 6-byte \u003c
// escape that counts against every payload limit (event entries, task outputs). A
// json.RawMessage in v is compacted, not escaped; \u003c, \u003e and \u0026 escapes
// that v already holds (a RawMessage made by json.Marshal) are written as the
// characters themselves. The result has no trailing newline.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return UnescapeHTML(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// UnescapeHTML rewrites the escapes \u003c, \u003e and \u0026 of valid JSON b as the
// characters <, > and &, which JSON allows unescaped in strings. In valid JSON a
// backslash occurs only in a string and always starts an escape, so reading escape
// by escape never mistakes an escaped backslash followed by "u003c" for one.
func UnescapeHTML(b []byte) []byte {
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

package event

import "encoding/json"

// readEnvelope reads the usual envelope in one pass: it validates the body as it
// goes and takes each field's value where it is, where json.Unmarshal validates
// the whole body, then decodes it through reflection, then copies the detail. It
// returns ok only for a body it reads exactly as decodeEnvelope would (FuzzReadEnvelope
// compares them): a JSON object whose member names are plain ASCII, whose envelope
// fields appear at most once with values of their type (a string or null; resources
// an array of strings; detail not null). Everything else, and every body that is
// not JSON, is left to decodeEnvelope, which also says what is wrong. The detail
// and time it returns alias body.
func readEnvelope(body []byte) (Envelope, json.RawMessage, bool) {
	var read envelopeRead
	var seen [envelopeFields]bool
	r := reader{b: body}
	r.space()
	ok := r.members('{', func(key, value []byte) bool {
		name := key[1 : len(key)-1]
		if !plainASCII(name) {
			return false // escapes or non-ASCII: decodeEnvelope's case
		}
		f, ok := read.setField(name, value)
		switch {
		case f < 0:
			return true
		case !ok || seen[f]:
			return false // of another type, or repeated
		}
		seen[f] = true
		return true
	})
	r.space()
	if !ok || r.i != len(body) {
		return Envelope{}, nil, false
	}
	return read.e, read.rawTime, true
}

// setStrings reads an array of strings (valid JSON) into dst; null is nil, [] is
// empty, as encoding/json gives them. False for anything else.
func setStrings(dst *[]string, v []byte) bool {
	if string(v) == "null" {
		*dst = nil
		return true
	}
	out := []string{}
	r := reader{b: v}
	if !r.members('[', func(_, value []byte) bool {
		s, ok := stringValue(value)
		out = append(out, s)
		return ok
	}) {
		return false
	}
	*dst = out
	return true
}

// stringValue decodes a JSON string token: sliced when it is plain ASCII, else by
// encoding/json (escapes; invalid UTF-8 becomes U+FFFD as in any decode).
func stringValue(tok []byte) (string, bool) {
	if len(tok) < 2 || tok[0] != '"' {
		return "", false
	}
	if inner := tok[1 : len(tok)-1]; plainASCII(inner) {
		return string(inner), true
	}
	var s string
	return s, json.Unmarshal(tok, &s) == nil
}

// reader validates JSON as the decoder does (RFC 8259; bytes of invalid UTF-8 are
// taken inside strings), at i. Its depth is bounded by Parse's tooDeep check.
type reader struct {
	b []byte
	i int
}

func (r *reader) next(c byte) bool {
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

func (r *reader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// value reads one JSON value.
func (r *reader) value() bool {
	if r.i >= len(r.b) {
		return false
	}
	switch c := r.b[r.i]; {
	case c == '{':
		return r.container('}', true)
	case c == '[':
		return r.container(']', false)
	case c == '"':
		return r.string()
	case c == 't':
		return r.literal("true")
	case c == 'f':
		return r.literal("false")
	case c == 'n':
		return r.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return r.number()
	}
	return false
}

// members reads the object (open '{') or array (open '[') at i and gives yield
// each member in turn: its name token as written (nil in an array) and its value,
// both valid JSON. It is the one loop over the members of what this package reads:
// the envelope (readEnvelope), the detail (StringMembers) and resources
// (setStrings). It stops at the first member yield refuses, and reports whether it
// read the whole object or array and yield took every member.
func (r *reader) members(open byte, yield func(key, value []byte) bool) bool {
	if !r.next(open) {
		return false
	}
	end, object := byte(']'), open == '{'
	if object {
		end = '}'
	}
	r.space()
	if r.next(end) {
		return true
	}
	for {
		r.space()
		var key []byte
		if object {
			start := r.i
			if !r.string() {
				return false
			}
			key = r.b[start:r.i]
			r.space()
			if !r.next(':') {
				return false
			}
			r.space()
		}
		start := r.i
		if !r.value() || !yield(key, r.b[start:r.i]) {
			return false
		}
		r.space()
		if r.next(end) {
			return true
		}
		if !r.next(',') {
			return false
		}
	}
}

// container validates an object (members: name, colon, value) or an array, as
// members reads it but giving no one its members: nested values are read here, and
// members with a no-op yield cost BenchmarkParse 3 % more CPU (BENCHMARKS.md).
func (r *reader) container(end byte, members bool) bool {
	r.i++
	r.space()
	if r.next(end) {
		return true
	}
	for {
		r.space()
		if members {
			if !r.string() {
				return false
			}
			r.space()
			if !r.next(':') {
				return false
			}
			r.space()
		}
		if !r.value() {
			return false
		}
		r.space()
		if r.next(end) {
			return true
		}
		if !r.next(',') {
			return false
		}
	}
}

func (r *reader) literal(word string) bool {
	if len(r.b)-r.i < len(word) || string(r.b[r.i:r.i+len(word)]) != word {
		return false
	}
	r.i += len(word)
	return true
}

// number reads -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (r *reader) number() bool {
	r.next('-')
	switch {
	case r.next('0'):
	case r.digits() == 0:
		return false
	}
	if r.next('.') && r.digits() == 0 {
		return false
	}
	if r.next('e') || r.next('E') {
		if !r.next('+') {
			r.next('-')
		}
		if r.digits() == 0 {
			return false
		}
	}
	return true
}

func (r *reader) digits() int {
	n := 0
	for r.i < len(r.b) && '0' <= r.b[r.i] && r.b[r.i] <= '9' {
		r.i++
		n++
	}
	return n
}

// string reads a string token: no control characters, only JSON's escapes.
func (r *reader) string() bool {
	if !r.next('"') {
		return false
	}
	for r.i < len(r.b) {
		c := r.b[r.i]
		r.i++
		switch {
		case c == '"':
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if r.i >= len(r.b) {
				return false
			}
			e := r.b[r.i]
			r.i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for range 4 {
					if r.i >= len(r.b) || !isHex(r.b[r.i]) {
						return false
					}
					r.i++
				}
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

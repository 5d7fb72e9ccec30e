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
func readEnvelope(body []byte) (e Envelope, rawTime json.RawMessage, ok bool) {
	r := reader{b: body}
	r.space()
	if !r.next('{') {
		return Envelope{}, nil, false
	}
	var seen [len(envelopeFields)]bool
	r.space()
	if !r.next('}') {
		for {
			r.space()
			key, ok := r.plainString()
			if !ok {
				return Envelope{}, nil, false // not a string, or one with escapes: decodeEnvelope's case
			}
			r.space()
			if !r.next(':') {
				return Envelope{}, nil, false
			}
			r.space()
			start := r.i
			if !r.value() {
				return Envelope{}, nil, false
			}
			if f := envelopeField(key); f >= 0 {
				if seen[f] || !e.set(f, body[start:r.i], &rawTime) {
					return Envelope{}, nil, false // repeated, or of another type
				}
				seen[f] = true
			}
			r.space()
			if r.next('}') {
				break
			}
			if !r.next(',') {
				return Envelope{}, nil, false
			}
		}
	}
	r.space()
	return e, rawTime, r.i == len(body)
}

// envelopeFields are the json names of Envelope's fields, in upper case: names
// match case-insensitively, as encoding/json matches them.
var envelopeFields = [...]string{"ID", "VERSION", "DETAIL-TYPE", "SOURCE", "ACCOUNT", "TIME", "REGION", "RESOURCES", "DETAIL"}

// envelopeField is the index in envelopeFields of a plain ASCII member name, or -1.
func envelopeField(key []byte) int {
	for f, name := range envelopeFields {
		if upperEqual(key, name) {
			return f
		}
	}
	return -1
}

// set stores the value v (valid JSON) of field f; false when its type is not the
// field's.
func (e *Envelope) set(f int, v []byte, rawTime *json.RawMessage) bool {
	switch envelopeFields[f] {
	case "TIME":
		*rawTime = v
		return true
	case "DETAIL":
		if string(v) == "null" {
			return false
		}
		e.Detail = v
		return true
	case "RESOURCES":
		return setStrings(&e.Resources, v)
	}
	var s string
	if string(v) != "null" { // null leaves a string field as it is: empty
		var ok bool
		if s, ok = stringValue(v); !ok {
			return false
		}
	}
	switch envelopeFields[f] {
	case "ID":
		e.ID = s
	case "VERSION":
		e.Version = s
	case "DETAIL-TYPE":
		e.DetailType = s
	case "SOURCE":
		e.Source = s
	case "ACCOUNT":
		e.Account = s
	case "REGION":
		e.Region = s
	}
	return true
}

// setStrings reads an array of strings (valid JSON) into dst; null is nil, [] is
// empty, as encoding/json gives them. False for anything else.
func setStrings(dst *[]string, v []byte) bool {
	if string(v) == "null" {
		*dst = nil
		return true
	}
	r := reader{b: v}
	if !r.next('[') {
		return false
	}
	out := []string{}
	r.space()
	if r.next(']') {
		*dst = out
		return true
	}
	for {
		r.space()
		start := r.i
		if !r.string() {
			return false
		}
		s, ok := stringValue(v[start:r.i])
		if !ok {
			return false
		}
		out = append(out, s)
		r.space()
		if r.next(']') {
			*dst = out
			return true
		}
		if !r.next(',') {
			return false
		}
	}
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

// container reads an object (members: name, colon, value) or an array.
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

// plainString reads a string token with no escapes and only ASCII, and returns
// its content.
func (r *reader) plainString() ([]byte, bool) {
	start := r.i
	if !r.string() {
		return nil, false
	}
	inner := r.b[start+1 : r.i-1]
	return inner, plainASCII(inner)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

package event

import (
	"encoding/json"
	"unsafe"
)

// readEnvelope reads the usual envelope in one pass: it validates the body as it
// goes and takes each field's value where it is, where json.Unmarshal validates
// the whole body, then decodes it through reflection, then copies the detail. It
// returns ok only for a body it reads exactly as decodeEnvelope would (FuzzReadEnvelope
// compares them): a JSON object whose member names are plain ASCII, whose envelope
// fields appear at most once with values of their type (a string or null; resources
// an array of strings; detail not null). Everything else, and every body that is
// not JSON, is left to decodeEnvelope, which also says what is wrong. The detail
// and time it returns alias body; with shared (body is a string's bytes, see
// ParseMessage) so do its strings.
func readEnvelope(body []byte, shared bool) (Envelope, json.RawMessage, bool) {
	read := envelopeRead{shared: shared}
	var seen [envelopeFields]bool
	r := reader{b: body, depth: 1} // the envelope's own object
	r.space()
	m := r.members('{')
	for key, value, ok := m.next(); ok; key, value, ok = m.next() {
		name := key[1 : len(key)-1]
		if !plainASCII(name) {
			return Envelope{}, nil, false // escapes or non-ASCII: decodeEnvelope's case
		}
		f, ok := read.setField(name, value)
		if f < 0 {
			continue
		}
		if !ok || seen[f] {
			return Envelope{}, nil, false // of another type, or repeated
		}
		seen[f] = true
	}
	r.space()
	if !m.whole() || r.i != len(body) {
		return Envelope{}, nil, false
	}
	return read.e, read.rawTime, true
}

// setStrings reads an array of strings (valid JSON) into dst; null is nil, [] is
// empty, as encoding/json gives them. False for anything else. shared: see
// stringValue.
func setStrings(dst *[]string, v []byte, shared bool) bool {
	if string(v) == "null" {
		*dst = nil
		return true
	}
	out := []string{}
	r := reader{b: v}
	m := r.members('[')
	for _, value, ok := m.next(); ok; _, value, ok = m.next() {
		s, ok := stringValue(value, shared)
		if !ok {
			return false
		}
		out = append(out, s)
	}
	if !m.whole() {
		return false
	}
	*dst = out
	return true
}

// stringValue decodes a JSON string token: sliced when it is plain ASCII, else by
// encoding/json (escapes; invalid UTF-8 becomes U+FFFD as in any decode). shared
// says tok is part of a string's bytes (ParseMessage's view of an SQS body): a
// plain token is then that string's own memory, no copy, as a substring is.
func stringValue(tok []byte, shared bool) (string, bool) {
	if len(tok) < 2 || tok[0] != '"' {
		return "", false
	}
	if inner := tok[1 : len(tok)-1]; plainASCII(inner) {
		if shared && len(inner) > 0 {
			return unsafe.String(&inner[0], len(inner)), true
		}
		return string(inner), true
	}
	var s string
	return s, json.Unmarshal(tok, &s) == nil
}

// reader validates JSON as the decoder does (RFC 8259; bytes of invalid UTF-8 are
// taken inside strings), at i. It refuses to open more than MaxDepth objects and
// arrays at once (depth counts those open), so that Parse needs no pass of its own
// to bound the nesting of a body the reader takes.
type reader struct {
	b     []byte
	i     int
	depth int
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

// members reads the members of an object or an array, one a call of next. It is
// the one loop over the members of what this package reads: the envelope
// (readEnvelope), its resources (setStrings) and the detail (StringMembers). (A
// loop its callers drive, rather than one that calls them back: a call through a
// function value for each member cost Parse 3 % more CPU.)
type members struct {
	r     *reader
	end   byte // '}' or ']'
	state memberState
}

type memberState uint8

const (
	atFirst memberState = iota // just after the opening bracket
	atNext                     // after a member
	atEnd                      // after the closing bracket: read whole
	broken                     // not JSON, or not the container expected
)

// members starts reading the object (open '{') or array (open '[') at i.
func (r *reader) members(open byte) members {
	m := members{r: r, end: ']'}
	if open == '{' {
		m.end = '}'
	}
	if !r.next(open) {
		m.state = broken
	}
	return m
}

// next reads the next member: its name token as written (nil in an array) and its
// value, both valid JSON. ok is false after the last member, and at bad JSON
// (whole tells which).
func (m *members) next() (key, value []byte, ok bool) {
	r := m.r
	switch m.state {
	case atEnd, broken:
		return nil, nil, false
	case atFirst:
		r.space()
		if r.next(m.end) {
			m.state = atEnd
			return nil, nil, false
		}
	case atNext:
		r.space()
		if r.next(m.end) {
			m.state = atEnd
			return nil, nil, false
		}
		if !r.next(',') {
			m.state = broken
			return nil, nil, false
		}
	}
	m.state = broken // until the member is read
	r.space()
	if m.end == '}' {
		start := r.i
		if !r.string() {
			return nil, nil, false
		}
		key = r.b[start:r.i]
		r.space()
		if !r.next(':') {
			return nil, nil, false
		}
		r.space()
	}
	start := r.i
	if !r.value() {
		return nil, nil, false
	}
	m.state = atNext
	return key, r.b[start:r.i], true
}

// whole reports whether the object or array was read to its closing bracket.
func (m *members) whole() bool { return m.state == atEnd }

// container validates a nested object (members: name, colon, value) or array,
// whose members no one reads: a loop of its own, as reading them through members
// costs Parse 7 % more CPU.
func (r *reader) container(end byte, members bool) bool {
	if r.depth++; r.depth > MaxDepth {
		return false // too deep: Parse's fallback says so
	}
	r.i++
	r.space()
	if r.next(end) {
		r.depth--
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
			r.depth--
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
	b, i := r.b, r.i
	for i < len(b) {
		for i < len(b) && plainByte[b[i]] { // the usual byte: a run of them at once
			i++
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		i++
		switch {
		case c == '"':
			r.i = i
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if i >= len(b) {
				return false
			}
			e := b[i]
			i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for range 4 {
					if i >= len(b) || !isHex(b[i]) {
						return false
					}
					i++
				}
			default:
				return false
			}
		}
		// else a byte of a multi-byte sequence, taken as it is (valid or not)
	}
	r.i = i
	return false
}

// plainByte tells the bytes a string token holds as they are, needing no
// decoding: printable ASCII but the quote and the backslash. string and
// plainASCII skip runs of them through it.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

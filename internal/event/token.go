package event

import (
	"bytes"
	"encoding/json"
)

// FindTaskToken returns detail.TaskToken of an EventBridge envelope, or "" when
// there is none: the token of a body that Parse refuses (too deep, truncated after
// the token, a field of the wrong type), so that such a message can still fail its
// task instead of leaving it to time out.
//
// It reads the body as a stream of tokens and stops at the token: it keeps no
// nesting stack on the goroutine stack, skips every other value token by token
// without building it, and does work linear in the body's length on any input.
// It looks at the first "detail" member of the top-level object (exact case) and,
// in it, the first "TaskToken" member at the detail's own level; the token is that
// member's value when it is a string. Anything after the token is not read: a
// truncated body still yields it.
func FindTaskToken(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // a number such as 1e999 is a value to skip, not an error
	if !openObject(dec) {
		return ""
	}
	if !findKey(dec, "detail") || !openObject(dec) || !findKey(dec, "TaskToken") {
		return ""
	}
	tok, err := dec.Token()
	if s, ok := tok.(string); ok && err == nil {
		return s
	}
	return ""
}

// openObject reads the next token and reports whether it opens an object.
func openObject(dec *json.Decoder) bool {
	tok, err := dec.Token()
	return err == nil && tok == json.Delim('{')
}

// findKey reads the members of the object just opened until one named key, leaving
// the decoder before that member's value. It reports false at the object's end or
// on bad JSON.
func findKey(dec *json.Decoder, key string) bool {
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		k, ok := tok.(string)
		if !ok { // the object's closing '}'
			return false
		}
		if k == key {
			return true
		}
		if !skipValue(dec) {
			return false
		}
	}
}

// skipValue reads one value token by token, counting depth instead of recursing.
func skipValue(dec *json.Decoder) bool {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return true
		}
	}
}

// Package event decodes the EventBridge envelopes that reach the worker's queues and
// publishes the worker's own events onto the bus.
//
// Two readers of JSON, each where it pays. What the worker reads of every message
// (ParseMessage, once per message: the envelope, Parse; the detail's TaskToken,
// executionArn and traceparent, StringMembers' loop) goes through one hand-written
// one-pass reader (reader.go): one member loop
// (reader.members) for the envelope, its resources and the detail, and one table of
// the envelope's fields (setField). BenchmarkParse and the router's benchmarks show
// it halves the cost of a message's read. Everything else is encoding/json: the
// bodies that reader leaves (decodeEnvelope, which also says what is wrong, and
// which FuzzReadEnvelope holds the one-pass reader to), and FindTaskToken, a token
// stream that finds the token of a body Parse refused (too deep, truncated), off
// the hot path.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/taskbridge/taskbridge/internal/awslimit"
)

// MaxBodyBytes is the largest SQS message body the worker accepts: SQS's limit
// (awslimit.SQSMessageBytes, 1 MiB since August 2025). A body over it did not come
// through SQS as AWS runs it.
const MaxBodyBytes = awslimit.SQSMessageBytes

// MaxDepth is the deepest nesting of objects and arrays Parse accepts in a body.
// PutEvents processes a detail nested at most 1100 levels deep (API reference,
// PutEvents), so no event that came through EventBridge is deeper; the margin
// covers how levels are counted. encoding/json would refuse only at 10000 levels,
// with a bare "exceeded max depth"; a deeply nested body still has its token read
// by FindTaskToken.
const MaxDepth = 1200

// Envelope is an EventBridge event as an SQS target receives it.
type Envelope struct {
	ID         string          `json:"id"`
	Version    string          `json:"version"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       time.Time       `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// envelopeRead is where readEnvelope stores the fields it reads.
type envelopeRead struct {
	e       Envelope
	rawTime json.RawMessage
	shared  bool // the body is a string's bytes: see stringValue
}

// envelopeFields is how many fields setField knows: all of Envelope's.
const envelopeFields = 9

// setField stores v (valid JSON), the value of the member name (plain ASCII), in
// the envelope's field of that json name. It is the one table of the envelope's
// fields for readEnvelope: a case for each, with its json name upper-cased (names
// match case-insensitively, as encoding/json matches them), its number (a field is
// taken once) and how its value is stored. TestSetFieldKnowsEnvelopesFields checks
// the names against Envelope's tags, which decodeEnvelope reads. field is -1 for a
// member that is no field; ok is false for a value not of the field's type.
//
// A switch rather than a slice of setter functions: a call through a function
// value would move the envelope being read to the heap.
func (r *envelopeRead) setField(name, v []byte) (field int, ok bool) {
	switch {
	case upperEqual(name, "ID"):
		return 0, setString(&r.e.ID, v, r.shared)
	case upperEqual(name, "VERSION"):
		return 1, setString(&r.e.Version, v, r.shared)
	case upperEqual(name, "DETAIL-TYPE"):
		return 2, setString(&r.e.DetailType, v, r.shared)
	case upperEqual(name, "SOURCE"):
		return 3, setString(&r.e.Source, v, r.shared)
	case upperEqual(name, "ACCOUNT"):
		return 4, setString(&r.e.Account, v, r.shared)
	case upperEqual(name, "TIME"):
		r.rawTime = v // parseTime reads it, as it reads decodeEnvelope's
		return 5, true
	case upperEqual(name, "REGION"):
		return 6, setString(&r.e.Region, v, r.shared)
	case upperEqual(name, "RESOURCES"):
		return 7, setStrings(&r.e.Resources, v, r.shared)
	case upperEqual(name, "DETAIL"):
		if string(v) == "null" {
			return 8, false // decodeEnvelope's case: it says "no detail"
		}
		r.e.Detail = v
		return 8, true
	}
	return -1, true
}

// setString stores a string value; null leaves dst as it is (empty), as
// encoding/json leaves it. False for any other value. shared: see stringValue.
func setString(dst *string, v []byte, shared bool) bool {
	if string(v) == "null" {
		return true
	}
	s, ok := stringValue(v, shared)
	*dst = s
	return ok
}

// ErrMalformed is wrapped by every Parse error: the body can never become valid.
var ErrMalformed = errors.New("malformed event")

// Parse decodes an SQS body into an Envelope. It fails, wrapping ErrMalformed, when
// the body is over MaxBodyBytes, not JSON, JSON but not an object or with a field of
// the wrong type, not an EventBridge envelope (no detail-type or source), when detail
// is missing, null or not a JSON object, when time is neither RFC 3339 nor Unix
// seconds, or when the body nests objects and arrays more than MaxDepth levels
// deep. On success DetailType and Source are set and Detail is a JSON object, which
// may share body's memory.
func Parse(body []byte) (Envelope, error) { return parse(body, readCopying) }

// readCopying is the one-pass reader whose strings are copies (Parse's).
func readCopying(body []byte) (Envelope, json.RawMessage, bool) { return readEnvelope(body, false) }

// parse is Parse with the one-pass reader it tries first (tests compare it with
// none).
func parse(body []byte, read func([]byte) (Envelope, json.RawMessage, bool)) (Envelope, error) {
	if len(body) > MaxBodyBytes {
		return Envelope{}, fmt.Errorf("%w: body of %d bytes is over %d", ErrMalformed, len(body), MaxBodyBytes)
	}
	// The one-pass reader refuses a body nested deeper than MaxDepth, so only a
	// body it leaves is counted apart: the usual body is read once.
	e, rawTime, ok := read(body)
	if !ok {
		if tooDeep(body, MaxDepth) {
			return Envelope{}, fmt.Errorf("%w: nested more than %d levels deep", ErrMalformed, MaxDepth)
		}
		var err error
		if e, rawTime, err = decodeEnvelope(body); err != nil {
			return Envelope{}, err
		}
	}
	t, err := parseTime(rawTime)
	if err != nil {
		return Envelope{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	e.Time = t
	switch {
	case e.DetailType == "":
		return Envelope{}, fmt.Errorf("%w: no detail-type", ErrMalformed)
	case e.Source == "":
		return Envelope{}, fmt.Errorf("%w: no source", ErrMalformed)
	case len(e.Detail) == 0 || bytes.Equal(bytes.TrimSpace(e.Detail), []byte("null")):
		return Envelope{}, fmt.Errorf("%w: no detail", ErrMalformed)
	case bytes.TrimSpace(e.Detail)[0] != '{':
		return Envelope{}, fmt.Errorf("%w: detail is not a JSON object", ErrMalformed)
	}
	return e, nil
}

// decodeEnvelope is encoding/json's reading of body, for every body readEnvelope
// does not take: it gives the clear error of a body that is not an envelope.
func decodeEnvelope(body []byte) (Envelope, json.RawMessage, error) {
	// Time is decoded apart: AWS writes an RFC 3339 string, some emulators (moto's
	// S3 notifications) a Unix time in seconds.
	type plain Envelope
	var raw struct {
		plain
		Time json.RawMessage `json:"time"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return Envelope{}, nil, fmt.Errorf("%w: %w", ErrMalformed, decodeError(err))
	}
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) { // decodes without error into nothing
		return Envelope{}, nil, fmt.Errorf("%w: not an envelope: a JSON null", ErrMalformed)
	}
	return Envelope(raw.plain), raw.Time, nil
}

// decodeError says what kind of bad body failed to decode: not JSON at all, or JSON
// that is not an envelope (an array, a field of the wrong type).
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return fmt.Errorf("not an envelope: a JSON %s, not an object", typeErr.Value)
		}
		// The decoder names fields through the embedded struct: "plain.detail-type".
		return fmt.Errorf("not an envelope: %s is a JSON %s", strings.TrimPrefix(typeErr.Field, "plain."), typeErr.Value)
	}
	return fmt.Errorf("not JSON: %w", err)
}

// parseTime reads an event time: an RFC 3339 string or Unix seconds; absent is zero.
func parseTime(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return time.Time{}, nil
	}
	if raw[0] == '"' {
		var t time.Time
		// What json.Unmarshal into a time.Time does (time's UnmarshalJSON decodes no
		// escapes either), without a second pass of the decoder.
		if t.UnmarshalText(raw[1:len(raw)-1]) != nil {
			return time.Time{}, fmt.Errorf("time is not RFC 3339: %s", raw)
		}
		return t, nil
	}
	var secs float64
	if err := json.Unmarshal(raw, &secs); err != nil || secs < 0 || secs > 1e11 {
		return time.Time{}, fmt.Errorf("time is neither RFC 3339 nor Unix seconds: %s", raw)
	}
	return time.Unix(0, int64(secs*1e9)).UTC(), nil
}

// tooDeep reports whether b opens more than limit objects and arrays at once,
// counting only brackets outside strings. It reads b once and allocates nothing; it
// does not validate (the decoder does).
func tooDeep(b []byte, limit int) bool {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			switch c {
			case '\\':
				i++ // the escaped character cannot end the string
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > limit {
				return true
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return false
}

// Package event decodes the EventBridge envelopes that reach the worker's queues and
// publishes the worker's own events onto the bus.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxBodyBytes is the largest SQS message body the worker accepts (the SQS limit).
const MaxBodyBytes = 256 * 1024

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

// ErrMalformed is wrapped by every Parse error: the body can never become valid.
var ErrMalformed = errors.New("malformed event")

// Parse decodes an SQS body into an Envelope. It fails, wrapping ErrMalformed, when
// the body is too large, not JSON, not an EventBridge envelope (no detail-type or
// source), or when detail is missing or not a JSON object.
func Parse(body []byte) (Envelope, error) {
	if len(body) > MaxBodyBytes {
		return Envelope{}, fmt.Errorf("%w: body of %d bytes is over %d", ErrMalformed, len(body), MaxBodyBytes)
	}
	var e Envelope
	if err := json.Unmarshal(body, &e); err != nil {
		return Envelope{}, fmt.Errorf("%w: not JSON: %w", ErrMalformed, err)
	}
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

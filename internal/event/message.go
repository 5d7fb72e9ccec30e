package event

import (
	"bytes"
	"encoding/json"
	"unsafe"
)

// Message is what the worker reads of every message it routes, read once: the
// envelope, and the members of its detail that the router, the reporter and the
// tracer take. A later reader takes them from here, never from the body again.
type Message struct {
	Envelope
	// TaskToken is the detail's TaskToken when it is a string, else "". For a body
	// Parse refuses it is what FindTaskToken finds, so that such a message can
	// still fail its task.
	TaskToken string
	// ExecutionArn and Traceparent are the detail's executionArn and traceparent
	// when they are strings, else "" (always "" for a body Parse refuses).
	ExecutionArn, Traceparent string
}

// messageMembers are the detail members ParseMessage reads, folded as
// StringMembers folds names, in the order of the values it fills.
var messageMembers = [...]string{"TASKTOKEN", "EXECUTIONARN", "TRACEPARENT"}

// ParseMessage parses an SQS body as Parse does (and fails as it fails) and reads
// the detail's TaskToken, executionArn and traceparent in one pass over the detail,
// matched as StringMembers matches them.
//
// It reads body where it is, without a copy: the strings it returns (but for
// decoded escapes) are parts of body, as substrings are; only the Detail, which a
// job may write to, is a copy of its own.
func ParseMessage(body string) (Message, error) {
	// view is body's bytes, only ever read (strings are immutable): readEnvelope and
	// stringMembers take their strings from it with shared set, which makes them
	// body's substrings.
	view := unsafe.Slice(unsafe.StringData(body), len(body))
	e, err := parse(view, readShared)
	if err != nil {
		return Message{TaskToken: FindTaskToken(view)}, err
	}
	var v [len(messageMembers)]string
	stringMembers(e.Detail, messageMembers[:], v[:], true)
	e.Detail = bytes.Clone(e.Detail)
	return Message{Envelope: e, TaskToken: v[0], ExecutionArn: v[1], Traceparent: v[2]}, nil
}

// readShared is the one-pass reader whose strings share the body's memory
// (ParseMessage's).
func readShared(body []byte) (Envelope, json.RawMessage, bool) { return readEnvelope(body, true) }

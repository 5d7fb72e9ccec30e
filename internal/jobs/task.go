package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Task is one decoded message as a job sees it.
type Task struct {
	Queue        string
	DetailType   string
	EventTime    time.Time
	Token        string // "" when the event carries none
	ExecutionArn string // "" when the event carries none
	Detail       json.RawMessage
	ReceiveCount int
}

// Job is the work bound to a queue.
type Job struct {
	Name string
	// NeedsToken: a message without a TaskToken is bad input.
	NeedsToken bool
	// Completes: the job's output completes the token (SendTaskSuccess). Otherwise
	// the job hands the token forward, or has none.
	Completes bool
	// Run does the work. Its output (marshalled to JSON) completes the token when
	// Completes. Errors: Permanent, Invalid, or anything else for a retry.
	Run func(ctx context.Context, t Task) (output any, err error)
}

// common are the detail fields every job's event may carry.
type common struct {
	TaskToken    string `json:"TaskToken"`
	ExecutionArn string `json:"executionArn"`
}

// decodeDetail decodes a job's detail into v, as bad input when it does not fit.
func decodeDetail(t Task, v any) error {
	if err := json.Unmarshal(t.Detail, v); err != nil {
		return invalidf("detail of %s: %v", t.DetailType, err)
	}
	return nil
}

// ExecutionName is the last part of an execution ARN
// (arn:aws:states:<region>:<account>:execution:<state machine>:<name>). It must make
// a safe S3 prefix: not empty, no slash, not "." or "..".
func ExecutionName(arn string) (string, error) {
	parts := strings.Split(arn, ":")
	if len(parts) < 8 || parts[0] != "arn" || parts[2] != "states" || (parts[5] != "execution" && parts[5] != "express") {
		return "", invalidf("not an execution ARN: %q", arn)
	}
	name := parts[7]
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\") || len(name) > 128 {
		return "", invalidf("execution name %q cannot be a key prefix", name)
	}
	return name, nil
}

var errNoToken = errors.New("missing TaskToken")

// looseToken reads detail.TaskToken from a body that failed stricter decoding, so a
// bad message can still fail its task instead of leaving it to time out.
func looseToken(body string) string {
	var env struct {
		Detail struct {
			TaskToken any `json:"TaskToken"`
		} `json:"detail"`
	}
	if json.Unmarshal([]byte(body), &env) != nil {
		return ""
	}
	if s, ok := env.Detail.TaskToken.(string); ok {
		return s
	}
	return ""
}

package jobs

import "context"

// Reporter reports the outcome of a Step Functions callback task. internal/callback
// implements it; it is safe for concurrent use. Implementations retry transient AWS
// errors themselves (the SDK retryer) and return an error only when the outcome may
// not have been recorded; the caller then leaves the message for redelivery.
//
// When the task is already closed (timed out, unknown, finished), the methods return
// an error whose chain holds a value with a method `TaskClosed() bool` returning true:
// that is a finished outcome, never a reason to retry.
type Reporter interface {
	// Succeed sends SendTaskSuccess with output (a JSON document).
	Succeed(ctx context.Context, token string, output []byte) error
	// Fail sends SendTaskFailure; code and cause are cut to the API limits.
	Fail(ctx context.Context, token, code, cause string) error
	// Heartbeat sends SendTaskHeartbeat.
	Heartbeat(ctx context.Context, token string) error
}

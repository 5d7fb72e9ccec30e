package taskbridge

import "github.com/taskbridge/taskbridge/internal/jobs"

// ErrTaskClosed is the cause (context.Cause) of a job's context when its task was
// closed elsewhere: the execution stopped or timed out, or another party answered.
// The worker notices it at a heartbeat (a queue's heartbeatInterval, by default
// WORKER_HEARTBEAT_INTERVAL), cancels the job, reports nothing and deletes the
// message. Test it with errors.Is(context.Cause(ctx), taskbridge.ErrTaskClosed);
// the cause wraps it with the reason (the execution's status, or Step Functions'
// answer).
var ErrTaskClosed = jobs.ErrTaskClosed

// Permanent marks err as final: no retry can fix it. The task fails at once with
// the error "<job>.<kind>" and err's text as its cause, and the message is deleted.
// kind is a short CamelCase name, e.g. "NotFound".
func Permanent(kind string, err error) error { return jobs.Permanent(kind, err) }

// Invalid marks err as bad input: the task fails with "<job>.<kind>" and the
// message goes to the dead-letter queue, with the reason, for someone to look at.
func Invalid(kind string, err error) error { return jobs.Invalid(kind, err) }

// ErrorKind reports the kind an error made with Permanent or Invalid fails its task
// with, and whether it is bad input (dead-lettered); ok is false for any other
// error, which the worker retries.
func ErrorKind(err error) (kind string, badInput, ok bool) { return jobs.KindOf(err) }

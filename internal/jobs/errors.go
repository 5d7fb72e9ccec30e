package jobs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/taskbridge/taskbridge/internal/telemetry"
)

// jobError marks an error that no retry can fix, with the Kind that names it in a
// SendTaskFailure ("<job>.<Kind>").
type jobError struct {
	kind     string
	badInput bool // the message itself is bad: it goes to the DLQ after the failure
	err      error
}

func (e *jobError) Error() string { return e.kind + ": " + e.err.Error() }
func (e *jobError) Unwrap() error { return e.err }

// Permanent marks err as final: the task fails with kind and the message is deleted.
func Permanent(kind string, err error) error { return &jobError{kind: kind, err: err} }

// Invalid marks err as bad input: the task fails with kind (when a token is known)
// and the message goes to the DLQ.
func Invalid(kind string, err error) error { return &jobError{kind: kind, badInput: true, err: err} }

// invalidf is Invalid("InvalidInput", fmt.Errorf(...)).
func invalidf(format string, args ...any) error {
	return Invalid("InvalidInput", fmt.Errorf(format, args...))
}

func asJobError(err error) (*jobError, bool) {
	var j *jobError
	ok := errors.As(err, &j)
	return j, ok
}

// taskClosed reports whether a Reporter error says the task is already closed. The
// Reporter marks such errors with a TaskClosed method (see Reporter).
func taskClosed(err error) bool {
	var c interface{ TaskClosed() bool }
	return errors.As(err, &c) && c.TaskClosed()
}

// KindOf reports the kind of an error made with Permanent or Invalid and whether it
// is bad input; ok is false for any other error (a retry).
func KindOf(err error) (kind string, badInput, ok bool) {
	je, ok := asJobError(err)
	if !ok {
		return "", false, false
	}
	return je.kind, je.badInput, true
}

// ErrTaskClosed is the cause (context.Cause) of a job's context when its task was
// closed elsewhere while the job ran: the execution stopped or timed out, or another
// party answered the task. The cause wraps it with the reason.
var ErrTaskClosed = errors.New("taskbridge: task closed")

// closedError is a job context's cause when its task closed: ErrTaskClosed with the
// heartbeat's answer as the reason.
type closedError struct{ reason error }

func (c *closedError) Error() string        { return ErrTaskClosed.Error() + ": " + c.reason.Error() }
func (c *closedError) Is(target error) bool { return target == ErrTaskClosed }
func (c *closedError) Unwrap() error        { return c.reason }

// closedCause is the Heartbeater's closedCause: a plain function, so that passing
// it allocates nothing.
func closedCause(reason error) error { return &closedError{reason: reason} }

// redactToken is err with token replaced by its hash in its text
// (telemetry.RedactToken); nil stays nil, and err stays what it wraps.
func redactToken(err error, token string) error {
	if !quotesToken(err, token) {
		return err
	}
	return &tokenRedacted{err: err, token: token}
}

// quotesToken reports whether err's text quotes token (or its first 16 bytes).
func quotesToken(err error, token string) bool {
	return err != nil && token != "" && strings.Contains(err.Error(), token[:min(len(token), 16)])
}

type tokenRedacted struct {
	err   error
	token string
}

func (e *tokenRedacted) Error() string { return telemetry.RedactToken(e.err.Error(), e.token) }
func (e *tokenRedacted) Unwrap() error { return e.err }

package callback

import (
	"errors"
	"fmt"

	"github.com/aws/smithy-go"
)

// TaskClosedError says the task of a token is already closed: it timed out, does not
// exist, or was already answered. That is a finished outcome, never a reason to
// retry. Callers that must not import this package recognise it by its TaskClosed
// method.
type TaskClosedError struct {
	API  string // the call that found it closed
	Code string // the service's error code
	err  error
}

func (e *TaskClosedError) Error() string {
	return fmt.Sprintf("%s: task already closed (%s)", e.API, e.Code)
}

func (e *TaskClosedError) Unwrap() error { return e.err }

// TaskClosed marks the error for callers that test for it by behaviour.
func (e *TaskClosedError) TaskClosed() bool { return true }

// closedCodes are the answers that mean the task is already closed. AWS says
// TaskTimedOut for a closed token; emulators (moto) say InvalidToken.
var closedCodes = map[string]bool{
	"TaskTimedOut":     true,
	"InvalidToken":     true,
	"TaskDoesNotExist": true,
}

// ClosedCode reports whether err is Step Functions' answer that a task is closed
// (to any call that takes a token: SendTask*, heartbeats included), and its code.
func ClosedCode(err error) (code string, closed bool) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && closedCodes[apiErr.ErrorCode()] {
		return apiErr.ErrorCode(), true
	}
	return "", false
}

// classify wraps err from api: a closed task becomes a *TaskClosedError; anything
// else is returned wrapped (the SDK retryer already retried what was transient).
func classify(api string, err error) error {
	if err == nil {
		return nil
	}
	if code, closed := ClosedCode(err); closed {
		return &TaskClosedError{API: api, Code: code, err: err}
	}
	return fmt.Errorf("%s: %w", api, err)
}

// IsTaskClosed reports whether err says the task was already closed.
func IsTaskClosed(err error) bool {
	var c *TaskClosedError
	return errors.As(err, &c)
}

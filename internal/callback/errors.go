package callback

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go"
)

// TaskClosedError says the task of a token is already closed: it timed out, does not
// exist, or was already answered. That is a finished outcome, never a reason to
// retry. Callers that must not import this package recognise it by its TaskClosed
// method.
type TaskClosedError struct {
	API  string // the call that found it closed
	Code string // the service's error code
	// ExecutionStatus is the status DescribeExecution gave the task's execution when
	// the code alone did not say (InvalidToken, see KeepAlive), or DOES_NOT_EXIST;
	// "" when it was not asked.
	ExecutionStatus string
	err             error
}

func (e *TaskClosedError) Error() string {
	if e.ExecutionStatus != "" {
		return fmt.Sprintf("%s: task already closed (%s; execution %s)", e.API, e.Code, e.ExecutionStatus)
	}
	return fmt.Sprintf("%s: task already closed (%s)", e.API, e.Code)
}

// Confirmed reports whether the task is closed for sure: its code says so
// (TaskTimedOut, TaskDoesNotExist), or its execution no longer runs. An
// InvalidToken alone may be an emulator's answer for a live task.
func (e *TaskClosedError) Confirmed() bool {
	return e.Code != "InvalidToken" || e.ExecutionStatus != ""
}

// ClosedReason names why the task closed, for a metric label: the execution's
// status in lower case when it was read (aborted, timed_out, failed, succeeded,
// does_not_exist), else the service's code.
func (e *TaskClosedError) ClosedReason() string {
	if e.ExecutionStatus != "" {
		return strings.ToLower(e.ExecutionStatus)
	}
	return e.Code
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

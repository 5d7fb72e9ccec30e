package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/taskbridge/taskbridge/deploy"
	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/consumer"
)

// Mode says what a job does with the task token of its messages. It is one value
// instead of two flags so that no broken combination can be written.
type Mode int

const (
	// Complete: every message must carry a TaskToken (one without is bad input, sent
	// to the DLQ at once). The job's output completes the token, unless the job
	// handed the token forward (Task.HandOff); its final error fails it.
	Complete Mode = iota
	// Observe: the job reacts to an event without owning its token (a fan-out
	// consumer, a side effect). The worker never reports on the token, whatever the
	// job returns: the task belongs to another consumer.
	Observe
)

func (m Mode) String() string {
	if m == Observe {
		return "observe"
	}
	return "complete"
}

// Job is the work bound to a queue.
type Job struct {
	Name string
	Mode Mode
	// Run does the work. Its output (JSON-encoded; a json.RawMessage as it is)
	// completes the token in Complete mode. Errors: Permanent, Invalid, or anything
	// else for a retry. ctx is cancelled at the job's deadline and when the worker
	// takes the message back (shutdown, lost visibility).
	Run func(ctx context.Context, t *Task) (output any, err error)
	// StopGrace is how long the router waits for Run to return once its task closed
	// and ctx was cancelled (ErrTaskClosed), before it abandons the run: the time
	// the job takes to stop what it started (an exec job's process group). Default
	// and minimum 100 ms, the wait at any other end of ctx.
	StopGrace time.Duration
}

// HandlerMargin is what a job kind with a timeout of its own (execjob, httpjob) adds
// to the longest one run of it takes, to make the deadline the consumer gives one
// message: the kind's own timeout fires first, and its error says what happened.
const HandlerMargin = 5 * time.Second

// Task is one decoded message as a job sees it. The router fills it; a job reads its
// fields and may publish events through it.
type Task struct {
	Queue        string
	Job          string
	MessageID    string
	EventID      string // the EventBridge event id
	DetailType   string
	Source       string
	EventTime    time.Time
	Token        string // "" when the event carries none (always "" for Observe jobs)
	ExecutionArn string // "" when the event carries none
	// Detail is the event's detail as received, TaskToken included.
	Detail          json.RawMessage
	ReceiveCount    int
	MaxReceiveCount int

	env       *taskEnv // the router's, shared by its tasks; nil: none of them
	handedOff atomic.Bool
	proved    atomic.Bool                     // a heartbeat of its token was accepted
	cp        atomic.Pointer[checkpointState] // nil until the job uses a checkpoint
}

// taskEnv is what a task reaches through its router: one pointer per task rather
// than a field each keeps the Task, made per message, small.
type taskEnv struct {
	publish     Publisher
	beats       Heartbeater
	nowFunc     func() time.Time // nil: time.Now
	checkpoints CheckpointStore  // nil: no checkpoints
}

func (t *Task) publisher() Publisher {
	if t.env == nil {
		return nil
	}
	return t.env.publish
}

func (t *Task) heartbeater() Heartbeater {
	if t.env == nil {
		return nil
	}
	return t.env.beats
}

func (t *Task) checkpointStore() CheckpointStore {
	if t.env == nil {
		return nil
	}
	return t.env.checkpoints
}

// Publisher puts an event on the bus; internal/event implements it.
type Publisher interface {
	Publish(ctx context.Context, detailType string, detail any) error
}

// LastAttempt reports whether this delivery is the last before the DLQ.
func (t *Task) LastAttempt() bool {
	return consumer.LastReceive(t.ReceiveCount, t.MaxReceiveCount)
}

// DetailWithoutToken returns the detail with its top-level "TaskToken" removed: what
// a job may pass on to a process or a service (the token is a credential). A detail
// that is not a JSON object is returned as it is.
func (t *Task) DetailWithoutToken() (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(t.Detail)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return trimmed, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return nil, invalidf("detail of %s: %v", t.DetailType, err)
	}
	if _, ok := fields["TaskToken"]; !ok {
		return trimmed, nil
	}
	delete(fields, "TaskToken")
	return awsjson.Marshal(fields)
}

// Decode decodes the detail into v; a detail that does not fit is bad input.
func (t *Task) Decode(v any) error {
	if err := json.Unmarshal(t.Detail, v); err != nil {
		return invalidf("detail of %s does not decode: %v", t.DetailType, err)
	}
	return nil
}

// Publish puts a side event on the bus. It carries no token.
func (t *Task) Publish(ctx context.Context, detailType string, detail any) error {
	pub := t.publisher()
	if pub == nil {
		return errors.New("publish: this worker has no event publisher")
	}
	return pub.Publish(ctx, detailType, detail)
}

// HandOff publishes the next event with this task's token and execution ARN added to
// detail (a JSON object), so that whoever handles it completes the task. The router
// then reports nothing for this message.
func (t *Task) HandOff(ctx context.Context, detailType string, detail any) error {
	if t.Token == "" {
		return Permanent("NoToken", errors.New("hand off: this task has no token to hand on"))
	}
	b, err := awsjson.Marshal(detail)
	if err != nil {
		return Permanent("BadHandOff", fmt.Errorf("hand off: encode detail: %w", err))
	}
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &fields); err != nil || fields == nil {
		return Permanent("BadHandOff", errors.New("hand off: detail must be a JSON object"))
	}
	fields["TaskToken"], _ = json.Marshal(t.Token)
	if _, ok := fields["executionArn"]; !ok && t.ExecutionArn != "" {
		fields["executionArn"], _ = json.Marshal(t.ExecutionArn)
	}
	if err := t.Publish(ctx, detailType, fields); err != nil {
		return err
	}
	t.handedOff.Store(true)
	return nil
}

// HandedOff reports whether the job handed its token forward.
func (t *Task) HandedOff() bool { return t.handedOff.Load() }

// ErrTokenRefused is wrapped by Heartbeat when Step Functions does not know the token
// as a live task: forged, or already closed.
var ErrTokenRefused = errors.New("task token is not live")

// YoungEvent is how old an event may be for a refused proving heartbeat to be asked
// again. Stock moto (5.2.5) puts a callback step's event before it sets up the
// task's heartbeat wait, and answers InvalidToken to a heartbeat that comes in
// between, though the token is live: a worker that takes the message within
// milliseconds of the event would drop it as forged and the task would hang. AWS
// does not do this; asking again costs a forged token a few more refusals.
const YoungEvent = 10 * time.Second

// proveRetries are the waits before each new proving heartbeat of a young event
// (about 4 s in all): the emulator's window is milliseconds, so the first retry
// usually succeeds.
var proveRetries = []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, time.Second, 2500 * time.Millisecond}

// Heartbeat proves the task's token is live (SendTaskHeartbeat) before a job writes
// anything on the strength of it: a producer on the bus is not trusted, and a forged
// token is refused here. The error wraps ErrTokenRefused for a token that is not
// live; the router then drops the message with a warning. An InvalidToken for a
// young event on its first receive is asked again a few times first (YoungEvent).
func (t *Task) Heartbeat(ctx context.Context) error {
	if t.Token == "" {
		return Invalid("MissingToken", errNoToken)
	}
	beats := t.heartbeater()
	if beats == nil {
		return errors.New("heartbeat: this worker has no Step Functions client")
	}
	for attempt := 0; ; attempt++ {
		err := beats.Heartbeat(ctx, t.Token)
		if err == nil {
			t.proved.Store(true)
			return nil
		}
		if !taskClosed(err) {
			return fmt.Errorf("heartbeat: %w", err)
		}
		if attempt >= len(proveRetries) || !t.young() || errorCode(err) != "InvalidToken" {
			return &tokenRefused{err: err}
		}
		wait := time.NewTimer(proveRetries[attempt])
		select {
		case <-ctx.Done():
			wait.Stop()
			return fmt.Errorf("heartbeat: %w", ctx.Err())
		case <-wait.C:
		}
	}
}

// young reports whether the event may still be in an emulator's window between its
// put and its task's heartbeat wait. The event's time comes from its producer, who
// is not trusted: a time in the future counts as now, and only the first receive
// qualifies (a redelivery comes long after that window), so a forger gains at most
// the few retries of proveRetries per message.
func (t *Task) young() bool {
	if t.ReceiveCount > 1 || t.EventTime.IsZero() {
		return false
	}
	now := time.Now
	if t.env != nil && t.env.nowFunc != nil {
		now = t.env.nowFunc
	}
	return max(now().Sub(t.EventTime), 0) < YoungEvent
}

// errorCode is the service's error code of err ("" if none): the Reporter wraps the
// SDK's error, which has an ErrorCode method.
func errorCode(err error) string {
	var coded interface{ ErrorCode() string }
	if errors.As(err, &coded) {
		return coded.ErrorCode()
	}
	return ""
}

type tokenRefused struct{ err error }

func (e *tokenRefused) Error() string        { return ErrTokenRefused.Error() + ": " + e.err.Error() }
func (e *tokenRefused) Is(target error) bool { return target == ErrTokenRefused }
func (e *tokenRefused) Unwrap() error        { return e.err }

// ExecutionName is the last part of an execution ARN
// (arn:<partition>:states:<region>:<account>:execution:<state machine>:<name>). It
// must make a safe S3 prefix: not empty, no slash or backslash, no control
// character, not "." or "..", and not one of the worker's own folders.
func ExecutionName(arn string) (string, error) {
	name, ok := executionARNName(arn)
	if !ok {
		return "", invalidf("not an execution ARN: %q", arn)
	}
	if err := checkPrefixName(name); err != nil {
		return "", err
	}
	return name, nil
}

// executionARNName is the name part of a standard or express execution ARN; ok
// is false when arn is not one.
func executionARNName(arn string) (name string, ok bool) {
	parts := strings.Split(arn, ":")
	if len(parts) < 8 || parts[0] != "arn" || parts[2] != "states" || (parts[5] != "execution" && parts[5] != "express") {
		return "", false
	}
	return parts[7], true
}

// checkPrefixName tells why an execution name cannot be an S3 key prefix of its
// own (nil when it can).
func checkPrefixName(name string) error {
	switch {
	case name == "" || name == "." || name == ".." || len(name) > 128:
		return invalidf("execution name %q cannot be a key prefix", name)
	case strings.ContainsAny(name, "/\\"):
		return invalidf("execution name %q has a slash", name)
	case strings.IndexFunc(name, isControl) >= 0:
		return invalidf("execution name %q has a control character", name)
	case slices.Contains(deploy.ReservedFolders(), name):
		// It would write among the batcher's or the callbacks' records, and fall
		// under their lifecycle rules (deploy/data-bucket.json).
		return invalidf("execution name %q is one of the worker's own folders", name)
	}
	return nil
}

// isControl: a C0 or C1 control character, or DEL.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

var errNoToken = errors.New("missing TaskToken")

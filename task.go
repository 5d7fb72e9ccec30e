package taskbridge

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/taskbridge/taskbridge/internal/jobs"
)

// Task is one event as a job sees it, and what the job may do with its task.
type Task struct {
	t   *jobs.Task
	ctx context.Context // the job's: LastCheckpoint reads the store under it
}

// Decode decodes the event's detail into v (as encoding/json does). A detail that
// does not decode is bad input: return the error as it is, and the task fails as
// "<job>.InvalidInput" and the message goes to the dead-letter queue.
func (t *Task) Decode(v any) error { return t.t.Decode(v) }

// Detail is the event's detail without its TaskToken (the token is a credential).
func (t *Task) Detail() (json.RawMessage, error) { return t.t.DetailWithoutToken() }

// DetailType is the event's detail-type, one of its queue's detailTypes.
func (t *Task) DetailType() string { return t.t.DetailType }

// Source is the event's source, one its queue's rule accepts.
func (t *Task) Source() string { return t.t.Source }

// EventID is the EventBridge id of the event: the same on every redelivery.
func (t *Task) EventID() string { return t.t.EventID }

// ExecutionARN is the detail's executionArn ("" when the event carries none).
func (t *Task) ExecutionARN() string { return t.t.ExecutionArn }

// ExecutionName is the last part of ExecutionARN, checked to be a safe object key
// prefix: one execution's data stays under "<name>/". It fails, as bad input, for a
// missing or malformed ARN, a name with a slash or a control character, and the
// names of the worker's own folders of the data bucket (manifests, results,
// claim-checks, glue).
func (t *Task) ExecutionName() (string, error) { return jobs.ExecutionName(t.t.ExecutionArn) }

// ReceiveCount is how many times the message was received, 1 on the first delivery.
func (t *Task) ReceiveCount() int { return t.t.ReceiveCount }

// LastAttempt reports whether an error now fails the task instead of a retry.
func (t *Task) LastAttempt() bool { return t.t.LastAttempt() }

// HandOff puts the next event on the bus with this task's token (and executionArn)
// added to detail, a JSON object: whoever handles that event completes the task
// (choreography inside an orchestrated step). The worker then reports nothing for
// this message, whatever the job returns without error.
func (t *Task) HandOff(ctx context.Context, detailType string, detail any) error {
	return t.t.HandOff(ctx, detailType, detail)
}

// Publish puts a side event on the bus, with the worker's source. It carries no
// token. An event over EventBridge's 1 MB (an entry of 1,048,576 bytes) fails the
// task: no retry makes it fit.
func (t *Task) Publish(ctx context.Context, detailType string, detail any) error {
	return t.t.Publish(ctx, detailType, detail)
}

// Heartbeat proves the task's token is live (SendTaskHeartbeat). Call it before a
// job writes anything on the strength of an event: a producer on the bus is not
// trusted, and a forged or closed token is refused here. Return its error as it is;
// for a refused token the message is dropped with a warning and nothing is reported.
// (The state machine step needs HeartbeatSeconds: emulators refuse heartbeats
// without it.)
func (t *Task) Heartbeat(ctx context.Context) error { return t.t.Heartbeat(ctx) }

// Checkpoint stores v (JSON, at most 256 KiB) as the task's progress, under the
// execution's prefix of the data bucket
// ("<execution name>/checkpoints/<hash>.json"): a later receive of the same task
// (after a crash, a stop, a retry) reads it with LastCheckpoint and resumes from
// there. The checkpoint is deleted once the task is done with (succeeded, failed,
// closed). A checkpoint over the limit is a final error: return it, and the task
// fails as "<job>.CheckpointTooLarge".
func (t *Task) Checkpoint(ctx context.Context, v any) error { return t.t.Checkpoint(ctx, v) }

// LastCheckpoint decodes the last stored checkpoint into v; ok is false when none.
// The first call reads the data bucket (under the job's context); later calls, and
// calls after Checkpoint, answer from memory.
func (t *Task) LastCheckpoint(v any) (ok bool, err error) {
	b, ok, err := t.t.LastCheckpoint(t.ctx)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode checkpoint: %w", err)
	}
	return true, nil
}

package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/taskbridge/taskbridge/internal/awsjson"
)

// MaxCheckpointBytes bounds one checkpoint, as Step Functions bounds a task's output.
const MaxCheckpointBytes = 256 * 1024

// CheckpointStore keeps checkpoints in the data bucket; internal/checkpoint
// implements it on S3. Safe for concurrent use. Get answers ok false for a key that
// holds none; Delete of a missing key is no error.
type CheckpointStore interface {
	Put(ctx context.Context, key string, body []byte) error
	Get(ctx context.Context, key string) (body []byte, ok bool, err error)
	Delete(ctx context.Context, key string) error
}

// checkpointState is a task's view of its checkpoint, made on the first use of it
// (so that a task that uses none costs nothing): the job's goroutines, an exec
// job's watcher and the router after the job use it under mu.
type checkpointState struct {
	mu      sync.Mutex
	loaded  bool   // last holds what the store has
	last    []byte // nil: none
	written bool   // this receive stored one
}

// checkpointState returns the task's state, made once.
func (t *Task) checkpointState() *checkpointState {
	if s := t.cp.Load(); s != nil {
		return s
	}
	t.cp.CompareAndSwap(nil, &checkpointState{})
	return t.cp.Load()
}

// UseCheckpoints sets the store of t's checkpoints; the router sets it on every task
// it makes (RouterConfig.Checkpoints). For tests of the job kinds.
func (t *Task) UseCheckpoints(s CheckpointStore) {
	env := taskEnv{checkpoints: s}
	if t.env != nil {
		env = *t.env
		env.checkpoints = s
	}
	t.env = &env
	t.cp.Store(nil)
}

// CheckpointKey is where the task's checkpoint lives in the data bucket:
// "<execution name>/checkpoints/<sha256 of the token, or of the event id without
// one>.json". The hash keeps the token (a credential) out of the key, and a
// producer who does not know a task's token cannot name its checkpoint.
func (t *Task) CheckpointKey() (string, error) {
	name, err := ExecutionName(t.ExecutionArn)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	id := "token:" + t.Token
	if t.Token == "" {
		id = "event:" + t.EventID
	}
	sum := sha256.Sum256([]byte(id))
	return name + "/checkpoints/" + hex.EncodeToString(sum[:16]) + ".json", nil
}

// Checkpoint stores v (JSON, at most MaxCheckpointBytes) as the task's progress: a
// later receive of the same task reads it with LastCheckpoint. A checkpoint too
// large is a final error (Permanent "CheckpointTooLarge"): no retry makes it fit.
func (t *Task) Checkpoint(ctx context.Context, v any) error {
	b, err := awsjson.Marshal(v)
	if err != nil {
		return Permanent("BadCheckpoint", fmt.Errorf("checkpoint: encode: %w", err))
	}
	return t.SaveCheckpoint(ctx, b)
}

// SaveCheckpoint stores b, a JSON document, as Checkpoint does; the same document
// as the last one is not stored again.
func (t *Task) SaveCheckpoint(ctx context.Context, b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case !json.Valid(b):
		return Permanent("BadCheckpoint", fmt.Errorf("checkpoint of %d bytes is not JSON", len(b)))
	case len(b) > MaxCheckpointBytes:
		return Permanent("CheckpointTooLarge", fmt.Errorf("checkpoint of %d bytes is over the %d byte limit", len(b), MaxCheckpointBytes))
	case t.checkpointStore() == nil:
		return errors.New("checkpoint: this worker has no data bucket for checkpoints")
	}
	key, err := t.CheckpointKey()
	if err != nil {
		return Permanent("BadCheckpoint", err)
	}
	cp := t.checkpointState()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.loaded && bytes.Equal(cp.last, b) {
		return nil
	}
	if err := t.checkpointStore().Put(ctx, key, b); err != nil {
		return fmt.Errorf("store checkpoint %s: %w", key, err)
	}
	cp.loaded, cp.last, cp.written = true, bytes.Clone(b), true
	return nil
}

// LastCheckpoint returns the last stored checkpoint of the task (read once, then
// what this receive stored); ok is false when there is none.
func (t *Task) LastCheckpoint(ctx context.Context) (b json.RawMessage, ok bool, err error) {
	cp := t.checkpointState()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.loaded {
		return bytes.Clone(cp.last), cp.last != nil, nil
	}
	if t.checkpointStore() == nil {
		return nil, false, errors.New("checkpoint: this worker has no data bucket for checkpoints")
	}
	key, err := t.CheckpointKey()
	if err != nil {
		return nil, false, Permanent("BadCheckpoint", err)
	}
	body, ok, err := t.checkpointStore().Get(ctx, key)
	if err != nil {
		return nil, false, fmt.Errorf("read checkpoint %s: %w", key, err)
	}
	if !ok {
		body = nil
	}
	cp.loaded, cp.last = true, body
	return bytes.Clone(body), ok, nil
}

// mayHaveCheckpoint reports whether a checkpoint of the task may be stored: this
// receive stored or found one, or an earlier receive may have (a redelivery). A
// first receive that did neither has none to clean up: no call per message.
func (t *Task) mayHaveCheckpoint() bool {
	if t.checkpointStore() == nil || t.ExecutionArn == "" {
		return false
	}
	if t.ReceiveCount > 1 {
		return true
	}
	cp := t.cp.Load()
	if cp == nil {
		return false
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.written || cp.last != nil
}

// clearCheckpoint deletes the task's checkpoint once its task is done with.
func (t *Task) clearCheckpoint(ctx context.Context) error {
	key, err := t.CheckpointKey()
	if err != nil {
		return nil // a task without a valid execution stored none
	}
	if err := t.checkpointStore().Delete(ctx, key); err != nil {
		return fmt.Errorf("delete checkpoint %s: %w", key, err)
	}
	return nil
}

package jobs

import (
	"context"
	"errors"
	"sync"
	"time"
)

// fakeReporter records outcomes; err (if set) is returned by every call.
type fakeReporter struct {
	mu           sync.Mutex
	err          error
	needsLiveCtx bool // refuse calls on an ended context, as the SDK does
	succeeded    map[string][]byte
	failed       map[string]string // token → code
	causes       map[string]string // token → cause
}

func newFakeReporter() *fakeReporter {
	return &fakeReporter{succeeded: map[string][]byte{}, failed: map[string]string{}, causes: map[string]string{}}
}

func (f *fakeReporter) Succeed(ctx context.Context, token string, output []byte) error {
	if f.needsLiveCtx && ctx.Err() != nil {
		return ctx.Err()
	}
	if token == "" {
		return errors.New("ValidationException: empty token")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.succeeded[token] = output
	return nil
}

func (f *fakeReporter) Fail(ctx context.Context, token, code, cause string) error {
	if f.needsLiveCtx && ctx.Err() != nil {
		return ctx.Err()
	}
	if token == "" {
		return errors.New("ValidationException: empty token")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.failed[token] = code
	f.causes[token] = cause
	return nil
}

func (f *fakeReporter) Heartbeat(context.Context, string) error { return nil }

type closedErr struct{}

func (closedErr) Error() string    { return "task closed" }
func (closedErr) TaskClosed() bool { return true }

type noBeats struct{}

func (noBeats) KeepAlive(ctx context.Context, _, _ string, _ time.Duration, _ func(error) error) (context.Context, func()) {
	return ctx, func() {}
}

func (noBeats) Heartbeat(context.Context, string) error { return nil }

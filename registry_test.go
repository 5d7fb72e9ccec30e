package taskbridge_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/taskbridge/taskbridge/internal/awstest"

	"github.com/taskbridge/taskbridge"
	"github.com/taskbridge/taskbridge/tasktest"
)

// The emulator of the integration tests (run_test.go) is stopped, then no goroutine
// may be left.
func TestMain(m *testing.M) { awstest.Main(m) }

func TestHandleRefusesProgramErrors(t *testing.T) {
	t.Parallel()
	r := taskbridge.NewRegistry()
	noop := func(context.Context, *taskbridge.Task) (any, error) { return nil, nil }
	require.Panics(t, func() { r.Handle("", noop) })
	require.Panics(t, func() { r.Handle("x", nil) })
	r.Handle("x", noop)
	require.Panics(t, func() { r.Handle("x", noop) }, "registered twice")
}

// A Registry declared as a value is as ready as NewRegistry's; a Runner runs the
// jobs registered before tasktest.New.
func TestZeroRegistryIsReady(t *testing.T) {
	t.Parallel()
	var r taskbridge.Registry
	r.Handle("greet", func(_ context.Context, t *taskbridge.Task) (any, error) {
		return map[string]string{"type": t.DetailType()}, nil
	})
	run := tasktest.New(&r)
	r.Handle("late", func(context.Context, *taskbridge.Task) (any, error) { return nil, nil })
	res, err := run.Run(context.Background(), "greet", nil, tasktest.Delivery{})
	require.NoError(t, err)
	require.True(t, res.Succeeded, "%+v", res)
	require.JSONEq(t, `{"type":"greet"}`, string(res.Output))
	_, err = run.Run(context.Background(), "late", nil, tasktest.Delivery{})
	require.Error(t, err, "a job registered after New is not the Runner's")
}

func TestOutcomes(t *testing.T) {
	t.Parallel()
	r := taskbridge.NewRegistry()
	r.Handle("flaky", func(context.Context, *taskbridge.Task) (any, error) { return nil, errors.New("throttled") })
	r.Handle("panics", func(context.Context, *taskbridge.Task) (any, error) { panic("boom") })
	r.Handle("proves", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		if err := t.Heartbeat(ctx); err != nil {
			return nil, err
		}
		return map[string]any{"receive": t.ReceiveCount(), "last": t.LastAttempt(), "type": t.DetailType(), "event": t.EventID()}, nil
	})
	run := tasktest.New(r)
	ctx := context.Background()

	res, err := run.Run(ctx, "flaky", nil, tasktest.Delivery{})
	require.NoError(t, err)
	require.True(t, res.Retried && !res.Failed, "a plain error is retried: %+v", res)
	res, _ = run.Run(ctx, "flaky", nil, tasktest.Delivery{ReceiveCount: 5, MaxReceives: 5})
	require.True(t, res.Failed && res.DeadLettered, "%+v", res)
	require.Equal(t, "flaky.RetriesExhausted", res.Error)
	require.Contains(t, res.Cause, "throttled")

	res, _ = run.Run(ctx, "panics", nil, tasktest.Delivery{})
	require.True(t, res.Failed && res.DeadLettered)
	require.Equal(t, "panics.Panic", res.Error)

	res, _ = run.Run(ctx, "proves", nil, tasktest.Delivery{DetailType: "proves", ReceiveCount: 2, MaxReceives: 2, EventID: "ev-1"})
	require.True(t, res.Succeeded, "%+v", res)
	require.JSONEq(t, `{"receive":2,"last":true,"type":"proves","event":"ev-1"}`, string(res.Output))

	run.CloseToken("forged")
	res, _ = run.Run(ctx, "proves", nil, tasktest.Delivery{Token: "forged"})
	require.False(t, res.Succeeded || res.Failed || res.Retried || res.DeadLettered, "a refused token is dropped: %+v", res)

	res, _ = run.Run(ctx, "proves", nil, tasktest.Delivery{NoToken: true})
	require.True(t, res.DeadLettered && !res.Failed, "no token: DLQ at once: %+v", res)
}

func TestFinisherIsBuiltIn(t *testing.T) {
	t.Parallel()
	run := tasktest.New(taskbridge.NewRegistry())
	res, err := run.Run(context.Background(), "finisher", map[string]any{"result": "done", "rows": 3}, tasktest.Delivery{DetailType: "taskFinished", ExecutionArn: "arn:aws:states:r:1:execution:s:n"})
	require.NoError(t, err)
	require.True(t, res.Succeeded)
	require.JSONEq(t, `{"result":"done","rows":3,"executionArn":"arn:aws:states:r:1:execution:s:n"}`, string(res.Output))
}

// A job that ignores its context cannot keep its task from being reported.
func TestJobThatIgnoresItsDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	r := taskbridge.NewRegistry()
	r.Handle("stuck", func(context.Context, *taskbridge.Task) (any, error) { <-release; return nil, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := tasktest.New(r).Run(ctx, "stuck", nil, tasktest.Delivery{ReceiveCount: 5, MaxReceives: 5})
	require.NoError(t, err)
	require.True(t, res.Failed && res.DeadLettered)
	require.Equal(t, "stuck.Timeout", res.Error)
}

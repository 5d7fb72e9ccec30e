package jobs

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// closingBeats finds the task closed at its first tick: as the callback reporter's
// KeepAlive does when a heartbeat is answered TaskTimedOut. It records the interval
// and the execution it was given.
type closingBeats struct {
	noBeats
	reason error // nil: the task stays live
	every  time.Duration
	arn    string
}

type closedReason struct{ reason string }

func (c closedReason) Error() string {
	return "SendTaskHeartbeat: task already closed (" + c.reason + ")"
}
func (closedReason) TaskClosed() bool       { return true }
func (c closedReason) ClosedReason() string { return c.reason }

func (b *closingBeats) KeepAlive(ctx context.Context, _, arn string, every time.Duration, closedCause func(error) error) (context.Context, func()) {
	b.every, b.arn = every, arn
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
		case <-time.After(every):
			if b.reason != nil {
				cancel(closedCause(b.reason))
			}
		}
	}()
	return ctx, func() { cancel(nil); <-done }
}

func TestAClosedTaskCancelsItsJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		beats := &closingBeats{reason: closedReason{"aborted"}}
		rep := newFakeReporter()
		m := NewMetrics(prometheus.NewRegistry())
		var cause error
		job := Job{Name: "long", Run: func(ctx context.Context, _ *Task) (any, error) {
			<-ctx.Done()
			cause = context.Cause(ctx)
			return nil, ctx.Err()
		}}
		r, err := NewRouter(RouterConfig{HeartbeatEvery: time.Minute, Routes: map[string]Route{
			"q": {Job: "long", DetailTypes: []string{"work"}, HeartbeatEvery: 20 * time.Second},
		}}, []Job{job}, rep, beats, nil, zaptest.NewLogger(t), m)
		require.NoError(t, err)

		began := time.Now()
		body := envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN})
		err = r.Handle(context.Background(), consumer.Message{Queue: "q", ID: "m1", Body: body, ReceiveCount: 5, MaxReceiveCount: 5})
		require.NoError(t, err, "the message is deleted: the task is done, even on its last receive")
		require.Equal(t, 20*time.Second, time.Since(began), "cancelled at the queue's own interval")
		require.Equal(t, execARN, beats.arn, "the execution settles an ambiguous answer")
		require.ErrorIs(t, cause, ErrTaskClosed)
		require.ErrorContains(t, cause, "aborted")
		require.Empty(t, rep.failed, "nothing reported on a closed task")
		require.Empty(t, rep.succeeded)
		require.Equal(t, 1.0, testutil.ToFloat64(m.cancelled.WithLabelValues("q", "aborted")))
		require.Equal(t, 1.0, testutil.ToFloat64(m.jobs.WithLabelValues("long", "cancelled")))
	})
}

func TestALiveTaskOrAnObserverIsNeverCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			beats *closingBeats
			mode  Mode
		}{
			{"live task", &closingBeats{}, Complete},
			{"observer", &closingBeats{reason: closedReason{"aborted"}}, Observe},
		} {
			m := NewMetrics(prometheus.NewRegistry())
			job := Job{Name: "long", Mode: tc.mode, Run: func(ctx context.Context, _ *Task) (any, error) {
				select {
				case <-ctx.Done():
					return nil, errors.New("cancelled")
				case <-time.After(time.Hour):
					return map[string]int{"ok": 1}, nil
				}
			}}
			r, err := NewRouter(RouterConfig{HeartbeatEvery: time.Minute, Routes: map[string]Route{"q": {Job: "long", DetailTypes: []string{"work"}}}},
				[]Job{job}, newFakeReporter(), tc.beats, nil, zaptest.NewLogger(t), m)
			require.NoError(t, err)
			body := envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN})
			require.NoError(t, r.Handle(context.Background(), consumer.Message{Queue: "q", ID: "m1", Body: body, ReceiveCount: 1, MaxReceiveCount: 5}), tc.name)
			require.Equal(t, 1.0, testutil.ToFloat64(m.jobs.WithLabelValues("long", "success")), tc.name)
		}
	})
}

package jobs

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// refusingBeats answers the first `refusals` heartbeats (all when refusals < 0) with
// code, as a Reporter wraps Step Functions' answer: stock moto says InvalidToken
// to a live token whose heartbeat wait it has not set up yet, then accepts it.
type refusingBeats struct {
	noBeats
	refusals int
	code     string
	calls    atomic.Int32
}

func (f *refusingBeats) Heartbeat(context.Context, string) error {
	n := int(f.calls.Add(1))
	if f.refusals < 0 || n <= f.refusals {
		return codedClosedErr{code: f.code}
	}
	return nil
}

type codedClosedErr struct{ code string }

func (e codedClosedErr) Error() string {
	return "SendTaskHeartbeat: task already closed (" + e.code + ")"
}
func (codedClosedErr) TaskClosed() bool    { return true }
func (e codedClosedErr) ErrorCode() string { return e.code }

func TestProvingHeartbeatOfAYoungEvent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		refusals  int
		code      string
		age       time.Duration // event time before now; negative: in the future
		receive   int
		refused   bool
		wantCalls int32
	}{
		{name: "an emulator that is not ready yet is asked again", refusals: 2, code: "InvalidToken", receive: 1, wantCalls: 3},
		{name: "a forged token is refused in the end", refusals: -1, code: "InvalidToken", receive: 1, refused: true, wantCalls: int32(len(proveRetries) + 1)},
		{name: "a forged token with a time in the future gets no more", refusals: -1, code: "InvalidToken", age: -time.Hour, receive: 1, refused: true, wantCalls: int32(len(proveRetries) + 1)},
		{name: "an old event is refused at once", refusals: 1, code: "InvalidToken", age: YoungEvent, receive: 1, refused: true, wantCalls: 1},
		{name: "a redelivery is refused at once", refusals: 1, code: "InvalidToken", receive: 2, refused: true, wantCalls: 1},
		{name: "a timed-out task is closed, not asked again", refusals: 1, code: "TaskTimedOut", receive: 1, refused: true, wantCalls: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				beats := &refusingBeats{refusals: tc.refusals, code: tc.code}
				task := &Task{Token: "tok", EventTime: time.Now().Add(-tc.age), ReceiveCount: tc.receive, env: &taskEnv{beats: beats}}
				err := task.Heartbeat(context.Background())
				require.Equal(t, tc.refused, errors.Is(err, ErrTokenRefused), "err=%v", err)
				if !tc.refused {
					require.NoError(t, err)
				}
				require.Equal(t, tc.wantCalls, beats.calls.Load())
			})
		})
	}
}

// A stop while the proof waits ends it at once, as an error (the message is released),
// not as a refused token.
func TestProvingHeartbeatStopsWithItsContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		task := &Task{Token: "tok", EventTime: time.Now(), ReceiveCount: 1, env: &taskEnv{beats: &refusingBeats{refusals: -1, code: "InvalidToken"}}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- task.Heartbeat(ctx) }()
		synctest.Wait()
		cancel()
		err := <-done
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, ErrTokenRefused)
	})
}

// Through the router: a young message whose first proof is refused runs its job.
func TestRouterRunsAYoungMessageAfterARefusedProof(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		proving := func(ctx context.Context, tk *Task) (any, error) {
			if err := tk.Heartbeat(ctx); err != nil {
				return nil, err
			}
			return map[string]int{"ok": 1}, nil
		}
		r, rep, _ := routerWith(t, Job{Name: "job", Run: proving})
		beats := &refusingBeats{refusals: 1, code: "InvalidToken"}
		r.beats, r.env.beats = beats, beats
		msg := consumerMessage(envelope("work", map[string]any{"TaskToken": "tok"}))
		require.NoError(t, r.Handle(context.Background(), msg))
		require.JSONEq(t, `{"ok":1}`, string(rep.succeeded["tok"]))
		require.Equal(t, int32(2), beats.calls.Load(), "refused once, accepted the second time")
	})
}

// orderedBeats is refusingBeats that also writes each heartbeat into the log the
// reporter writes its outcomes into, so a test sees which came first.
type orderedBeats struct {
	refusingBeats
	log *[]string
}

func (b *orderedBeats) Heartbeat(ctx context.Context, token string) error {
	err := b.refusingBeats.Heartbeat(ctx, token)
	*b.log = append(*b.log, "heartbeat")
	return err
}

type orderedReporter struct {
	*fakeReporter
	log *[]string
}

func (r orderedReporter) Succeed(ctx context.Context, token string, output []byte) error {
	*r.log = append(*r.log, "succeed")
	return r.fakeReporter.Succeed(ctx, token, output)
}

func (r orderedReporter) Fail(ctx context.Context, token, code, cause string) error {
	*r.log = append(*r.log, "fail")
	return r.fakeReporter.Fail(ctx, token, code, cause)
}

// RouterConfig.ProveBeforeAnswer: stock moto does not hear an outcome sent before it
// sets up the task's heartbeat wait (it answers a heartbeat then with InvalidToken),
// so the outcome of a young task waits for an accepted heartbeat.
func TestRouterProvesBeforeAnsweringAYoungTask(t *testing.T) {
	t.Parallel()
	answers := func(ctx context.Context, tk *Task) (any, error) { return map[string]int{"ok": 1}, nil }
	proves := func(ctx context.Context, tk *Task) (any, error) { return map[string]int{"ok": 1}, tk.Heartbeat(ctx) }
	fails := func(ctx context.Context, tk *Task) (any, error) { return nil, Permanent("Broken", errors.New("no")) }
	cases := []struct {
		name     string
		run      func(context.Context, *Task) (any, error)
		guard    bool
		age      time.Duration
		refusals int
		code     string
		want     []string
	}{
		{name: "an emulator not ready yet is waited for", run: answers, guard: true, refusals: 1, code: "InvalidToken", want: []string{"heartbeat", "heartbeat", "succeed"}},
		{name: "a failure waits too", run: fails, guard: true, refusals: 1, code: "InvalidToken", want: []string{"heartbeat", "heartbeat", "fail"}},
		{name: "a job that proved its token is not proved again", run: proves, guard: true, want: []string{"heartbeat", "succeed"}},
		{name: "off: the outcome goes at once", run: answers, refusals: -1, code: "InvalidToken", want: []string{"succeed"}},
		{name: "an old event's task is past the window", run: answers, guard: true, age: YoungEvent, refusals: -1, code: "InvalidToken", want: []string{"succeed"}},
		{name: "a closed task gets no outcome", run: answers, guard: true, refusals: -1, code: "TaskTimedOut", want: []string{"heartbeat"}},
		{name: "a closed task gets no failure either", run: fails, guard: true, refusals: -1, code: "TaskTimedOut", want: []string{"heartbeat"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var calls []string
				rep := orderedReporter{fakeReporter: newFakeReporter(), log: &calls}
				beats := &orderedBeats{refusingBeats: refusingBeats{refusals: tc.refusals, code: tc.code}, log: &calls}
				r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "job", DetailTypes: []string{"work"}}}, ProveBeforeAnswer: tc.guard},
					[]Job{{Name: "job", Run: tc.run}}, rep, beats, nil, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
				require.NoError(t, err)
				body := envelopeAt("work", map[string]any{"TaskToken": "tok"}, time.Now().Add(-tc.age))
				require.NoError(t, r.Handle(context.Background(), consumerMessage(body)), "every case's message is done with")
				require.Equal(t, tc.want, calls)
			})
		})
	}
}

func consumerMessage(body string) consumer.Message {
	return consumer.Message{ID: "m", Queue: "q", Body: body, ReceiveCount: 1, MaxReceiveCount: 5}
}

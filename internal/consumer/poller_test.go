package consumer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/taskbridge/taskbridge/internal/awstest"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { awstest.Main(m) } // goleak included

type bundle struct {
	sqs      *fakeSQS
	poller   *Poller
	metrics  *Metrics
	activity *countingActivity
	cancel   context.CancelFunc // ends receiveCtx: the stop
	// cancelWork ends workCtx: the drain ends at once.
	cancelWork context.CancelFunc
	done       chan error
}

// countingActivity is an Activity that checks every End has its Begin.
type countingActivity struct {
	t                  *testing.T
	begun, ended, peak atomic.Int64
}

func (a *countingActivity) Begin(n int) {
	held := a.begun.Add(int64(n)) - a.ended.Load()
	for p := a.peak.Load(); held > p && !a.peak.CompareAndSwap(p, held); p = a.peak.Load() {
	}
}

func (a *countingActivity) End(n int) {
	if a.ended.Add(int64(n)) > a.begun.Load() {
		a.t.Errorf("activity ended %d times, begun only %d", a.ended.Load(), a.begun.Load())
	}
}

func (a *countingActivity) inHand() int64 { return a.begun.Load() - a.ended.Load() }

// setup starts a Poller over a fake queue with handler h; call stop to end it.
func setup(t *testing.T, cfg Config, h HandlerFunc, fakeOpts ...func(*fakeSQS)) *bundle {
	t.Helper()
	if cfg.Queue == "" {
		cfg.Queue = "q"
	}
	if cfg.QueueURL == "" {
		cfg.QueueURL = queueURL
	}
	if cfg.VisibilityTimeout == 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 4
	}
	if cfg.PollWait == 0 {
		cfg.PollWait = time.Second
	}
	f := newFakeSQS(cfg.VisibilityTimeout)
	for _, o := range fakeOpts {
		o(f)
	}
	m := NewMetrics(prometheus.NewRegistry())
	activity := &countingActivity{t: t}
	if cfg.Activity == nil {
		cfg.Activity = activity
	}
	p, err := NewPoller(cfg, f, h, zaptest.NewLogger(t), m)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	workCtx, cancelWork := context.WithCancel(context.Background())
	b := &bundle{sqs: f, poller: p, metrics: m, activity: activity, cancel: cancel, cancelWork: cancelWork, done: make(chan error, 1)}
	go func() { b.done <- p.Work(ctx, workCtx) }()
	return b
}

// stop stops the poller; every message it took in hand has been settled then,
// unless a handler outlived the stop's budget (still running, or abandoned).
func (b *bundle) stop(t *testing.T) {
	t.Helper()
	b.cancel()
	require.NoError(t, <-b.done)
	b.cancelWork()
	if b.handled("abandoned") == 0 && testutil.ToFloat64(b.metrics.inFlight.WithLabelValues("q")) == 0 {
		require.Zero(t, b.activity.inHand(), "every Begin has its End once the poller stopped")
	}
}

func (b *bundle) handled(outcome string) float64 {
	return testutil.ToFloat64(b.metrics.handled.WithLabelValues("q", outcome))
}

func TestEveryMessageIsHandledAndDeletedInBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen sync.Map
		b := setup(t, Config{Concurrency: 10}, func(_ context.Context, m Message) error {
			seen.Store(m.Body, m.ReceiveCount)
			return nil
		})
		bodies := make([]string, 35)
		for i := range bodies {
			bodies[i] = string(rune('a'+i%26)) + string(rune('0'+i/26))
		}
		b.sqs.send(bodies...)
		time.Sleep(5 * time.Second) // fake time: lets the poller run to quiet
		synctest.Wait()
		b.stop(t)

		got := b.sqs.deletedBodies()
		sort.Strings(got)
		want := append([]string(nil), bodies...)
		sort.Strings(want)
		require.Equal(t, want, got)
		require.LessOrEqual(t, b.sqs.count("DeleteMessageBatch"), 8, "deletes go in batches")
		require.Equal(t, 35.0, b.handled("deleted"))
		v, _ := seen.Load(bodies[0])
		require.Equal(t, 1, v, "receive count is exposed")
	})
}

func TestNeverReceivesMoreThanFreeSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var running, peak atomic.Int32
		release := make(chan struct{})
		b := setup(t, Config{Concurrency: 3}, func(ctx context.Context, _ Message) error {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			<-release
			running.Add(-1)
			return nil
		})
		b.sqs.send("1", "2", "3", "4", "5", "6", "7")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.EqualValues(t, 3, peak.Load())
		close(release)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		b.stop(t)
		for _, asked := range b.sqs.maxAsked {
			require.LessOrEqual(t, asked, int32(3), "never asks for more than the free slots")
		}
		require.Len(t, b.sqs.deletedBodies(), 7)
	})
}

func TestFateOfEachHandlerResult(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		panic   bool
		outcome string
		dlq     bool
		deleted bool
	}{
		{name: "success deletes", outcome: "deleted", deleted: true},
		{name: "dead letter copies to the DLQ, then deletes", err: DeadLetter(errors.New("not JSON")), outcome: "dead_lettered", dlq: true, deleted: true},
		{name: "error leaves it for a retry with backoff", err: errors.New("throttled"), outcome: "retried"},
		{name: "panic is an error for this message only", panic: true, outcome: "retried"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls atomic.Int32
				b := setup(t, Config{DLQURL: "https://sqs.local/dlq"}, func(context.Context, Message) error {
					if calls.Add(1) > 1 {
						return nil // the retry succeeds
					}
					if tc.panic {
						panic("boom")
					}
					return tc.err
				})
				b.sqs.send("body")
				time.Sleep(deleteMaxDelay + 500*time.Millisecond)
				synctest.Wait()
				require.Equal(t, 1.0, b.handled(tc.outcome))
				if tc.dlq {
					require.Equal(t, []string{"body"}, b.sqs.dlqBodies)
					require.Contains(t, aws.ToString(b.sqs.dlq[0].StringValue), "not JSON", "the DLQ copy says why")
				}
				require.Equal(t, tc.deleted, len(b.sqs.deletedBodies()) == 1)
				if !tc.deleted {
					require.Len(t, b.sqs.changes, 1, "a backoff visibility change")
					require.Greater(t, b.sqs.changes[0], time.Duration(0))
					time.Sleep(b.sqs.changes[0] + time.Second)
					synctest.Wait()
					require.EqualValues(t, 2, calls.Load(), "redelivered after the backoff")
					require.Len(t, b.sqs.deletedBodies(), 1)
				}
				b.stop(t)
			})
		})
	}
}

// The worker's DLQ copy keeps the X-Ray trace header the message arrived with, so
// that a redrive of it still joins that trace.
func TestDeadLetterCopyKeepsTheTraceHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
		b := setup(t, Config{DLQURL: "https://sqs.local/dlq"}, func(context.Context, Message) error { return DeadLetter(errors.New("bad")) })
		b.sqs.sendTraced("traced", trace)
		b.sqs.send("untraced")
		time.Sleep(deleteMaxDelay + 500*time.Millisecond)
		synctest.Wait()
		b.stop(t)
		require.Equal(t, 2.0, b.handled("dead_lettered"))
		traces := map[string]string{}
		for i, body := range b.sqs.dlqBodies {
			traces[body] = b.sqs.dlqTraces[i]
		}
		require.Equal(t, map[string]string{"traced": trace, "untraced": ""}, traces)
	})
}

func TestDeadLetterWithoutDLQFallsBackToRedrive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{}, func(context.Context, Message) error { return DeadLetter(errors.New("bad")) })
		b.sqs.send("body")
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		b.stop(t)
		require.Empty(t, b.sqs.deletedBodies(), "nothing is lost")
		require.Equal(t, 1.0, b.handled("retried"))
	})
}

func TestLongHandlerKeepsItsMessageInvisible(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		b := setup(t, Config{VisibilityTimeout: 6 * time.Second}, func(ctx context.Context, _ Message) error {
			calls.Add(1)
			time.Sleep(20 * time.Second) // over three visibility timeouts
			return nil
		})
		b.sqs.send("slow")
		time.Sleep(25 * time.Second)
		synctest.Wait()
		b.stop(t)
		require.EqualValues(t, 1, calls.Load(), "never redelivered while running")
		require.GreaterOrEqual(t, b.sqs.count("ChangeMessageVisibilityBatch"), 3)
		require.Equal(t, []string{"slow"}, b.sqs.deletedBodies())
	})
}

func TestLostVisibilityCancelsTheHandlerAndKeepsTheMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cancelled := make(chan struct{})
		var once sync.Once
		b := setup(t, Config{VisibilityTimeout: 6 * time.Second, DrainTimeout: time.Second}, func(ctx context.Context, _ Message) error {
			<-ctx.Done()
			once.Do(func() { close(cancelled) })
			return ctx.Err()
		})
		b.sqs.mu.Lock()
		b.sqs.extendErr = errors.New("connection refused")
		b.sqs.mu.Unlock()
		b.sqs.send("m")
		time.Sleep(8 * time.Second)
		synctest.Wait()
		select {
		case <-cancelled:
		default:
			t.Fatal("handler not cancelled after its visibility ran out")
		}
		b.stop(t)
		require.GreaterOrEqual(t, b.handled("abandoned"), 1.0)
		require.Empty(t, b.sqs.deletedBodies(), "someone else may own it now")
	})
}

func TestReceiveErrorsBackOffThenRecover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failing atomic.Bool
		failing.Store(true)
		var results []error
		var mu sync.Mutex
		// Failing from the first receive on: set before the poller starts.
		b := setup(t, Config{ReceiveResultFunc: func(err error) { mu.Lock(); results = append(results, err); mu.Unlock() }},
			func(context.Context, Message) error { return nil },
			func(f *fakeSQS) {
				f.receiveErr = func() error {
					if failing.Load() {
						return errors.New("dial tcp: connection refused")
					}
					return nil
				}
			})
		time.Sleep(60 * time.Second)
		synctest.Wait()
		calls := b.sqs.count("ReceiveMessage")
		require.Less(t, calls, 20, "backs off instead of spinning: %d calls in a minute", calls)
		require.Greater(t, calls, 3)

		failing.Store(false)
		b.sqs.send("after")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		b.stop(t)
		require.Equal(t, []string{"after"}, b.sqs.deletedBodies(), "recovers when the service is back")
		mu.Lock()
		require.Error(t, results[0])
		require.NoError(t, results[len(results)-1])
		mu.Unlock()
	})
}

func TestStopDrainsThenReleasesWhatIsUnfinished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{Concurrency: 2, DrainTimeout: 5 * time.Second}, func(ctx context.Context, m Message) error {
			d := time.Second
			if m.Body == "stuck" {
				d = time.Hour
			}
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		b.sqs.send("quick", "stuck")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		start := time.Now()
		b.stop(t)
		require.LessOrEqual(t, time.Since(start), 6*time.Second, "returns within the drain timeout")
		require.Equal(t, []string{"quick"}, b.sqs.deletedBodies(), "the finished one is deleted")
		require.Equal(t, 1.0, b.handled("released"))
		require.Contains(t, b.sqs.changes, time.Duration(0), "the unfinished one is visible again at once")
	})
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := Config{Concurrency: 0, PollWait: time.Minute}.Validate()
	require.Error(t, err)
	for _, want := range []string{"Queue is empty", "QueueURL is empty", "Concurrency must be >= 1", "VisibilityTimeout", "PollWait"} {
		require.Contains(t, err.Error(), want)
	}
}

func TestLastAttempt(t *testing.T) {
	t.Parallel()
	require.False(t, Message{ReceiveCount: 4, MaxReceiveCount: 5}.LastAttempt())
	require.True(t, Message{ReceiveCount: 5, MaxReceiveCount: 5}.LastAttempt())
	require.False(t, Message{ReceiveCount: 9}.LastAttempt(), "unknown max: never the last")
}

func TestIdleQueueCostsOneLongPollPerWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A drain of 21 s leaves the 20 s poll uncapped (PollWaitWithin).
		b := setup(t, Config{PollWait: 20 * time.Second, DrainTimeout: 21 * time.Second, MaxPollers: 4}, func(context.Context, Message) error { return nil })
		time.Sleep(10*time.Minute - time.Nanosecond) // the window [0, 10 min)
		synctest.Wait()
		b.stop(t)
		perMinute := float64(b.sqs.count("ReceiveMessage")) / 10
		t.Logf("idle: %.1f ReceiveMessage calls a minute", perMinute)
		require.LessOrEqual(t, perMinute, 3.0)
	})
}

func TestBusyQueueAddsPollersAndDropsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var peak atomic.Int32
		var b *bundle
		b = setup(t, Config{Concurrency: 40, MaxPollers: 3}, func(context.Context, Message) error {
			if n := b.poller.pollers.Load(); n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(time.Second)
			return nil
		})
		bodies := make([]string, 200)
		for i := range bodies {
			bodies[i] = string(rune(0x4e00 + i))
		}
		b.sqs.send(bodies...)
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Len(t, b.sqs.deletedBodies(), 200)
		require.Greater(t, peak.Load(), int32(1), "a busy queue gets more pollers")
		require.LessOrEqual(t, peak.Load(), int32(3), "never more than MaxPollers")
		require.EqualValues(t, 1, b.poller.pollers.Load(), "back to one when the queue is empty")
		calls := b.sqs.count("ReceiveMessage")
		b.stop(t)
		t.Logf("200 messages: %d receives, %d delete batches", calls, b.sqs.count("DeleteMessageBatch"))
	})
}

// A long poll cancelled on the client still takes messages on the server (issue 12
// item 10): the receive in flight at a stop runs to its end, and what it brings is
// visible again at once instead of after a visibility timeout.
func TestStopReleasesWhatAnInFlightReceiveBrings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{PollWait: 20 * time.Second, DrainTimeout: 21 * time.Second, VisibilityTimeout: 120 * time.Second},
			func(context.Context, Message) error { return nil },
			func(f *fakeSQS) { f.strandOnCancel = true })
		time.Sleep(2 * time.Second) // a long poll is in flight on the idle queue
		synctest.Wait()
		b.cancel()
		time.Sleep(500 * time.Millisecond)
		b.sqs.send("late-1", "late-2")
		require.NoError(t, <-b.done)
		require.True(t, b.sqs.visible("late-1"), "a message taken by the last receive is visible again at once")
		require.True(t, b.sqs.visible("late-2"))
		require.Empty(t, b.sqs.deletedBodies(), "nothing is handled after the stop")
		require.Equal(t, 2.0, b.handled("released"))
		require.Equal(t, []time.Duration{0, 0}, b.sqs.batchChanges, "released in one batch call")
	})
}

// A stop shorter than a long poll (issue 28 item 3): the poll wait is capped so that
// a receive in flight at the stop returns within the drain, and what it brings is
// released at once instead of stranded for a visibility timeout.
func TestPollWaitFitsTheDrainAndTheLastReceiveIsReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{PollWait: 20 * time.Second, DrainTimeout: 6 * time.Second, VisibilityTimeout: time.Hour},
			func(context.Context, Message) error { return nil },
			func(f *fakeSQS) { f.strandOnCancel = true })
		// The first receive (5 s) returns empty; the stop comes just before the
		// second one's wait ends, and messages arrive after it.
		time.Sleep(9900 * time.Millisecond)
		synctest.Wait()
		b.cancel()
		time.Sleep(50 * time.Millisecond)
		b.sqs.send("late-1", "late-2")
		require.NoError(t, <-b.done)
		// Nothing of the poller's is in flight on the server any more: a message
		// sent now is not taken by a receive the stop cut.
		b.sqs.send("after")
		time.Sleep(15 * time.Second)
		synctest.Wait()
		require.True(t, b.sqs.visible("after"), "no receive outlived the stop")
		b.sqs.mu.Lock()
		waits := append([]int32(nil), b.sqs.waits...)
		b.sqs.mu.Unlock()
		for _, w := range waits {
			require.EqualValues(t, 5, w, "PollWaitWithin(6 s): 5 s")
		}
		require.True(t, b.sqs.visible("late-1"), "taken by the receive in flight at the stop, and released")
		require.True(t, b.sqs.visible("late-2"))
		require.Equal(t, 2.0, b.handled("released"))
	})
}

// A stop cut short (the end of workCtx: a second signal) cuts the receive in flight,
// which goes on taking messages on the server until its wait ends. The running
// handler's message is released with a visibility that outlasts that orphaned poll:
// released at 0, the orphan would take it and strand it for a visibility timeout.
func TestCutReceiveDoesNotStrandTheReleasedMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		b := setup(t, Config{Concurrency: 2, PollWait: 20 * time.Second, DrainTimeout: time.Minute, VisibilityTimeout: time.Hour},
			func(ctx context.Context, m Message) error {
				close(started)
				<-ctx.Done()
				return ctx.Err()
			},
			func(f *fakeSQS) { f.strandOnCancel = true })
		b.sqs.send("running")
		<-started
		time.Sleep(3 * time.Second) // the next long poll (20 s) is in flight
		synctest.Wait()
		b.cancel()     // the stop: the drain would give the handler a minute
		b.cancelWork() // a second signal: at once
		require.NoError(t, <-b.done)
		require.Equal(t, 1.0, b.handled("released"))
		b.sqs.mu.Lock()
		changes := append([]time.Duration(nil), b.sqs.changes...)
		b.sqs.mu.Unlock()
		require.Len(t, changes, 1)
		require.Greater(t, changes[0], time.Duration(0), "not visible while the cut poll still runs on the server")
		require.LessOrEqual(t, changes[0], 20*time.Second+receiveMargin+time.Second, "visible once it ends, not after the hour of visibility")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		require.True(t, b.sqs.visible("running"), "the orphaned poll did not take it")
	})
}

func TestPollWaitWithin(t *testing.T) {
	t.Parallel()
	for drain, want := range map[time.Duration]time.Duration{
		21 * time.Second:        20 * time.Second,
		6 * time.Second:         5 * time.Second,
		6500 * time.Millisecond: 5 * time.Second,
		1500 * time.Millisecond: time.Second,
		0:                       time.Second, // SQS's shortest long poll
	} {
		require.Equal(t, want, PollWaitWithin(drain), "drain %s", drain)
	}
}

// With SQS slow after a stop (issue 12 item 11), releasing the unfinished messages
// and flushing the deletes fit FlushTimeout together, after DrainTimeout.
func TestStopFitsItsBudgetWhenSQSIsSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{Concurrency: 4, DrainTimeout: 5 * time.Second, FlushTimeout: 2 * time.Second},
			func(ctx context.Context, m Message) error {
				d := 5*time.Second - time.Millisecond // ends as the drain does
				switch m.Body {
				case "stuck":
					d = time.Hour
				case "deaf": // ignores its context, like a call on a detached one
					time.Sleep(time.Hour)
					return nil
				}
				select {
				case <-time.After(d):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		b.sqs.send("quick", "stuck", "deaf")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		b.sqs.mu.Lock()
		b.sqs.callDelay = time.Minute // every delete and release hangs
		b.sqs.mu.Unlock()
		start := time.Now()
		b.stop(t)
		require.LessOrEqual(t, time.Since(start), 7*time.Second, "DrainTimeout + FlushTimeout, not one 5 s call after another")
		require.Empty(t, b.sqs.deletedBodies(), "deletes cut by the budget: the messages come back")
		time.Sleep(time.Hour)
		synctest.Wait()
		require.Equal(t, 1.0, b.handled("abandoned"), "the deaf handler's late result is not acted on")
	})
}

// A long poll the service accepted counts as polling (issue 12 item 12): readiness
// hears of it within acceptedAfter, not when the 20 s poll returns.
func TestAcceptedLongPollReportsPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var results []error
		stopped := 0
		b := setup(t, Config{PollWait: 20 * time.Second,
			ReceiveResultFunc: func(err error) { mu.Lock(); results = append(results, err); mu.Unlock() },
			StoppedFunc:       func() { mu.Lock(); stopped++; mu.Unlock() },
		}, func(context.Context, Message) error { return nil })
		time.Sleep(acceptedAfter + 100*time.Millisecond)
		synctest.Wait()
		mu.Lock()
		require.Equal(t, []error{nil}, results, "accepted, long before the poll returns")
		require.Zero(t, stopped)
		mu.Unlock()
		b.stop(t)
		mu.Lock()
		require.Equal(t, 1, stopped, "a stopped poller says so")
		mu.Unlock()
	})
}

// With quick handlers the poller receives ahead (issue 13): it holds up to
// Concurrency + prefetch messages, still runs at most Concurrency, and stops
// receiving ahead once handlers are slow.
func TestQuickHandlersReceiveAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var slow atomic.Bool
		block := make(chan struct{})
		var running, peak atomic.Int32
		b := setup(t, Config{Concurrency: 4}, func(ctx context.Context, m Message) error {
			if !slow.Load() {
				return nil
			}
			n := running.Add(1)
			defer running.Add(-1)
			if n > peak.Load() {
				peak.Store(n)
			}
			<-block
			time.Sleep(time.Second)
			return nil
		})
		b.sqs.send(bodies("quick", 20)...)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.True(t, b.poller.prefetching.Load(), "quick handlers: receiving ahead")

		slow.Store(true)
		b.sqs.send(bodies("slow", 20)...)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.EqualValues(t, 4, running.Load())
		require.Equal(t, 8, b.sqs.held(), "Concurrency running, prefetch waiting for a handler")

		close(block)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		require.False(t, b.poller.prefetching.Load(), "slow handlers: no receiving ahead")
		b.stop(t)
		require.Len(t, b.sqs.deletedBodies(), 40)
		require.EqualValues(t, 4, peak.Load(), "never more than Concurrency at once")
	})
}

// A message that waits for a handler is kept invisible like a running one; if that
// fails and its visibility runs out, it is not run: someone else may own it.
func TestPrefetchedMessageWhoseVisibilityRanOutIsNotRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		seen := map[string][]int{}
		b := setup(t, Config{Concurrency: 1, VisibilityTimeout: 6 * time.Second}, func(ctx context.Context, m Message) error {
			mu.Lock()
			seen[m.Body] = append(seen[m.Body], m.ReceiveCount)
			mu.Unlock()
			if m.Body == "slow" && m.ReceiveCount == 1 {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		b.sqs.send(bodies("quick", 5)...)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.True(t, b.poller.prefetching.Load())

		b.sqs.mu.Lock()
		b.sqs.extendErr = errors.New("connection refused")
		b.sqs.mu.Unlock()
		b.sqs.send("slow", "waiting")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		b.stop(t)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []int{2}, seen["waiting"], "not run on the delivery whose visibility ran out")
		require.Equal(t, []int{1, 2}, seen["slow"])
		require.Equal(t, 2.0, b.handled("abandoned"))
		require.Contains(t, b.sqs.deletedBodies(), "waiting")
	})
}

// At a drain timeout, a message still waiting for a handler is released unstarted.
func TestDrainTimeoutReleasesPrefetchedMessagesUnstarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var seen []string
		b := setup(t, Config{Concurrency: 1, DrainTimeout: 2 * time.Second}, func(ctx context.Context, m Message) error {
			mu.Lock()
			seen = append(seen, m.Body)
			mu.Unlock()
			if m.Body == "stuck" {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		b.sqs.send(bodies("quick", 5)...)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		b.sqs.send("stuck", "queued")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Equal(t, 2, b.sqs.held())
		b.stop(t)
		mu.Lock()
		defer mu.Unlock()
		require.NotContains(t, seen, "queued", "never started")
		require.Equal(t, 2.0, b.handled("released"))
		require.True(t, b.sqs.visible("stuck"))
		require.True(t, b.sqs.visible("queued"), "visible again at once")
	})
}

func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

func TestActivityCountsMessagesFromReceiptToFate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		b := setup(t, Config{Concurrency: 2}, func(ctx context.Context, m Message) error {
			<-release
			if m.Body == "fail" {
				return errors.New("retry me")
			}
			return nil
		})
		b.sqs.send("ok", "fail", "later")
		time.Sleep(time.Second)
		synctest.Wait()
		require.EqualValues(t, 2, b.activity.inHand(), "two running: in hand from receipt")
		close(release)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		require.Zero(t, b.activity.inHand(), "deleted and retried messages are settled")
		require.GreaterOrEqual(t, b.activity.begun.Load(), int64(3))
		require.EqualValues(t, 2, b.activity.peak.Load())
		b.stop(t)
	})
}

// The caller's work context ends the drain at once, after the stop or alone (a
// hard stop): running handlers are cancelled and their messages released, the
// finished ones deleted, every Begin ended.
func TestEndOfWorkEndsTheDrainAtOnce(t *testing.T) {
	for _, stopFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "after the stop", false: "alone"}[stopFirst], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := setup(t, Config{Concurrency: 2, DrainTimeout: time.Hour}, func(ctx context.Context, m Message) error {
					if m.Body == "quick" {
						return nil
					}
					<-ctx.Done()
					return ctx.Err()
				})
				b.sqs.send("quick", "stuck")
				time.Sleep(100 * time.Millisecond)
				synctest.Wait()
				start := time.Now()
				if stopFirst {
					b.cancel()
					time.Sleep(time.Second)
					synctest.Wait()
					require.Empty(t, b.done, "still draining: the hour of DrainTimeout is not over")
				}
				b.cancelWork()
				require.NoError(t, <-b.done)
				require.Less(t, time.Since(start), time.Minute, "not the hour of DrainTimeout")
				b.cancel()
				require.Zero(t, b.activity.inHand(), "every Begin has its End")
				require.Equal(t, []string{"quick"}, b.sqs.deletedBodies())
				require.Equal(t, 1.0, b.handled("released"))
				if !stopFirst {
					// The receive in flight was cut: it may take messages on the server
					// until its wait ends, so the release outlasts it (receiveWatch).
					require.False(t, b.sqs.visible("stuck"), "not while the cut poll may take it")
					time.Sleep(time.Second + receiveMargin)
					synctest.Wait()
				}
				require.True(t, b.sqs.visible("stuck"), "visible again at once, or once the cut poll ended; not after the visibility timeout")
			})
		})
	}
}

// ReceiveOnDemand holds no message it cannot start, even with quick handlers.
func TestReceiveOnDemandHoldsOnlyWhatRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var slow atomic.Bool
		block := make(chan struct{})
		b := setup(t, Config{Concurrency: 4, ReceiveMode: ReceiveOnDemand}, func(ctx context.Context, m Message) error {
			if slow.Load() {
				<-block
			}
			return nil
		})
		b.sqs.send(bodies("quick", 20)...)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.False(t, b.poller.prefetching.Load(), "never receives ahead")
		slow.Store(true)
		b.sqs.send(bodies("slow", 20)...)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Equal(t, 4, b.sqs.held(), "Concurrency running, none waiting")
		close(block)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		b.stop(t)
		require.Len(t, b.sqs.deletedBodies(), 40)
	})
}

// settle is the one place that decides a message's fate: the handler's result and
// the message's phase, nothing else.
func TestSettleFateByPhase(t *testing.T) {
	dead := DeadLetter(errors.New("not JSON"))
	failed := errors.New("throttled")
	cases := []struct {
		phase   phase
		err     error
		outcome string
		calls   string // the SQS call it makes, if any
	}{
		{receiving, nil, "deleted", "DeleteMessageBatch"},
		{receiving, dead, "dead_lettered", "SendMessage"},
		{receiving, failed, "retried", "ChangeMessageVisibility"},
		{draining, nil, "deleted", "DeleteMessageBatch"},
		{draining, failed, "retried", "ChangeMessageVisibility"},
		{cancelled, nil, "deleted", "DeleteMessageBatch"},
		{cancelled, dead, "dead_lettered", "SendMessage"},
		{cancelled, failed, "released", "ChangeMessageVisibility"},
		{cancelled, errNotStarted, "released", "ChangeMessageVisibility"},
		{lost, nil, "abandoned", ""},
		{lost, failed, "abandoned", ""},
		{spent, nil, "abandoned", ""},
		{spent, dead, "abandoned", ""},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d %v", tc.phase, tc.err), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeSQS(30 * time.Second)
				f.send("body")
				raw := f.take(1)[0]
				m := NewMetrics(prometheus.NewRegistry())
				p, err := NewPoller(Config{Queue: "q", QueueURL: "u", DLQURL: "dlq", Concurrency: 1, VisibilityTimeout: 30 * time.Second}, f, nil, zaptest.NewLogger(t), m)
				require.NoError(t, err)
				budget := newStopBudget(context.Background(), time.Second, time.Second, func() {})
				defer budget.close()
				ctx, stop := context.WithCancel(context.Background())
				var deleter sync.WaitGroup
				deleter.Go(func() { p.deleter.run(ctx, budget.flushCtx) })
				ph, lostVisibility := tc.phase, tc.phase == lost
				if lostVisibility {
					ph = receiving // lost is the message's, not the Poller's
				}
				p.advance(ph)
				p.settle(budget, p.message(raw), aws.ToString(raw.ReceiptHandle), tc.err, lostVisibility)
				stop() // the deleter flushes
				deleter.Wait()
				require.Equal(t, 1.0, testutil.ToFloat64(m.handled.WithLabelValues("q", tc.outcome)))
				total := 0
				for _, n := range f.calls {
					total += n
				}
				if tc.calls == "" {
					require.Zero(t, total, "no SQS call: the message is not ours to settle")
				} else {
					require.Positive(t, f.calls[tc.calls])
				}
			})
		})
	}
}

// A handler is told when it started (Message.Started, the Poller's one clock read),
// and its deadline is that plus HandlerTimeout.
func TestHandlerStartAndDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type seen struct{ started, now, deadline time.Time }
		got := make(chan seen, 1)
		b := setup(t, Config{HandlerTimeout: 7 * time.Second}, func(ctx context.Context, m Message) error {
			deadline, _ := ctx.Deadline()
			got <- seen{started: m.Started, now: time.Now(), deadline: deadline}
			return nil
		})
		b.sqs.send("a")
		s := <-got
		synctest.Wait()
		b.stop(t)
		require.False(t, s.started.IsZero())
		require.Equal(t, s.now, s.started, "fake time stands still while the handler runs")
		require.Equal(t, s.started.Add(7*time.Second), s.deadline)
	})
}

// A handler whose goroutine stays held past the drain detaches its message: the
// drain ends when Detach's settle has released the message and its replacement
// goroutine has seen the work end, not when the held goroutine returns; every
// Begin has its End, and the held goroutine leaves when its handler returns.
func TestDetachedMessageIsSettledWithoutItsHeldGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		b := setup(t, Config{Concurrency: 1, DrainTimeout: 2 * time.Second}, func(ctx context.Context, m Message) error {
			if m.Body != "held" {
				return nil
			}
			require.True(t, m.Detachable())
			context.AfterFunc(ctx, func() {
				settle := Detach(m)
				settle(errors.New("held past its context"))
			})
			<-release // ignores ctx
			return ErrDetached
		})
		b.sqs.send("held")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		b.sqs.send("after")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		require.Empty(t, b.sqs.deletedBodies(), "concurrency 1: the held handler holds the only slot")
		start := time.Now()
		b.stop(t)
		require.LessOrEqual(t, time.Since(start), 3*time.Second, "the drain ended without the held goroutine")
		require.Equal(t, 1.0, b.handled("released"), "the detached message is released at the drain's end")
		require.Zero(t, b.activity.inHand())
		close(release) // the held goroutine returns ErrDetached and leaves
		synctest.Wait()
	})
}

// A message not from a Poller cannot be detached.
func TestMessageNotFromAPollerIsNotDetachable(t *testing.T) {
	require.False(t, Message{ID: "m"}.Detachable())
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awslimit"
)

// fakeLeases keeps leases in memory, judged by the (synctest) clock, and refuses
// what the S3 lease refuses: a second Hold, a renewal or finish after a take-over.
type fakeLeases struct {
	mu     sync.Mutex
	ttl    time.Duration
	leases map[string]*fakeLease
	// renewErr, when set, answers every Renew.
	renewErr error
}

type fakeLease struct {
	f       *fakeLeases
	key     string
	holder  int
	state   string // held, released, done
	renewed time.Time
}

func newFakeLeases(ttl time.Duration) *fakeLeases {
	return &fakeLeases{ttl: ttl, leases: map[string]*fakeLease{}}
}

func (f *fakeLeases) TTL() time.Duration { return f.ttl }
func (f *fakeLeases) Key(queue, id string) string {
	return "leases/" + queue + "/" + id + ".json"
}

func (f *fakeLeases) Hold(_ context.Context, key string) (HeldLease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.leases[key]; ok {
		return nil, fmt.Errorf("hold %s: %w", key, ErrLeaseHeld)
	}
	l := &fakeLease{f: f, key: key, holder: 1, state: "held", renewed: time.Now()}
	f.leases[key] = l
	return &heldFake{l: l, holder: 1}, nil
}

func (f *fakeLeases) Claim(_ context.Context, key string) (LeaseClaim, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.leases[key]
	switch {
	case !ok || l.state == "done":
		return LeaseClaim{Done: true}, nil
	case l.state == "held" && time.Now().Before(l.renewed.Add(f.ttl)):
		return LeaseClaim{HeldUntil: l.renewed.Add(f.ttl)}, nil
	}
	l.holder++
	l.state, l.renewed = "held", time.Now()
	return LeaseClaim{Lease: &heldFake{l: l, holder: l.holder}}, nil
}

// seed puts a lease of key in state, last written at renewed, by holder 1.
func (f *fakeLeases) seed(key, state string, renewed time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases[key] = &fakeLease{f: f, key: key, holder: 1, state: state, renewed: renewed}
}

func (f *fakeLeases) stateOf(key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.leases[key]; ok {
		return l.state
	}
	return ""
}

type heldFake struct {
	l      *fakeLease
	holder int
}

func (h *heldFake) write(state string) error {
	h.l.f.mu.Lock()
	defer h.l.f.mu.Unlock()
	if h.l.holder != h.holder {
		return fmt.Errorf("lease %s: %w", h.l.key, ErrLeaseLost)
	}
	if state == "held" && h.l.f.renewErr != nil {
		return h.l.f.renewErr
	}
	h.l.state, h.l.renewed = state, time.Now()
	return nil
}

func (h *heldFake) Renew(context.Context) error { return h.write("held") }
func (h *heldFake) Finish(_ context.Context, done bool) error {
	if done {
		return h.write("done")
	}
	return h.write("released")
}
func (h *heldFake) Renewed() time.Time {
	h.l.f.mu.Lock()
	defer h.l.f.mu.Unlock()
	return h.l.renewed
}

// sendContinuation puts a continuation of key on the fake queue.
func (f *fakeSQS) sendContinuation(body, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.order = append(f.order, &fakeMsg{id: fmt.Sprintf("m%d", f.seq), body: body,
		attrs: map[string]types.MessageAttributeValue{LeaseAttribute: {DataType: aws.String("String"), StringValue: aws.String(key)}}})
}

// pending is how many messages are not deleted, visible or not.
func (f *fakeSQS) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.order {
		if !m.deleted {
			n++
		}
	}
	return n
}

// A handler running four times the cap: handed on before the cap, its
// continuations hidden while it runs (no receive spent on the copies), dropped
// once it is done; the handler ran once and the queue is empty.
func TestHandOverLetsAHandlerOutliveTheCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const visCap = 40 * time.Second
		leases := newFakeLeases(5 * time.Second)
		var runs atomic.Int32
		b := setup(t, Config{VisibilityTimeout: 10 * time.Second, HandlerTimeout: time.Hour, HandOver: &HandOver{Cap: visCap, Leases: leases}},
			func(ctx context.Context, m Message) error {
				runs.Add(1)
				return sleepCtx(ctx, 4*visCap)
			})
		b.sqs.send("long")
		time.Sleep(5*visCap + time.Minute)
		b.stop(t)
		require.Equal(t, int32(1), runs.Load(), "one run")
		require.Equal(t, 1.0, b.handled("handed_on"), "handed on once: the handler held no new receipt")
		require.Equal(t, 1.0, b.handled("handed_on_done"))
		require.Greater(t, b.handled("continuation_hidden"), 5.0, "hidden every lease TTL while the job ran")
		require.Equal(t, 1.0, b.handled("continuation_dropped"))
		require.Zero(t, b.sqs.pending(), "nothing left in the queue")
		require.Equal(t, "done", leases.stateOf("leases/q/m1.json"))
		for _, d := range b.sqs.batchChanges {
			require.LessOrEqual(t, d, 10*time.Second)
		}
	})
}

// A continuation whose lease is dead (its holder stopped renewing) is taken over
// and run; one whose lease is done is dropped without a run; one whose lease is
// alive waits, and runs once it is released.
func TestContinuationsAreJudgedByTheirLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leases := newFakeLeases(5 * time.Second)
		var mu sync.Mutex
		ran := map[string]int{}
		b := setup(t, Config{HandlerTimeout: time.Minute, DLQURL: "https://sqs.local/q-dlq", HandOver: &HandOver{Cap: 40 * time.Second, Leases: leases}},
			func(ctx context.Context, m Message) error {
				mu.Lock()
				ran[m.Body]++
				mu.Unlock()
				return nil
			})
		leases.seed("leases/q/dead.json", "held", time.Now().Add(-time.Minute))
		leases.seed("leases/q/done.json", "done", time.Now())
		leases.seed("leases/q/alive.json", "held", time.Now())
		b.sqs.sendContinuation("dead", "leases/q/dead.json")
		b.sqs.sendContinuation("done", "leases/q/done.json")
		b.sqs.sendContinuation("alive", "leases/q/alive.json")
		b.sqs.sendContinuation("forged", "manifests/batch-1.json")
		time.Sleep(4 * time.Second) // within the live lease's TTL
		mu.Lock()
		require.Equal(t, map[string]int{"dead": 1}, ran, "the dead lease's job taken over; the others not run")
		mu.Unlock()
		require.Equal(t, "done", leases.stateOf("leases/q/dead.json"))
		require.Equal(t, 1.0, b.handled("taken_over"))
		require.Equal(t, 1.0, b.handled("continuation_dropped"))
		require.Equal(t, 1.0, b.handled("continuation_hidden"))
		require.Equal(t, []string{"forged"}, b.sqs.dlqBodies, "a continuation naming another object: DLQ, not run")
		require.Empty(t, leases.stateOf("manifests/batch-1.json"), "and nothing written there")

		// The live holder keeps renewing for a while, then releases the job (its
		// worker stopped): the continuation runs then.
		for range 3 {
			leases.seed("leases/q/alive.json", "held", time.Now())
			time.Sleep(4 * time.Second)
		}
		leases.seed("leases/q/alive.json", "released", time.Now())
		time.Sleep(20 * time.Second)
		b.stop(t)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, 1, ran["alive"], "run once its lease was released")
		require.Zero(t, b.sqs.pending())
	})
}

// handingOn is a poller that hands its jobs on at 30 s (visibility 10 s, cap 40 s;
// leases of 5 s) and a handler that runs until its context ends; stopped gets the
// reason it ended.
func handingOn(t *testing.T) (b *bundle, leases *fakeLeases, stopped <-chan error) {
	t.Helper()
	leases = newFakeLeases(5 * time.Second)
	ended := make(chan error, 1)
	b = setup(t, Config{VisibilityTimeout: 10 * time.Second, HandlerTimeout: time.Hour, HandOver: &HandOver{Cap: 40 * time.Second, Leases: leases}},
		func(ctx context.Context, m Message) error {
			err := sleepCtx(ctx, time.Hour)
			ended <- err
			return err
		})
	return b, leases, ended
}

// A lease lost to another worker stops the handler; its message is neither
// released nor reported on here.
func TestLostLeaseStopsTheHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, leases, stopped := handingOn(t)
		b.sqs.send("long")
		time.Sleep(35 * time.Second) // handed on at 30 s
		require.Equal(t, 1.0, b.handled("handed_on"))
		leases.mu.Lock()
		leases.leases["leases/q/m1.json"].holder = 99 // another worker took it over
		leases.mu.Unlock()
		time.Sleep(5 * time.Second)
		select {
		case err := <-stopped:
			require.ErrorIs(t, err, context.Canceled)
		default:
			t.Fatal("the handler still runs with its lease lost")
		}
		b.stop(t)
		require.Zero(t, b.handled("handed_on_released"), "the lease is the taker's: nothing written")
		require.Equal(t, 1.0, b.handled("lease_lost"))
	})
}

func TestHandOverConfigIsChecked(t *testing.T) {
	t.Parallel()
	cfg := Config{Queue: "q", QueueURL: queueURL, Concurrency: 1, VisibilityTimeout: time.Second,
		HandOver: &HandOver{Cap: 13 * time.Hour, Leases: newFakeLeases(6 * time.Hour)}}
	err := cfg.Validate()
	require.ErrorContains(t, err, "HandOver.Cap must be 4s..12h0m0s")
	require.ErrorContains(t, err, "does not fit twice")
	cfg.HandOver = &HandOver{Cap: 12 * time.Hour}
	require.ErrorContains(t, cfg.Validate(), "HandOver has no Leases")
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A job's runs count across its hand-overs: a continuation taken over after four
// receives of its job is the fifth, the last before the DLQ with maxReceiveCount 5,
// and a transient failure of it dead-letters the job instead of running it forever.
func TestRunsCountAcrossHandOvers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leases := newFakeLeases(5 * time.Second)
		seen := make(chan Message, 1)
		b := setup(t, Config{HandlerTimeout: time.Minute, MaxReceiveCount: 5, DLQURL: "https://sqs.local/q-dlq", HandOver: &HandOver{Cap: 40 * time.Second, Leases: leases}},
			func(ctx context.Context, m Message) error {
				seen <- m
				if m.LastAttempt() {
					return DeadLetter(errors.New("still failing"))
				}
				return errors.New("transient")
			})
		leases.seed("leases/q/job.json", "released", time.Now())
		b.sqs.mu.Lock()
		b.sqs.seq++
		b.sqs.order = append(b.sqs.order, &fakeMsg{id: "c1", body: "job", attrs: map[string]types.MessageAttributeValue{
			LeaseAttribute:    {DataType: aws.String("String"), StringValue: aws.String("leases/q/job.json")},
			ReceivesAttribute: {DataType: aws.String("Number"), StringValue: aws.String("4")},
		}})
		b.sqs.mu.Unlock()
		time.Sleep(5 * time.Second)
		m := <-seen
		require.Equal(t, 5, m.ReceiveCount, "four earlier runs and this one")
		require.True(t, m.LastAttempt())
		b.stop(t)
		require.Equal(t, 1.0, b.handled("dead_lettered"))
		require.Equal(t, "done", leases.stateOf("leases/q/job.json"), "the job's outcome is settled")
		require.Equal(t, []string{"job"}, b.sqs.dlqBodies)
	})
}

// A DLQ copy of a body near SQS's 1 MiB keeps what of its reason fits, or no
// attribute: never a copy SQS refuses.
func TestDeadLetterCopyFitsSQSsLargestMessage(t *testing.T) {
	t.Parallel()
	size := func(body int, attrs map[string]types.MessageAttributeValue) int {
		for name, v := range attrs {
			body += len(name) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue))
		}
		return body
	}
	attrs := func() map[string]types.MessageAttributeValue {
		return map[string]types.MessageAttributeValue{
			"taskbridge-error":        {DataType: aws.String("String"), StringValue: aws.String(strings.Repeat("é", 500))},
			"taskbridge-source-queue": {DataType: aws.String("String"), StringValue: aws.String("q")},
		}
	}
	for _, body := range []int{1000, awslimit.SQSMessageBytes - 2000, awslimit.SQSMessageBytes - 500, awslimit.SQSMessageBytes - 20, awslimit.SQSMessageBytes} {
		a := attrs()
		fitAttributes(body, a)
		require.LessOrEqual(t, size(body, a), awslimit.SQSMessageBytes, "body of %d", body)
		require.True(t, utf8.ValidString(aws.ToString(a["taskbridge-error"].StringValue)), "cut on a character")
		if body <= awslimit.SQSMessageBytes-2000 {
			require.Equal(t, attrs(), a, "room enough: nothing cut")
		}
	}
}

// A continuation must name a lease of its own queue: anything else would have a
// take-over overwrite another object of the data bucket. It goes to the DLQ.
func FuzzOwnLease(f *testing.F) {
	p := &Poller{cfg: Config{Queue: "q", HandOver: &HandOver{Leases: newFakeLeases(time.Second)}}}
	for _, seed := range []string{"leases/q/m1.json", "leases/q/../x.json", "leases/other/m1.json", "claims/batches/b.json", "leases/q/a/b.json", "leases/q/.json", "leases/q/m1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if !p.ownLease(key) {
			return
		}
		id := strings.TrimSuffix(strings.TrimPrefix(key, "leases/q/"), ".json")
		if !strings.HasPrefix(key, "leases/q/") || !strings.HasSuffix(key, ".json") || id == "" || strings.ContainsAny(id, "/\\") || strings.Contains(id, "..") {
			t.Fatalf("%q taken as a lease of queue q", key)
		}
	})
}

func TestOwnLease(t *testing.T) {
	t.Parallel()
	p := &Poller{cfg: Config{Queue: "q", HandOver: &HandOver{Leases: newFakeLeases(time.Second)}}}
	require.True(t, p.ownLease("leases/q/0b7c-4c3e.json"))
	for _, key := range []string{"leases/q/../x.json", "leases/other/m1.json", "claims/batches/b.json", "leases/q/a/b.json", "leases/q/.json", "leases/q/m1", ""} {
		require.False(t, p.ownLease(key), key)
	}
}

// A second delivery of a message whose job was handed on before (its lease
// exists) stops at its own hand-over point and is deleted: the lease's holder runs
// the job.
func TestSecondDeliveryOfAHandedOnJobStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, leases, stopped := handingOn(t)
		leases.seed("leases/q/m1.json", "held", time.Now().Add(time.Hour)) // another worker's
		b.sqs.send("long")
		time.Sleep(35 * time.Second)
		require.ErrorIs(t, <-stopped, context.Canceled)
		require.Zero(t, b.sqs.pending(), "deleted")
		require.Zero(t, b.handled("handed_on"))
		b.stop(t)
		require.Equal(t, "held", leases.stateOf("leases/q/m1.json"), "the holder's lease untouched")
	})
}

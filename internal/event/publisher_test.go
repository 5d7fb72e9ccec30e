package event

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// fakeBus records every PutEvents call; PutEventsFunc decides the answer (nil:
// accept every entry).
type fakeBus struct {
	PutEventsFunc func(call int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error)

	mu    sync.Mutex
	calls [][]types.PutEventsRequestEntry
}

func (f *fakeBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.mu.Lock()
	f.calls = append(f.calls, in.Entries)
	call := len(f.calls)
	f.mu.Unlock()
	if f.PutEventsFunc != nil {
		return f.PutEventsFunc(call, in.Entries)
	}
	return accept(in.Entries), nil
}

// details lists the detail of every entry of every call.
func (f *fakeBus) details() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]string
	for _, c := range f.calls {
		var d []string
		for _, e := range c {
			d = append(d, aws.ToString(e.Detail))
		}
		out = append(out, d)
	}
	return out
}

func accept(entries []types.PutEventsRequestEntry) *eventbridge.PutEventsOutput {
	out := &eventbridge.PutEventsOutput{}
	for i := range entries {
		out.Entries = append(out.Entries, types.PutEventsResultEntry{EventId: aws.String(fmt.Sprint(i))})
	}
	return out
}

// refuse answers entries, failing those whose detail is in fail with code.
func refuse(entries []types.PutEventsRequestEntry, code string, fail ...string) *eventbridge.PutEventsOutput {
	out := accept(entries)
	for i, e := range entries {
		for _, f := range fail {
			if aws.ToString(e.Detail) == f {
				out.Entries[i] = types.PutEventsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("refused " + f)}
				out.FailedEntryCount++
			}
		}
	}
	return out
}

func newPublisher(t *testing.T, bus *fakeBus) *Publisher {
	t.Helper()
	return NewPublisher(PublisherConfig{EventBus: "bus", Source: "taskbridge.worker"}, bus, zaptest.NewLogger(t), prometheus.NewRegistry())
}

func published(p *Publisher, detailType, result string) float64 {
	return testutil.ToFloat64(p.metrics.published.WithLabelValues(detailType, result))
}

func TestPublishSendsOneEntryToTheBus(t *testing.T) {
	t.Parallel()
	bus := &fakeBus{}
	p := newPublisher(t, bus)
	require.NoError(t, p.Publish(context.Background(), "sideEffectDone", map[string]string{"executionArn": "arn"}))
	require.Len(t, bus.calls, 1)
	want := types.PutEventsRequestEntry{
		EventBusName: aws.String("bus"), Source: aws.String("taskbridge.worker"),
		DetailType: aws.String("sideEffectDone"), Detail: aws.String(`{"executionArn":"arn"}`),
	}
	if d := cmp.Diff([]types.PutEventsRequestEntry{want}, bus.calls[0], cmp.AllowUnexported(types.PutEventsRequestEntry{})); d != "" {
		t.Fatalf("entry (-want +got):\n%s", d)
	}
	require.Equal(t, 1.0, published(p, "sideEffectDone", "ok"))
}

func TestPublishManyRetriesOnlyTheFailedEntries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := &fakeBus{PutEventsFunc: func(call int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			switch call {
			case 1:
				return refuse(entries, "InternalFailure", `{"n":1}`, `{"n":2}`), nil
			case 2:
				return refuse(entries, "ThrottlingException", `{"n":2}`), nil
			}
			return accept(entries), nil
		}}
		p := newPublisher(t, bus)
		began := time.Now()
		err := p.PublishMany(context.Background(), []Entry{
			{DetailType: "a", Detail: map[string]int{"n": 0}},
			{DetailType: "a", Detail: map[string]int{"n": 1}},
			{DetailType: "b", Detail: map[string]int{"n": 2}},
		})
		require.NoError(t, err)
		want := [][]string{{`{"n":0}`, `{"n":1}`, `{"n":2}`}, {`{"n":1}`, `{"n":2}`}, {`{"n":2}`}}
		if d := cmp.Diff(want, bus.details()); d != "" {
			t.Fatalf("calls (-want +got):\n%s", d)
		}
		waited := time.Since(began)
		require.GreaterOrEqual(t, waited, publishBackoff/2+publishBackoff, "backs off between attempts")
		require.Less(t, waited, 3*publishBackoff)
		require.Equal(t, 2.0, published(p, "a", "ok"))
		require.Equal(t, 1.0, published(p, "b", "ok"))
	})
}

func TestPublishGivesUpAfterBoundedAttemptsNamingTheFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := &fakeBus{PutEventsFunc: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			return refuse(entries, "InternalFailure", `{}`), nil
		}}
		p := newPublisher(t, bus)
		err := p.Publish(context.Background(), "x", struct{}{})
		require.ErrorContains(t, err, "entry 0 (x): refused after 5 attempts: InternalFailure: refused {}")
		require.Len(t, bus.calls, publishAttempts)
		require.Equal(t, 1.0, published(p, "x", "error"))
	})
}

func TestPublishDoesNotRetryAPermanentRefusal(t *testing.T) {
	t.Parallel()
	bus := &fakeBus{PutEventsFunc: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
		return refuse(entries, "NotAuthorizedForSourceException", `{"bad":true}`), nil
	}}
	p := newPublisher(t, bus)
	err := p.PublishMany(context.Background(), []Entry{{DetailType: "x", Detail: map[string]bool{"bad": true}}, {DetailType: "x", Detail: map[string]bool{"bad": false}}})
	require.ErrorContains(t, err, "entry 0 (x): refused after 1 attempts: NotAuthorizedForSourceException")
	require.Len(t, bus.calls, 1)
	require.Equal(t, 1.0, published(p, "x", "error"))
	require.Equal(t, 1.0, published(p, "x", "ok"), "the other entry went through")
}

func TestPublishTreatsAMissingResultAsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bus := &fakeBus{PutEventsFunc: func(call int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			if call == 1 {
				return &eventbridge.PutEventsOutput{}, nil
			}
			return accept(entries), nil
		}}
		p := newPublisher(t, bus)
		require.NoError(t, p.Publish(context.Background(), "x", struct{}{}))
		require.Len(t, bus.calls, 2)
	})
}

func TestPublishReturnsAWholeCallErrorWithoutALoopOfItsOwn(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection refused")
	bus := &fakeBus{PutEventsFunc: func(int, []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) { return nil, boom }}
	p := newPublisher(t, bus)
	err := p.Publish(context.Background(), "x", struct{}{})
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "publish x")
	require.Len(t, bus.calls, 1, "the SDK retryer already retried it")
	require.Equal(t, 1.0, published(p, "x", "error"))
}

func TestPublishWholeCallErrorAccountsForEveryUnsentEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 12 entries: the first chunk of 10 half-fails, the second call errors; the
		// entry waiting for a retry is reported as well.
		bus := &fakeBus{PutEventsFunc: func(call int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			if call == 1 {
				return refuse(entries, "InternalFailure", `{"n":3}`), nil
			}
			return nil, errors.New("down")
		}}
		p := newPublisher(t, bus)
		var entries []Entry
		for i := range 12 {
			entries = append(entries, Entry{DetailType: "x", Detail: map[string]int{"n": i}})
		}
		require.ErrorContains(t, p.PublishMany(context.Background(), entries), "down")
		require.Equal(t, 9.0, published(p, "x", "ok"))
		require.Equal(t, 3.0, published(p, "x", "error"))
	})
}

func TestPublishStopsRetryingWhenCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		bus := &fakeBus{PutEventsFunc: func(_ int, entries []types.PutEventsRequestEntry) (*eventbridge.PutEventsOutput, error) {
			cancel()
			return refuse(entries, "InternalFailure", `{}`), nil
		}}
		p := newPublisher(t, bus)
		began := time.Now()
		err := p.Publish(ctx, "x", struct{}{})
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorContains(t, err, "last failure: InternalFailure")
		require.Zero(t, time.Since(began), "no wait once cancelled")
		require.Len(t, bus.calls, 1)
	})
}

func TestPublishManySendsTenEntriesPerCall(t *testing.T) {
	t.Parallel()
	bus := &fakeBus{}
	p := newPublisher(t, bus)
	entries := make([]Entry, 25)
	for i := range entries {
		entries[i] = Entry{DetailType: "x", Detail: map[string]int{"n": i}}
	}
	require.NoError(t, p.PublishMany(context.Background(), entries))
	var sizes []int
	for _, c := range bus.calls {
		sizes = append(sizes, len(c))
	}
	require.Equal(t, []int{10, 10, 5}, sizes)
	require.Equal(t, 25.0, published(p, "x", "ok"))
	require.NoError(t, p.PublishMany(context.Background(), nil), "nothing to send is not an error")
	require.Len(t, bus.calls, 3)
}

func TestPublishRefusesBadEntriesBeforeSendingAny(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		entry Entry
		why   string
	}{
		"detail does not marshal": {Entry{"x", func() {}}, "marshal detail"},
		"no detail type":          {Entry{"", struct{}{}}, "no detail type"},
		"detail an array":         {Entry{"x", []int{1}}, "not a JSON object"},
		"detail a string":         {Entry{"x", "text"}, "not a JSON object"},
		"detail null":             {Entry{"x", nil}, "not a JSON object"},
		"oversized":               {Entry{"x", map[string]string{"a": strings.Repeat("x", MaxEntryBytes)}}, "event too large"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bus := &fakeBus{}
			p := newPublisher(t, bus)
			err := p.PublishMany(context.Background(), []Entry{{"ok", struct{}{}}, tc.entry})
			require.ErrorContains(t, err, "entry 1")
			require.ErrorContains(t, err, tc.why)
			require.Empty(t, bus.calls)
			require.Equal(t, 1.0, published(p, tc.entry.DetailType, "error"))
		})
	}
}

// Issue 12 item 5: json.Marshal wrote each < as the 6 bytes \u003c, so 50 KB of
// them made a 300 KB event that could never be put.
func TestPublishDoesNotHTMLEscapeTheDetail(t *testing.T) {
	t.Parallel()
	bus := &fakeBus{}
	p := newPublisher(t, bus)
	detail := map[string]string{"s": strings.Repeat("<", 50_000) + "&>"}
	require.NoError(t, p.Publish(context.Background(), "x", detail))
	got := bus.details()[0][0]
	require.Less(t, len(got), 50_020)
	require.Equal(t, `{"s":"`+detail["s"]+`"}`, got)
}

// Issue 12 item 6: an event that can never fit is refused before any call with an
// error that says so (errors.Is ErrTooLarge), measured as EventBridge measures an
// entry: source + detail-type + detail.
func TestPublishRefusesAnEventOverTheLimitWithErrTooLarge(t *testing.T) {
	t.Parallel()
	const source, detailType = "taskbridge.worker", "processSinglePost"
	fill := MaxEntryBytes - len(source) - len(detailType) - len(`{"s":""}`)
	for name, tc := range map[string]struct {
		n      int
		tooBig bool
	}{
		"exactly at the limit": {fill, false},
		"one byte over":        {fill + 1, true},
		"far over":             {2 * MaxEntryBytes, true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bus := &fakeBus{}
			p := newPublisher(t, bus)
			err := p.Publish(context.Background(), detailType, map[string]string{"s": strings.Repeat("é", tc.n/2) + strings.Repeat("a", tc.n%2)})
			if !tc.tooBig {
				require.NoError(t, err)
				require.Len(t, bus.calls, 1)
				return
			}
			require.ErrorIs(t, err, ErrTooLarge)
			require.ErrorContains(t, err, "over the 1048576 byte limit") // EventBridge's 1 MB since 2026-01-29
			require.Empty(t, bus.calls, "nothing is sent")
			require.Equal(t, 1.0, published(p, detailType, "error"))
		})
	}
}

// The guide bounds a call's entries together by the same figure as one entry
// (MaxEntryBytes): large entries go in calls of their own.
func TestPublishManyKeepsEachCallWithinTheTotalSize(t *testing.T) {
	t.Parallel()
	bus := &fakeBus{}
	p := newPublisher(t, bus)
	big := map[string]string{"s": strings.Repeat("a", 400_000)}
	entries := []Entry{{"x", big}, {"x", big}, {"x", big}, {"x", struct{}{}}, {"x", big}}
	require.NoError(t, p.PublishMany(context.Background(), entries))
	var sizes []int
	for _, c := range bus.calls {
		total := 0
		for _, e := range c {
			total += entrySize(e)
		}
		require.LessOrEqual(t, total, MaxEntryBytes)
		sizes = append(sizes, len(c))
	}
	require.Equal(t, []int{2, 3}, sizes)
}

func TestPublisherConfigValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := PublisherConfig{}.Validate()
	require.ErrorContains(t, err, "no event bus")
	require.ErrorContains(t, err, "no event source")
	require.NoError(t, PublisherConfig{EventBus: "b", Source: "s"}.Validate())
}

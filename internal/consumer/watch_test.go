package consumer

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

type ctxKey struct{}

// A handler's context behaves as context.WithDeadline's would: it ends at its
// deadline with DeadlineExceeded, and so do its children of every kind; Cause is
// its error; its parent's values are seen; a Done asked for after its end is closed.
func TestHandlerContextEndsAtItsDeadlineAsWithDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w watch
		parent := context.WithValue(context.Background(), ctxKey{}, "v")
		due := time.Now().Add(time.Second)
		ctx := w.start(parent, due)
		defer w.done(ctx)

		d, ok := ctx.Deadline()
		require.True(t, ok)
		require.Equal(t, due, d)
		require.Equal(t, "v", ctx.Value(ctxKey{}))
		child, cancelChild := context.WithCancel(ctx)
		defer cancelChild()
		timeout, cancelTimeout := context.WithTimeout(ctx, time.Hour)
		defer cancelTimeout()
		after := make(chan struct{})
		context.AfterFunc(ctx, func() { close(after) })
		stopped := context.AfterFunc(ctx, func() { t.Error("a stopped AfterFunc ran") })
		require.True(t, stopped())
		require.False(t, stopped(), "stops once")
		done := ctx.Done()

		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		require.NoError(t, ctx.Err(), "before its deadline")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		<-done
		<-after
		for _, c := range []context.Context{ctx, child, timeout} {
			<-c.Done()
			require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
			require.ErrorIs(t, context.Cause(c), context.DeadlineExceeded)
		}
		<-ctx.Done() // asked for after the end
		ran := make(chan struct{})
		require.False(t, context.AfterFunc(ctx, func() { close(ran) })(), "after the end: runs at once")
		<-ran
	})
}

// Handlers end at their own deadlines, one timer for all, whatever order they
// started in; one that returned leaves the watch, and its context ends Canceled.
func TestEachHandlerEndsAtItsOwnDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w watch
		start := time.Now()
		offsets := []time.Duration{3 * time.Second, time.Second, 2 * time.Second, 2 * time.Second, 5 * time.Second}
		var wg sync.WaitGroup
		ended := make([]time.Duration, len(offsets))
		for i, off := range offsets {
			ctx := w.start(context.Background(), start.Add(off))
			wg.Go(func() {
				<-ctx.Done()
				ended[i] = time.Since(start)
				require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
				w.done(ctx)
			})
		}
		returned := w.start(context.Background(), start.Add(time.Second))
		w.done(returned)
		require.ErrorIs(t, returned.Err(), context.Canceled)
		wg.Wait()
		require.Equal(t, offsets, ended)
		require.Nil(t, w.running.head)
		require.Nil(t, w.ended.head)
		require.Nil(t, w.overdue.head)
	})
}

type rescueRecord struct {
	mu     sync.Mutex
	waited []time.Duration
}

func (r *rescueRecord) Rescue(waited time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waited = append(r.waited, waited)
}

func (r *rescueRecord) calls() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waited...)
}

// A handler still running StuckAfter past its context's end is rescued once, at
// that moment: after its deadline, after a cancel, or at once when it registers
// late; a handler that returned in time is not.
func TestAStuckHandlerIsRescuedStuckAfterItsEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w watch
		watched := func(due time.Time) (*handlerCtx, *rescueRecord) {
			c := w.start(context.Background(), due)
			r := &rescueRecord{}
			WatchHandler(Message{held: &inflight{ctx: c}}, r)
			return c, r
		}
		start := time.Now()

		atDeadline, r1 := watched(start.Add(time.Second))
		cancelled, r2 := watched(start.Add(time.Hour))
		inTime, r3 := watched(start.Add(time.Second))
		time.Sleep(500 * time.Millisecond)
		cancelled.cancel()
		require.ErrorIs(t, cancelled.Err(), context.Canceled)
		time.Sleep(500*time.Millisecond + StuckAfter/2)
		synctest.Wait()
		w.done(inTime) // returned within StuckAfter of its deadline
		require.Equal(t, []time.Duration{StuckAfter}, r2.calls(), "StuckAfter past the cancel")
		require.Empty(t, r1.calls())
		time.Sleep(StuckAfter)
		synctest.Wait()
		require.Equal(t, []time.Duration{StuckAfter}, r1.calls(), "StuckAfter past the deadline")
		require.Empty(t, r3.calls())

		late := w.start(context.Background(), time.Now().Add(time.Second))
		time.Sleep(time.Second + 3*StuckAfter)
		synctest.Wait()
		r4 := &rescueRecord{}
		WatchHandler(Message{held: &inflight{ctx: late}}, r4)
		synctest.Wait()
		require.Equal(t, []time.Duration{3 * StuckAfter}, r4.calls(), "registered after it was overdue: at once")

		time.Sleep(time.Hour)
		synctest.Wait()
		require.Len(t, r1.calls(), 1)
		require.Len(t, r2.calls(), 1)
		for _, c := range []*handlerCtx{atDeadline, cancelled, late} {
			w.done(c)
		}
		require.Nil(t, w.running.head)
		require.Nil(t, w.ended.head)
		require.Nil(t, w.overdue.head)
		require.False(t, w.armed, "nothing left to wake for")
	})
}

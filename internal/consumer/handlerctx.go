package consumer

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// handlerCtx is a running handler's context. It ends at its deadline
// (DeadlineExceeded), when the Poller cancels it (lost visibility, a drain's end:
// Canceled), or when its handler returns. It has no timer of its own: the Poller's
// watch keeps every handler's deadline with one timer. A context.WithDeadline made
// a timer a message, whose start and stop took the runtime's timer locks, and
// a timer and a context object each (BENCHMARKS.md, issue 31, fourth session).
//
// It is a context.Context to the standard library in full: its children
// (WithCancel, WithTimeout, AfterFunc) register through its AfterFunc method, and
// end with its error; Cause(ctx) is Err().
type handlerCtx struct {
	context.Context // the Poller's jobCtx: values only, it never ends
	due             time.Time
	watch           *watch

	ended atomic.Bool // Err's fast path
	mu    sync.Mutex
	err   error         // set once, by end
	done  chan struct{} // made by the first Done, closed by end
	funcs []*func()     // AfterFunc's, run by end
	// rescuer and overdue are the watch's hand-off with the handler (WatchHandler):
	// guarded by mu, so that registering takes no lock the other handlers share.
	rescuer Rescuer
	overdue bool // its end is StuckAfter past and nobody was registered to rescue it

	// The watch's, guarded by watch.mu: the list c is on and its place there.
	list       *ctxList
	prev, next *handlerCtx
	endedAt    time.Time // when the watch ended it or saw it ended
}

// closedChan is the Done of a context that ended before anyone asked for it.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *handlerCtx) Deadline() (time.Time, bool) { return c.due, true }

func (c *handlerCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

func (c *handlerCtx) Err() error {
	if !c.ended.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *handlerCtx) String() string { return "consumer.handlerCtx(deadline " + c.due.String() + ")" }

// AfterFunc arranges to call f in its own goroutine once c has ended, as
// context.AfterFunc does (which, like the standard library's children of c, calls
// this method); stop reports whether it stopped f from being called.
func (c *handlerCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	p := &f
	c.funcs = append(c.funcs, p)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.funcs, p)
		if i < 0 {
			return false
		}
		c.funcs = slices.Delete(c.funcs, i, i+1)
		return true
	}
}

// end ends c with err, unless it has ended already.
func (c *handlerCtx) end(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	c.ended.Store(true)
	if c.done != nil {
		close(c.done)
	}
	funcs := c.funcs
	c.funcs = nil
	c.mu.Unlock()
	for _, f := range funcs {
		go (*f)()
	}
}

// cancel ends c before its deadline (the Poller's cancel: Canceled); the watch
// counts its StuckAfter from now.
func (c *handlerCtx) cancel() { c.watch.cancel(c) }

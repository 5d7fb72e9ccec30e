package consumer

import (
	"context"
	"sync"
	"time"
)

// StuckAfter is how long a handler may run on past the end of its context (its
// deadline, lost visibility, a drain's end) before its Rescuer, if it has one, is
// called (WatchHandler).
const StuckAfter = 100 * time.Millisecond

// A Rescuer takes over the message of a stuck handler: one still running
// StuckAfter past the end of its context. It typically Detaches the message.
type Rescuer interface {
	// Rescue runs once, on a goroutine of its own; waited is how long the handler
	// had then run past its context's end.
	Rescue(waited time.Duration)
}

// WatchHandler asks the Poller to call r.Rescue if m's handler is still running
// StuckAfter past the end of its context (at once, if that is already so). A
// handler that has returned is not rescued. Call it from m's handler, at most once,
// and only for a Detachable message. It takes no lock the other handlers share.
func WatchHandler(m Message, r Rescuer) {
	c := m.held.ctx
	c.mu.Lock()
	c.rescuer = r
	overdue := c.overdue
	c.mu.Unlock()
	if overdue {
		c.watch.rescueOverdue(c, r)
	}
}

// watch keeps the deadlines of a Poller's running handlers, and calls the Rescuer
// of a handler stuck past its context's end, with one timer, armed for the next
// thing due. A handler's context is on one of three lists: running (by deadline),
// ended (by when it ended: its StuckAfter runs), overdue (StuckAfter past, no
// Rescuer yet). Starting and ending a handler is a list insert and unlink under
// one lock; the timer is armed anew only when nothing earlier is due, about once
// per HandlerTimeout for a steady queue.
type watch struct {
	mu                      sync.Mutex
	running, ended, overdue ctxList
	timer                   *time.Timer // made by the first arm (inside a test's bubble)
	armed                   bool
	armedAt                 time.Time
}

// start makes the context of a handler whose deadline is due.
func (w *watch) start(parent context.Context, due time.Time) *handlerCtx {
	c := &handlerCtx{Context: parent, due: due, watch: w}
	w.mu.Lock()
	w.running.insertByDue(c)
	w.arm(due)
	w.mu.Unlock()
	return c
}

// cancel ends c now, before its deadline: its StuckAfter starts.
func (w *watch) cancel(c *handlerCtx) {
	w.mu.Lock()
	if c.list == &w.running {
		w.running.unlink(c)
		c.endedAt = time.Now()
		w.ended.push(c)
		w.arm(c.endedAt.Add(StuckAfter))
	}
	w.mu.Unlock()
	c.end(context.Canceled)
}

// done ends c once its handler has returned (nothing to rescue), as a
// WithDeadline's deferred cancel did.
func (w *watch) done(c *handlerCtx) {
	w.mu.Lock()
	if c.list != nil {
		c.list.unlink(c)
	}
	w.mu.Unlock()
	c.end(context.Canceled)
}

// rescueOverdue rescues c with r, registered after its StuckAfter had passed.
func (w *watch) rescueOverdue(c *handlerCtx, r Rescuer) {
	w.mu.Lock()
	if c.list != &w.overdue {
		w.mu.Unlock()
		return // its handler returned meanwhile
	}
	w.overdue.unlink(c)
	waited := time.Since(c.endedAt)
	w.mu.Unlock()
	go r.Rescue(waited)
}

// stop disarms the timer: the Poller has stopped.
func (w *watch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.armed = false
}

// arm makes the timer fire at at, unless it fires before. Under mu.
func (w *watch) arm(at time.Time) {
	if w.armed && !at.Before(w.armedAt) {
		return
	}
	w.armed, w.armedAt = true, at
	if w.timer == nil {
		w.timer = time.AfterFunc(time.Until(at), w.fire)
		return
	}
	w.timer.Reset(time.Until(at))
}

// fire ends the contexts whose deadline has passed and rescues the handlers stuck
// StuckAfter past their context's end, then arms the timer for what is next.
func (w *watch) fire() {
	var expired []*handlerCtx
	type rescue struct {
		r      Rescuer
		waited time.Duration
	}
	var rescues []rescue
	w.mu.Lock()
	w.armed = false
	now := time.Now()
	for c := w.running.head; c != nil && !c.due.After(now); c = w.running.head {
		w.running.unlink(c)
		c.endedAt = now
		w.ended.push(c)
		expired = append(expired, c)
	}
	for c := w.ended.head; c != nil && !c.endedAt.Add(StuckAfter).After(now); c = w.ended.head {
		w.ended.unlink(c)
		c.mu.Lock()
		r := c.rescuer
		c.overdue = r == nil
		c.mu.Unlock()
		if r == nil {
			w.overdue.push(c) // WatchHandler may still come: rescueOverdue
			continue
		}
		rescues = append(rescues, rescue{r, now.Sub(c.endedAt)})
	}
	if c := w.running.head; c != nil {
		w.arm(c.due)
	}
	if c := w.ended.head; c != nil {
		w.arm(c.endedAt.Add(StuckAfter))
	}
	w.mu.Unlock()
	for _, c := range expired {
		c.end(context.DeadlineExceeded)
	}
	for _, r := range rescues {
		go r.r.Rescue(r.waited)
	}
}

// ctxList is a doubly linked list of handler contexts, threaded through them.
type ctxList struct{ head, tail *handlerCtx }

func (l *ctxList) push(c *handlerCtx) {
	c.list, c.prev, c.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
}

// insertByDue puts c after the last context not due after it: at the tail, but
// for handlers that started at about the same time in the other order.
func (l *ctxList) insertByDue(c *handlerCtx) {
	after := l.tail
	for after != nil && after.due.After(c.due) {
		after = after.prev
	}
	if after == l.tail {
		l.push(c)
		return
	}
	c.list, c.prev = l, after
	if after == nil {
		c.next, l.head = l.head, c
	} else {
		c.next, after.next = after.next, c
	}
	c.next.prev = c
}

func (l *ctxList) unlink(c *handlerCtx) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.list, c.prev, c.next = nil, nil, nil
}

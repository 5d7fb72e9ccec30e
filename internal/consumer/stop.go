package consumer

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// phase is where a message stands when its fate is settled. The Poller's phase
// only moves forward (receiving → draining → cancelled → spent); a message whose
// visibility ran out stands at lost whatever the Poller's phase short of spent.
// The further along, the less the Poller may do with the message: settle switches
// on this one value.
type phase int32

const (
	// receiving: no stop yet. A handler's error leaves the message for a retry
	// after a backoff.
	receiving phase = iota
	// draining: the stop came; no new receive starts, and handlers still finish
	// within DrainTimeout with the same fates as while receiving.
	draining
	// cancelled: the drain is over (DrainTimeout passed, or the caller's work
	// context ended). Running handlers are cancelled; a message whose handler
	// fails, or that was never started, is released (visibility 0) for another
	// worker at once.
	cancelled
	// lost: the message's visibility ran out (renewal failed): someone else may own
	// it, so it is neither deleted nor released.
	lost
	// spent: the stop's budget is spent and Run may have returned: no SQS call is
	// made; the message comes back after its visibility timeout.
	spent
)

// phaseOf is the phase of a message whose visibility was or was not lost.
func (p *Poller) phaseOf(visibilityLost bool) phase {
	ph := phase(p.phase.Load())
	if visibilityLost && ph < lost {
		return lost
	}
	return ph
}

// advance moves the Poller's phase forward to ph, never back.
func (p *Poller) advance(ph phase) {
	for {
		old := p.phase.Load()
		if old >= int32(ph) || p.phase.CompareAndSwap(old, int32(ph)) {
			return
		}
	}
}

// stopBudget is what a stop may take, counted from its start: drain, for in-flight
// receives and running handlers to finish, then flush, for the SQS calls that settle
// what is left (releases, the last deletes), together at most drain + flush. It owns
// the two contexts that outlive the caller's, both detached from them:
//   - receiveCtx, of every ReceiveMessage. A long poll cancelled on the client can
//     still take messages on the server (SQS, moto and LocalStack do), which would
//     then stay invisible for a visibility timeout: one in flight at the stop runs to
//     its end, and receiveCtx ends only with the drain.
//   - flushCtx, of every call that settles a message (delete, release, backoff, DLQ
//     copy), each with afterStopTimeout too: it ends when the budget is spent.
type stopBudget struct {
	drain, flush time.Duration
	onSpent      func() // called once, before flushCtx ends

	receiveCtx  context.Context
	cutReceives context.CancelFunc
	flushCtx    context.Context
	endFlush    context.CancelFunc

	drainOver *time.Timer // started by start
	spendAt   *time.Timer // started by start
	spentOnce atomic.Bool
}

// newStopBudget returns a budget whose contexts carry base's values, not its
// cancellation. Nothing is counted before start.
func newStopBudget(base context.Context, drain, flush time.Duration, onSpent func()) *stopBudget {
	b := &stopBudget{drain: drain, flush: flush, onSpent: onSpent}
	detached := context.WithoutCancel(base)
	b.receiveCtx, b.cutReceives = context.WithCancel(detached)
	b.flushCtx, b.endFlush = context.WithCancel(detached)
	return b
}

// start starts counting: the stop has come.
func (b *stopBudget) start() {
	b.drainOver = time.NewTimer(b.drain)
	b.spendAt = time.AfterFunc(b.drain+b.flush, b.spend)
}

// drainEnds is ready when DrainTimeout has passed since start.
func (b *stopBudget) drainEnds() <-chan time.Time { return b.drainOver.C }

// spend ends the budget: later settles make no call, and calls in flight are cut.
func (b *stopBudget) spend() {
	if b.spentOnce.CompareAndSwap(false, true) {
		b.onSpent()
		b.endFlush()
	}
}

// close spends what is left of the budget (Run returns) and stops its timers.
func (b *stopBudget) close() {
	if b.drainOver != nil {
		b.drainOver.Stop()
		b.spendAt.Stop()
	}
	b.spend()
	b.cutReceives()
}

// receiveWatch tracks the receives in flight, so that a stop that cuts them knows
// how long they go on on the server: a long poll cut on the client keeps taking
// messages until its wait ends, and nobody gets them. A message released (visibility
// 0) while such an orphaned poll runs would be taken by it at once and stranded for
// a visibility timeout; released with a visibility that outlasts the orphans, it is
// visible again as soon as they end. With PollWait capped to the drain, only a cut
// before the drain ends (a second signal, the end of workCtx) leaves orphans.
type receiveWatch struct {
	mu       sync.Mutex
	inFlight int
	until    time.Time // latest server-side end of the receives in flight
	orphans  time.Time // set by cut: until then, cut receives may take messages
}

// begin counts a receive whose wait ends on the server at most wait from now.
func (w *receiveWatch) begin(wait time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight++
	if end := time.Now().Add(wait); end.After(w.until) {
		w.until = end
	}
}

// end counts a receive returned.
func (w *receiveWatch) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inFlight--; w.inFlight == 0 {
		w.until = time.Time{}
	}
}

// cut says that the receives in flight are being cut now.
func (w *receiveWatch) cut() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inFlight > 0 {
		w.orphans = w.until
	}
}

// releaseDelay is the visibility a message released now gets: 0, or, while cut
// receives may still take messages on the server, until they end.
func (w *receiveWatch) releaseDelay() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(0, time.Until(w.orphans))
}

package consumer

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes one queue's Poller.
type Config struct {
	Queue    string // logical name: log field and metrics label
	QueueURL string
	// DLQURL receives a copy of messages whose handler returned DeadLetter(err).
	// Empty: such messages are left for the queue's redrive policy instead.
	DLQURL string
	// Concurrency is how many handlers run at once (>= 1). How many messages the
	// Poller holds beyond it is ReceiveMode's.
	Concurrency int
	// ReceiveMode shapes the receives (default ReceiveAhead).
	ReceiveMode ReceiveMode
	// VisibilityTimeout is the queue's visibility timeout. A running handler's message
	// is renewed to this much whenever less than half of it remains.
	VisibilityTimeout time.Duration
	// MaxReceiveCount is the queue's redrive maxReceiveCount, copied into Message.
	MaxReceiveCount int
	// PollWait is the long-poll wait of a receive (default 20 s, at most 20 s). A
	// Poller caps it to PollWaitWithin(DrainTimeout): a receive in flight at a stop
	// must return within the drain, or what SQS hands it stays invisible for a
	// visibility timeout.
	PollWait time.Duration
	// HandlerTimeout is the deadline of one handler call (default 5 min).
	HandlerTimeout time.Duration
	// DrainTimeout is how long running handlers may finish after a stop (default
	// 20 s); the end of Work's workCtx cuts it short.
	DrainTimeout time.Duration
	// MaxPollers bounds the receive loops of the queue (default 1). One loop always
	// runs; another starts while receives come back full and the pool has room for
	// a full receive more, and an extra loop ends at its first empty receive. An idle
	// queue so costs one long poll per PollWait.
	MaxPollers int
	// FlushTimeout bounds, all together, the SQS calls made after the drain: releases
	// of unfinished messages and the last deletes (default 3 s). DrainTimeout +
	// FlushTimeout is the most a stop takes.
	FlushTimeout time.Duration
	// ReceiveResultFunc, when set, is called after every ReceiveMessage with its
	// error (nil on success), and with nil once a long poll has been in flight for
	// acceptedAfter without an error (the service accepted it): readiness tracking.
	// Called from the poller's goroutines, possibly concurrently.
	ReceiveResultFunc func(err error)
	// StoppedFunc, when set, is called once when the poller stops polling (at the
	// stop, before the drain): readiness tracking.
	StoppedFunc func()
	// Activity, when set, is told how many messages the poller has in hand (nil:
	// nobody is).
	Activity Activity
	// HandOver, when set, lets handlers run past SQS's 12 h visibility cap: a
	// message is handed on, under a lease, before the cap (see handover.go). nil:
	// a handler that outlives the cap loses its message's visibility and is
	// cancelled.
	HandOver *HandOver
}

// ReceiveMode says how a Poller shapes its receives; each receive asks for at most
// the slots free, capacity first, in every mode.
type ReceiveMode int

const (
	// ReceiveAhead, the default, is for throughput with quick handlers: while their
	// mean time is under 50 ms, the Poller holds up to min(Concurrency, 10)
	// messages more than it runs, so the next receive is in flight while handlers
	// finish the last; and once a slot is free, a receive waits up to 25 ms for
	// more, so handlers that finish together share one receive.
	ReceiveAhead ReceiveMode = iota
	// ReceiveOnDemand holds no message it cannot start at once and receives as
	// soon as a slot is free: a message never waits in one worker while another
	// could run it.
	ReceiveOnDemand
)

// Activity counts the messages a poller has in hand, from their receipt (a message
// received ahead, waiting for a handler, is in hand too) to their settled fate:
// Begin(n) when a receive brings n, End(1) when one is deleted, left for a retry,
// dead-lettered or released, End(n) for n released unstarted at once; one End for
// each Begin on every path. Called from the poller's goroutines, concurrently and
// on the hot path: it must be cheap and never block. Task scale-in protection
// (ecsprotect) implements it.
type Activity interface {
	Begin(n int)
	End(n int)
}

// receiveMargin is what a drain keeps, beyond a long poll's wait, for its answer to
// arrive: a receive started just before the stop returns within PollWait plus its
// round trip (milliseconds on SQS; moto answers a large queue more slowly).
const receiveMargin = time.Second

// PollWaitWithin is the longest long poll (whole seconds, at least SQS's 1 s) whose
// receive, started just before a stop, returns within a drain of drain. A receive
// cut by the drain's end can still take messages on the server, which then stay
// invisible for a visibility timeout; one that returns gets its messages released.
func PollWaitWithin(drain time.Duration) time.Duration {
	return max(time.Second, (drain - receiveMargin).Truncate(time.Second))
}

func (c *Config) applyDefaults() {
	if c.PollWait == 0 {
		c.PollWait = 20 * time.Second
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = 5 * time.Minute
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.MaxPollers == 0 {
		c.MaxPollers = 1
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 3 * time.Second
	}
}

// Validate reports every wrong field at once.
func (c Config) Validate() error {
	var errs []error
	if c.Queue == "" {
		errs = append(errs, errors.New("consumer: Queue is empty"))
	}
	if c.QueueURL == "" {
		errs = append(errs, fmt.Errorf("consumer %s: QueueURL is empty", c.Queue))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("consumer %s: Concurrency must be >= 1, got %d", c.Queue, c.Concurrency))
	}
	if c.VisibilityTimeout < time.Second {
		errs = append(errs, fmt.Errorf("consumer %s: VisibilityTimeout must be >= 1s, got %s", c.Queue, c.VisibilityTimeout))
	}
	if c.PollWait < 0 || c.PollWait > 20*time.Second {
		errs = append(errs, fmt.Errorf("consumer %s: PollWait must be 0..20s, got %s", c.Queue, c.PollWait))
	}
	if c.MaxPollers < 0 {
		errs = append(errs, fmt.Errorf("consumer %s: MaxPollers must not be negative", c.Queue))
	}
	if c.ReceiveMode != ReceiveAhead && c.ReceiveMode != ReceiveOnDemand {
		errs = append(errs, fmt.Errorf("consumer %s: unknown ReceiveMode %d", c.Queue, c.ReceiveMode))
	}
	if err := c.HandOver.validate(c.Queue); err != nil {
		errs = append(errs, err)
	}
	if c.HandlerTimeout < 0 || c.DrainTimeout < 0 || c.FlushTimeout < 0 {
		errs = append(errs, fmt.Errorf("consumer %s: timeouts must not be negative", c.Queue))
	}
	return errors.Join(errs...)
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awslimit"
)

// sqsAPI is what the consumer calls; *sqs.Client satisfies it.
type sqsAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// afterStopTimeout bounds one SQS call that settles a message (delete, release, DLQ
// copy): they run on a context detached from the cancelled one. After a stop, the
// poller's FlushTimeout bounds them all together as well.
const afterStopTimeout = 5 * time.Second

// Poller receives the messages of one queue and runs a Handler for each, at most
// Concurrency at once. See the package doc for the delivery semantics.
type Poller struct {
	cfg     Config
	client  sqsAPI
	handler Handler
	log     *zap.Logger
	metrics *Metrics
	hot     queueMetrics

	slots *slotPool // one slot per message held
	// work hands received messages to the Concurrency handler goroutines, which
	// live as long as Run: no goroutine (and no stack growth) per message. A
	// message is sent only with a slot held, so a send never blocks.
	work chan *inflight
	// pace is how the Poller shapes its receives (Config.ReceiveMode); prefetching
	// says whether the slot pool holds pace.prefetch more now. meanHandle is a
	// moving mean of handler times, in ns.
	pace        pace
	prefetching atomic.Bool
	meanHandle  atomic.Int64

	loops    sync.WaitGroup
	pollers  atomic.Int32 // receive loops running
	receives receiveWatch
	deleter  *deleter
	extender *extender
	watch    watch // the running handlers' deadlines, and their rescue when stuck
	// handlers counts the goroutines serving work; one that Detach takes a message
	// off leaves when its handler returns, and its replacement keeps its count.
	handlers sync.WaitGroup
	// serving is what a handler goroutine serves with (set by start, before the
	// first): Detach's replacement serves with the same.
	serving struct {
		jobCtx context.Context
		budget *stopBudget
	}

	// messageAttributes are the message attributes a receive asks for: the lease
	// of a continuation with a HandOver, none otherwise.
	messageAttributes []string

	// phase is the Poller's lifecycle phase (a phase; see phaseOf): Run moves it
	// forward, settle reads it.
	phase atomic.Int32
}

// NewPoller returns a Poller for cfg. It does nothing until Run.
func NewPoller(cfg Config, client sqsAPI, h Handler, log *zap.Logger, m *Metrics) (*Poller, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.PollWait = min(cfg.PollWait, PollWaitWithin(cfg.DrainTimeout))
	log = log.With(zap.String("component", "consumer"), zap.String("queue", cfg.Queue))
	pace := cfg.ReceiveMode.pace(cfg.Concurrency)
	p := &Poller{
		cfg: cfg, client: client, handler: h, log: log, metrics: m, hot: m.forQueue(cfg.Queue),
		slots:    newSlotPool(cfg.Concurrency),
		work:     make(chan *inflight, cfg.Concurrency+pace.prefetch),
		pace:     pace,
		deleter:  newDeleter(cfg, client, log, m),
		extender: newExtender(cfg, client, log, m),
	}
	p.meanHandle.Store(int64(prefetchBelow)) // not quick until handlers have shown it
	if cfg.HandOver != nil {
		p.messageAttributes = []string{LeaseAttribute, ReceivesAttribute}
	}
	return p, nil
}

// pace is what a ReceiveMode means for a Poller: the one place that shapes its
// receives beyond "capacity first".
type pace struct {
	// prefetch is how many messages more than Concurrency the Poller may hold
	// while its handlers are quick (see observeHandlerTime).
	prefetch int
	// gather is how long a receive waits for more slots after the first: handlers
	// that finish together then share one full receive instead of one receive each.
	gather time.Duration
}

func (m ReceiveMode) pace(concurrency int) pace {
	if m == ReceiveOnDemand {
		return pace{}
	}
	return pace{prefetch: min(concurrency, maxPrefetch), gather: gatherWindow}
}

// maxPrefetch bounds the messages a Poller holds beyond its Concurrency: one full
// receive. Measured on ElasticMQ (BENCHMARKS.md), 20 more did no better than 10.
const maxPrefetch = maxBatch

// gatherWindow is ReceiveAhead's gather: 25 ms, short beside a long poll's round trip.
const gatherWindow = 25 * time.Millisecond

// prefetchBelow is the mean handler time under which a Poller receives ahead: it
// then holds up to prefetch messages more than it runs, so the next receives are
// in flight while handlers finish the last ones (with quick handlers, the wait for
// SQS is what bounds throughput). A prefetched message waits for a handler about
// as long as a handler takes, and is kept invisible like a running one. With
// slower handlers it would only sit in one worker while another could run it.
const prefetchBelow = 50 * time.Millisecond

// observeHandlerTime updates the mean handler time and turns prefetching on or off
// when it crosses prefetchBelow. Concurrent updates may lose one another: the mean
// is a hint.
func (p *Poller) observeHandlerTime(d time.Duration) {
	if p.pace.prefetch == 0 {
		return
	}
	old := p.meanHandle.Load()
	mean := old + (int64(d)-old)/8
	p.meanHandle.Store(mean)
	quick := mean < int64(prefetchBelow)
	if p.prefetching.Load() != quick && p.prefetching.CompareAndSwap(!quick, quick) {
		if quick {
			p.slots.resize(p.pace.prefetch)
		} else {
			p.slots.resize(-p.pace.prefetch)
		}
	}
}

// Run receives until ctx ends, then stops within DrainTimeout + FlushTimeout: it is
// Work(ctx, context.WithoutCancel(ctx)). It returns nil once stopped, an error only
// if it cannot start.
func (p *Poller) Run(ctx context.Context) error {
	return p.Work(ctx, context.WithoutCancel(ctx))
}

// Work receives until receiveCtx ends, then stops (see the package doc); it returns
// nil once stopped. The two contexts are the caller's: the end of receiveCtx stops
// receiving and starts the drain, the end of workCtx ends the drain at once (as
// DrainTimeout does): running handlers are cancelled and their messages released.
// The end of workCtx alone stops the Poller as well. A Poller runs once.
func (p *Poller) Work(receiveCtx, workCtx context.Context) error {
	stopCtx, stop := context.WithCancel(receiveCtx) // a stop is either context's end
	defer stop()
	defer context.AfterFunc(workCtx, stop)()
	budget := newStopBudget(workCtx, p.cfg.DrainTimeout, p.cfg.FlushTimeout, func() { p.advance(spent) })
	defer budget.close()
	defer p.watch.stop()
	stopHelpers := p.startHelpers(workCtx, budget)

	// 1. Receive and handle until the stop.
	p.start(stopCtx, workCtx, budget)
	<-stopCtx.Done()

	// 2. Stop receiving: no new receive starts; the stop budget starts counting.
	p.advance(draining)
	budget.start()
	if p.cfg.StoppedFunc != nil {
		p.cfg.StoppedFunc()
	}

	// 3. Drain: receives in flight end on their own (what they bring is released
	// unstarted); running handlers, and the messages waiting for one, get
	// DrainTimeout, unless workCtx ends first.
	drained := p.whenDrained()
	select {
	case <-drained:
	case <-budget.drainEnds():
		p.log.Warn("drain timeout: releasing unfinished messages", zap.Duration("drain_timeout", p.cfg.DrainTimeout))
		p.cancelWork(drained, budget) // 4. Cancel what is unfinished.
	case <-workCtx.Done():
		p.log.Info("work cancelled: releasing unfinished messages")
		p.cancelWork(drained, budget)
	}

	// 5. Flush: the deleter sends what is pending within what is left of the
	// budget; then the budget is spent (close), and a late settle makes no call.
	stopHelpers()
	p.log.Info("stopped")
	return nil
}

// startHelpers starts the deleter and the extender; the function returned stops
// them (the deleter flushes what is pending) and waits for them.
func (p *Poller) startHelpers(workCtx context.Context, budget *stopBudget) func() {
	var helpers sync.WaitGroup
	ctx, cancel := context.WithCancel(context.WithoutCancel(workCtx))
	helpers.Go(func() { p.deleter.run(ctx, budget.flushCtx) })
	helpers.Go(func() { p.extender.run(ctx) })
	if p.cfg.HandOver != nil {
		helpers.Go(func() { p.runHandOver(ctx) })
	}
	return func() {
		cancel()
		helpers.Wait()
	}
}

// start starts the handler goroutines and the first receive loop, which returns at
// the stop (stopCtx's end).
func (p *Poller) start(stopCtx, workCtx context.Context, budget *stopBudget) {
	p.log.Info("polling", zap.Int("concurrency", p.cfg.Concurrency), zap.Int("max_pollers", p.cfg.MaxPollers), zap.Duration("visibility_timeout", p.cfg.VisibilityTimeout), zap.Duration("poll_wait", p.cfg.PollWait))
	// A handler's context outlives workCtx and has no cancelable parent
	// (registering thousands of children a second with one parent costs a lock and
	// a map entry each): the extender, which tracks every running handler, cancels
	// them when the drain ends.
	p.serving.jobCtx, p.serving.budget = context.WithoutCancel(workCtx), budget
	p.handlers.Add(p.cfg.Concurrency)
	for range p.cfg.Concurrency {
		go p.serve()
	}
	p.pollers.Add(1)
	p.loops.Go(func() { defer p.pollers.Add(-1); p.poll(stopCtx, budget, false) })
}

// whenDrained is closed once every receive loop and every handler has returned,
// after the stop.
func (p *Poller) whenDrained() <-chan struct{} {
	drained := make(chan struct{})
	go func() {
		p.loops.Wait() // no loop sends work after this
		close(p.work)
		p.handlers.Wait()
		close(drained)
	}()
	return drained
}

// cancelWork ends the drain: receives still in flight are cut, running handlers
// cancelled, and their messages and those still waiting released (phase
// cancelled). It waits for the handlers to return, until the budget is spent.
func (p *Poller) cancelWork(drained <-chan struct{}, budget *stopBudget) {
	p.advance(cancelled) // before the extender cancels: see handle
	p.receives.cut()
	budget.cutReceives()
	p.extender.cancelAll()
	select {
	case <-drained:
	case <-budget.flushCtx.Done():
		// A handler that ignores its cancelled context (a call on a detached one,
		// say) cannot hold the stop past its budget. Its message is neither deleted
		// nor released: it comes back after its visibility timeout, and a settle
		// that comes later makes no call (phase spent).
		p.log.Error("handlers did not return after cancel; leaving their messages for redelivery", zap.Duration("flush_timeout", p.cfg.FlushTimeout))
	}
}

// startExtraLoop adds a receive loop when the last receive was full, the pool could
// start a full receive more, and MaxPollers allows it.
func (p *Poller) startExtraLoop(ctx context.Context, budget *stopBudget) {
	for {
		n := p.pollers.Load()
		if int(n) >= p.cfg.MaxPollers || p.slots.available() < maxBatch {
			return
		}
		if p.pollers.CompareAndSwap(n, n+1) { // reserve the place before starting
			break
		}
	}
	p.metrics.pollers.WithLabelValues(p.cfg.Queue).Inc()
	p.loops.Go(func() {
		defer p.pollers.Add(-1)
		defer p.metrics.pollers.WithLabelValues(p.cfg.Queue).Dec()
		p.poll(ctx, budget, true)
	})
}

// poll is a receive loop; it returns when ctx is cancelled (the stop) or, for an
// extra loop, at its first empty receive. Receives run on the budget's receiveCtx,
// which the stop does not cancel.
func (p *Poller) poll(ctx context.Context, budget *stopBudget, extra bool) {
	failures := 0
	for {
		// Capacity first: never hold a message that cannot start.
		free, ok := p.acquire(ctx)
		if !ok {
			return
		}
		msgs, err := p.receive(ctx, budget.receiveCtx, free)
		p.begin(len(msgs))
		if ctx.Err() != nil {
			p.release(free)
			// A receive that returned after the stop came: give its messages back.
			p.releaseMessages(budget.flushCtx, msgs)
			p.end(len(msgs))
			return
		}
		if err != nil {
			p.release(free)
			failures++
			delay := Backoff(failures, 100*time.Millisecond, 20*time.Second)
			if failures == 1 || failures%10 == 0 {
				p.log.Error("receive failed; backing off", zap.Error(err), zap.Int("consecutive_failures", failures), zap.Duration("backoff", delay))
			}
			if !Sleep(ctx, delay) {
				return
			}
			continue
		}
		if failures > 0 {
			p.log.Info("receive recovered", zap.Int("after_failures", failures))
			failures = 0
		}
		p.release(free - len(msgs))
		held := p.extender.track(msgs, time.Now())
		for i := range held {
			p.work <- &held[i]
		}
		switch {
		case extra && len(msgs) == 0:
			return // the burst is over
		case len(msgs) == maxBatch:
			p.startExtraLoop(ctx, budget)
		}
	}
}

// acquire waits for min(10, Concurrency) slots, or, once one is free, gathers for
// up to pace.gather and takes what is free.
func (p *Poller) acquire(ctx context.Context) (int, bool) {
	return p.slots.acquire(ctx, p.pace.gather)
}

func (p *Poller) release(n int) { p.slots.release(n) }

// begin and end tell cfg.Activity of messages taken into hand and settled.
func (p *Poller) begin(n int) {
	if n > 0 && p.cfg.Activity != nil {
		p.cfg.Activity.Begin(n)
	}
}

func (p *Poller) end(n int) {
	if n > 0 && p.cfg.Activity != nil {
		p.cfg.Activity.End(n)
	}
}

// AWSTraceHeader is there only when a sender traced with X-Ray: tracing's parent.
var receiveAttributes = []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameAWSTraceHeader}

// receive asks for at most max messages on recvCtx; ctx is the poller's, whose
// cancellation (a stop) does not cut the request short.
func (p *Poller) receive(ctx, recvCtx context.Context, max int) ([]types.Message, error) {
	p.hot.receiveReqs.Inc()
	accepted := p.watchAccepted()
	p.receives.begin(p.cfg.PollWait + receiveMargin)
	defer p.receives.end()
	out, err := p.client.ReceiveMessage(recvCtx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(p.cfg.QueueURL),
		MaxNumberOfMessages: int32(max),
		WaitTimeSeconds:     int32(p.cfg.PollWait / time.Second),
		// Only what the delivery semantics need: each attribute asked for is a map
		// entry and a string the SDK decodes for every message.
		MessageSystemAttributeNames: receiveAttributes,
		MessageAttributeNames:       p.messageAttributes,
	})
	if ctx.Err() != nil && err != nil {
		accepted.done(nil, false)
		return nil, ctx.Err() // cut at the drain's end: a stop, not a failure
	}
	accepted.done(err, true)
	if err != nil {
		p.hot.receiveErrors.Inc()
		return nil, fmt.Errorf("receive from %s: %w", p.cfg.Queue, err)
	}
	if len(out.Messages) == 0 {
		p.hot.receiveEmpty.Inc()
	} else {
		p.hot.receiveFull.Inc()
		p.hot.received.Add(float64(len(out.Messages)))
	}
	return out.Messages, nil
}

// acceptedAfter is how long a long poll must be in flight without an error to count
// as accepted by the service: the poller is polling, long before the poll returns.
const acceptedAfter = time.Second

// acceptWatch reports a long poll as accepted, once, unless it ended before
// acceptedAfter; it keeps the reports of one receive in order.
type acceptWatch struct {
	mu     sync.Mutex
	report func(error)
	timer  *time.Timer
	ended  bool
}

// watchAccepted starts watching one receive; nil when nobody listens.
func (p *Poller) watchAccepted() *acceptWatch {
	if p.cfg.ReceiveResultFunc == nil {
		return nil
	}
	w := &acceptWatch{report: p.cfg.ReceiveResultFunc}
	w.timer = time.AfterFunc(acceptedAfter, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.ended {
			w.report(nil)
		}
	})
	return w
}

// done ends the watch and, if report, reports the receive's result.
func (w *acceptWatch) done(err error, report bool) {
	if w == nil {
		return
	}
	w.timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	if report {
		w.report(err)
	}
}

// errNotStarted is the result of a message whose handler never ran: it waited for
// one until its visibility was lost or the drain timed out.
var errNotStarted = errors.New("not started: the drain timed out or its visibility was lost while it waited for a handler")

// serve is a handler goroutine: it handles messages until work is closed, or until
// a handler it ran detached its message (Detach), whose replacement goes on in its
// place, counted in handlers as it was.
func (p *Poller) serve() {
	for f := range p.work {
		if !p.handle(f) {
			return
		}
	}
	p.handlers.Done()
}

// handle runs the handler of one message on a handler goroutine; the slot it holds
// is freed, and its activity ended, when the message's fate is settled (finish).
// It returns false when the handler detached the message: it is settled elsewhere,
// and this goroutine must serve no more.
func (p *Poller) handle(f *inflight) bool {
	jobCtx, budget := p.serving.jobCtx, p.serving.budget
	m := p.message(f.msg)
	// One time.Now for the deadline, the handler's time and the handler's own
	// (Message.Started): a message of the worker's path called it five times, at
	// 40–360 ns each on the benchmark machine (BENCHMARKS.md, issue 31).
	m.Started = time.Now()
	ctx := p.watch.start(jobCtx, m.Started.Add(p.cfg.HandlerTimeout))
	defer p.watch.done(ctx)
	// Once started, the end of the drain cancels this handler; before, the phase
	// tells (Run advances it to cancelled before the extender cancels).
	if p.phaseOf(p.extender.start(f, ctx)) >= cancelled {
		p.settle(budget, m, f.receipt, errNotStarted, p.extender.untrack(f))
		p.done()
		return true
	}
	if p.cfg.HandOver != nil {
		if key := leaseKey(f.msg); key != "" {
			if !p.claimContinuation(ctx, budget, f, &m, key) {
				p.done()
				return true
			}
			m.Started = time.Now() // the claim's calls are not the handler's time
		}
	}
	m.poller, m.held = p, f // for Detach
	p.hot.inFlight.Inc()
	err := p.call(ctx, m)
	if errors.Is(err, ErrDetached) {
		return false // Detach settles it, and serves on in this goroutine's place
	}
	p.finish(budget, m, f, err)
	return true
}

// finish settles a message whose handler returned err (or which Detach settles
// with err), and frees its slot.
func (p *Poller) finish(budget *stopBudget, m Message, f *inflight, err error) {
	defer p.done()
	took := time.Since(m.Started)
	p.hot.inFlight.Dec()
	p.hot.duration.Observe(took.Seconds())
	p.observeHandlerTime(took)
	lost := p.extender.untrack(f)
	if p.cfg.HandOver != nil && p.finishHandOver(budget, m, f, err, lost) {
		return
	}
	p.settle(budget, m, f.receipt, err, lost)
}

// done frees a settled message's slot and ends its activity.
func (p *Poller) done() {
	p.end(1)
	p.release(1)
}

// call runs the handler; a panic becomes an error for this message only.
func (p *Poller) call(ctx context.Context, m Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("handler panicked", zap.String("message_id", m.ID), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return p.handler.Handle(ctx, m)
}

// settle decides the message's fate, the one place that does, from the handler's
// result and the message's phase (see phase): a success is deleted and a
// DeadLetter error dead-lettered while the Poller may still act on the message;
// another error is retried after a backoff while the handlers may finish, and
// released once they are cancelled.
func (p *Poller) settle(budget *stopBudget, m Message, receipt string, err error, visibilityLost bool) {
	ph := p.phaseOf(visibilityLost)
	if err == nil && ph < lost {
		// The common case first, without a context or a logger of its own.
		p.deleter.add(receipt)
		p.hot.deleted.Inc()
		if ce := p.log.Check(zap.DebugLevel, "handled; deleting"); ce != nil {
			ce.Write(zap.String("message_id", m.ID), zap.Int("receive_count", m.ReceiveCount))
		}
		return
	}
	log := p.log.With(zap.String("message_id", m.ID), zap.Int("receive_count", m.ReceiveCount))
	ctx, cancel := context.WithTimeout(budget.flushCtx, afterStopTimeout)
	defer cancel()
	switch ph {
	case receiving, draining:
		if IsDeadLetter(err) {
			p.deadLetterOrRetry(ctx, log, m, receipt, err)
			return
		}
		p.retryLater(ctx, m, receipt, m.ReceiveCount)
		p.metrics.handled.WithLabelValues(p.cfg.Queue, "retried").Inc()
		log.Debug("handler failed; will be redelivered", zap.Error(err))
	case cancelled:
		if IsDeadLetter(err) {
			p.deadLetterOrRetry(ctx, log, m, receipt, err)
			return
		}
		delay := p.receives.releaseDelay()
		p.changeVisibility(ctx, receipt, delay, "release")
		p.metrics.handled.WithLabelValues(p.cfg.Queue, "released").Inc()
		p.logRelease(log, m, delay, zap.NamedError("handler_error", err))
	case lost:
		// Someone else may own the message now: neither delete nor release it.
		p.metrics.handled.WithLabelValues(p.cfg.Queue, "abandoned").Inc()
		log.Warn("visibility lost while handling; leaving the message", zap.NamedError("handler_error", err))
	case spent:
		// The stop's budget is spent and Run may have returned: leave the message.
		p.metrics.handled.WithLabelValues(p.cfg.Queue, "abandoned").Inc()
		log.Warn("handler returned after the stop's budget; leaving the message", zap.NamedError("handler_error", err))
	}
}

// deadLetterOrRetry copies the message to the DLQ and deletes it, or, if it cannot,
// leaves it for the redrive policy to take there.
func (p *Poller) deadLetterOrRetry(ctx context.Context, log *zap.Logger, m Message, receipt string, err error) {
	if p.deadLetter(ctx, m, err) {
		p.deleter.add(receipt)
		p.metrics.handled.WithLabelValues(p.cfg.Queue, "dead_lettered").Inc()
		log.Warn("moved to the DLQ", zap.Error(err))
		return
	}
	p.retryLater(ctx, m, receipt, m.ReceiveCount)
	p.metrics.handled.WithLabelValues(p.cfg.Queue, "retried").Inc()
}

// retryLater makes the message visible again after a delay that grows with its
// receive count, so a retry is quick but not hot.
func (p *Poller) retryLater(ctx context.Context, m Message, receipt string, attempt int) {
	delay := Backoff(attempt, time.Second, p.cfg.VisibilityTimeout)
	p.changeVisibility(ctx, receipt, delay, "backoff")
}

func (p *Poller) changeVisibility(ctx context.Context, receipt string, d time.Duration, kind string) {
	p.metrics.requests.WithLabelValues(p.cfg.Queue, "ChangeMessageVisibility").Inc()
	_, err := p.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(p.cfg.QueueURL), ReceiptHandle: aws.String(receipt), VisibilityTimeout: wholeSeconds(d),
	})
	p.metrics.visibility.WithLabelValues(p.cfg.Queue, kind, result(err)).Inc()
	if err != nil {
		// Harmless: the message comes back when its current visibility ends.
		p.log.Warn("change visibility failed", zap.String("kind", kind), zap.Error(err))
	}
}

// wholeSeconds rounds a delay up to SQS's unit, so a short backoff never becomes 0
// (visible at once).
func wholeSeconds(d time.Duration) int32 {
	return int32((d + time.Second - 1) / time.Second)
}

// logRelease tells of a message released at a stop with its receive count: the
// interrupted run counted as a receive, and on its last allowed one the queue's
// redrive policy moves the message to the DLQ at its next receive.
func (p *Poller) logRelease(log *zap.Logger, m Message, delay time.Duration, fields ...zap.Field) {
	fields = append(fields, zap.Int("max_receive_count", m.MaxReceiveCount))
	if delay > 0 { // see receiveWatch
		fields = append(fields, zap.Duration("visible_in", delay.Round(time.Second)))
	}
	if m.MaxReceiveCount > 0 && m.ReceiveCount >= m.MaxReceiveCount {
		log.Warn("released at shutdown on its last allowed receive: the redrive policy moves it to the DLQ at its next receive", fields...)
		return
	}
	log.Info("released at shutdown; the interrupted run counts as a receive", fields...)
}

// releaseMessages makes messages that were received but never started visible now
// (or once cut receives have ended on the server: see receiveWatch), in
// ChangeMessageVisibilityBatch calls of up to 10.
func (p *Poller) releaseMessages(flushCtx context.Context, msgs []types.Message) {
	if len(msgs) == 0 {
		return
	}
	delay := p.receives.releaseDelay()
	receipts := make([]string, len(msgs))
	for i, raw := range msgs {
		m := p.message(raw)
		p.logRelease(p.log.With(zap.String("message_id", m.ID), zap.Int("receive_count", m.ReceiveCount)), m, delay, zap.Bool("unstarted", true))
		receipts[i] = aws.ToString(raw.ReceiptHandle)
	}
	ctx, cancel := context.WithTimeout(flushCtx, afterStopTimeout)
	defer cancel()
	ChangeVisibility(ctx, p.client, p.cfg.QueueURL, receipts, wholeSeconds(delay), func(b VisibilityBatch) {
		p.metrics.requests.WithLabelValues(p.cfg.Queue, "ChangeMessageVisibilityBatch").Inc()
		failed := len(b.Failed)
		if b.Err != nil {
			failed = len(b.Receipts)
		}
		p.metrics.visibility.WithLabelValues(p.cfg.Queue, "release", "ok").Add(float64(len(b.Receipts) - failed))
		p.metrics.visibility.WithLabelValues(p.cfg.Queue, "release", "error").Add(float64(failed))
		p.metrics.handled.WithLabelValues(p.cfg.Queue, "released").Add(float64(len(b.Receipts)))
		if failed > 0 {
			// Harmless: they come back when their visibility ends.
			p.log.Warn("release after stop failed", zap.Int("batch_size", len(b.Receipts)), zap.Int("failed", failed), zap.Error(b.Err))
		}
	})
}

// The message attributes deadLetter sets on its DLQ copy, all named with
// DeadLetterAttrPrefix: the DLQ's own notes, which a redrive does not send back.
const (
	DeadLetterAttrPrefix       = "taskbridge-"
	DeadLetterReasonAttr       = DeadLetterAttrPrefix + "error"         // why: the job's error, at most 1 KiB
	DeadLetterSourceQueueAttr  = DeadLetterAttrPrefix + "source-queue"  // the topology queue it came from
	DeadLetterReceiveCountAttr = DeadLetterAttrPrefix + "receive-count" // its receives before it was dead-lettered
)

// maxReasonLen keeps the DLQ's reason attribute readable and well under SQS limits.
const maxReasonLen = 1024

// deadLetter copies the message to the DLQ with why; false if it could not.
func (p *Poller) deadLetter(ctx context.Context, m Message, cause error) bool {
	if p.cfg.DLQURL == "" {
		p.log.Warn("no DLQ configured; leaving the message to the redrive policy", zap.String("message_id", m.ID), zap.Error(cause))
		return false
	}
	reason := cause.Error()
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	attrs := map[string]types.MessageAttributeValue{
		DeadLetterReasonAttr:       {DataType: aws.String("String"), StringValue: aws.String(reason)},
		DeadLetterSourceQueueAttr:  {DataType: aws.String("String"), StringValue: aws.String(p.cfg.Queue)},
		DeadLetterReceiveCountAttr: {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(m.ReceiveCount))},
	}
	fitAttributes(len(m.Body), attrs)
	in := &sqs.SendMessageInput{QueueUrl: aws.String(p.cfg.DLQURL), MessageBody: aws.String(m.Body), MessageAttributes: attrs}
	if m.TraceHeader != "" {
		// Kept, so that a redrive of the copy still joins the trace it arrived with.
		in.MessageSystemAttributes = map[string]types.MessageSystemAttributeValue{
			string(types.MessageSystemAttributeNameForSendsAWSTraceHeader): {DataType: aws.String("String"), StringValue: aws.String(m.TraceHeader)},
		}
	}
	p.metrics.requests.WithLabelValues(p.cfg.Queue, "SendMessage").Inc()
	_, err := p.client.SendMessage(ctx, in)
	if err != nil {
		p.log.Error("copy to DLQ failed; the message will be retried", zap.String("message_id", m.ID), zap.Error(err))
		return false
	}
	return true
}

func (p *Poller) message(raw types.Message) Message {
	m := Message{
		ID: aws.ToString(raw.MessageId), Queue: p.cfg.Queue, Body: aws.ToString(raw.Body),
		MaxReceiveCount: p.cfg.MaxReceiveCount,
	}
	m.ReceiveCount, _ = strconv.Atoi(raw.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	m.TraceHeader = raw.Attributes[string(types.MessageSystemAttributeNameAWSTraceHeader)]
	return m
}

// Backoff is base·2^attempt capped at max, with jitter in its upper half so a fleet
// does not retry in lockstep.
func Backoff(attempt int, base, max time.Duration) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	d := base << min(attempt, 30)
	if d > max || d <= 0 {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx is done; false when ctx is done. With Backoff, the
// retry wait of the consumer and of what builds on it.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fitAttributes makes a DLQ copy fit in SQS's largest message, which counts the
// body and each attribute's name, type and value: a body near 1 MiB (an event may
// be that large since 2026-01-29) keeps as much of the reason as fits, or no
// attribute at all, rather than a copy SQS refuses.
func fitAttributes(bodyLen int, attrs map[string]types.MessageAttributeValue) {
	size := bodyLen
	for name, v := range attrs {
		size += len(name) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue))
	}
	over := size - awslimit.SQSMessageBytes
	if over <= 0 {
		return
	}
	reason := attrs["taskbridge-error"]
	if text := aws.ToString(reason.StringValue); over < len(text) {
		cut := len(text) - over
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut-- // on a character's first byte: SQS takes valid Unicode only
		}
		reason.StringValue = aws.String(text[:cut])
		attrs["taskbridge-error"] = reason
		return
	}
	clear(attrs)
}

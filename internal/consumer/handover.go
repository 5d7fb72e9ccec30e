package consumer

// The hand-over: a handler may run longer than SQS lets a received message stay
// invisible (12 h from its receipt, whatever ChangeMessageVisibility asks). Before
// that cap, at HandOver.After, the message is handed on: its job's lease is taken
// (an S3 object with conditional writes, renewed every TTL/3 while the handler
// runs), a continuation is sent to the same queue (the same body, delayed, with
// the lease's key in the message attribute LeaseAttribute), and the received
// message is deleted. The handler runs on; its outcome then goes to the lease:
// done (the continuations are dropped as they come), released (the next one to
// receive a continuation runs the job again), and a dead letter is copied to the
// DLQ first.
//
// A continuation that is received is judged by its lease before any handler sees
// it: done or gone → deleted; held and alive (its holder renews it) → hidden until
// the lease would expire (a fresh copy sent with that delay, this one deleted: a
// check spends no receive of the copy's count, so a job of many days never reaches
// maxReceiveCount); dead (not renewed for its TTL: the holder was killed) or
// released → taken over (one taker wins) and handled like any message, heartbeats
// and all. A worker killed mid-job is so replaced within the lease's TTL plus a
// receive. Copies made twice (a lost reply of a send) are harmless: the lease lets
// one run.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awslimit"
)

// Message attributes of a continuation: its lease's key, and the receives its job
// had before it (each run of the job counts as one: Message.ReceiveCount of a
// continuation taken over adds them, so a job that keeps failing after its
// hand-over still reaches maxReceiveCount and its final failure).
const (
	LeaseAttribute    = "taskbridge-lease"
	ReceivesAttribute = "taskbridge-receives"
)

// HandOver lets handlers of a queue run past SQS's visibility cap.
type HandOver struct {
	// Cap is how long SQS keeps a received message invisible at most, from its
	// receipt: awslimit.SQSMaxVisibility (12 h) unless a test scales it down.
	Cap time.Duration
	// Leases holds one job's lease per handed-on message.
	Leases Leases
}

// After is how long after its receipt a running message is handed on: three
// quarters of the cap, room for a hand-over retried many times.
func (h HandOver) After() time.Duration { return h.Cap * 3 / 4 }

// Leases keeps the leases of handed-on jobs (internal/lease implements it). Safe for
// concurrent use; every call resolves a lost reply by reading back.
type Leases interface {
	// TTL is how long a lease lives past its holder's last renewal.
	TTL() time.Duration
	// Key names the lease of a message of queue first handed on.
	Key(queue, messageID string) string
	// Hold makes the lease of key, held by this process; an error wrapping
	// ErrLeaseHeld if another holds it.
	Hold(ctx context.Context, key string) (HeldLease, error)
	// Claim judges a continuation by key's lease (see LeaseClaim).
	Claim(ctx context.Context, key string) (LeaseClaim, error)
}

// LeaseClaim is the verdict on a continuation: Lease set → taken over, run it;
// Done → drop it; else another holder is alive until HeldUntil → hide it.
type LeaseClaim struct {
	Lease     HeldLease
	Done      bool
	HeldUntil time.Time
}

// HeldLease is a lease this process holds.
type HeldLease interface {
	// Renew keeps it alive; an error wrapping ErrLeaseLost once another took it.
	Renew(ctx context.Context) error
	// Finish writes its end: done true (the outcome is settled) or false
	// (released: the job is to run again).
	Finish(ctx context.Context, done bool) error
	// Renewed is when it was last written.
	Renewed() time.Time
}

// ErrLeaseHeld and ErrLeaseLost are what Leases' errors wrap.
var (
	ErrLeaseHeld = errors.New("lease held by another worker")
	ErrLeaseLost = errors.New("lease lost to another worker")
)

// handState is one message's hand-over state, guarded by its own mu (the hand-over
// loop and the message's handler goroutine both act on it; S3 and SQS calls are
// made under it, so a hand-over and the handler's end never cross).
type handState struct {
	received  time.Time // when the receive returned; set at track, never changed
	mu        sync.Mutex
	key       string    // the lease's key; "" before the first hand-over
	lease     HeldLease // nil until held
	continued bool      // a continuation was sent
	handedOn  bool      // and the received message deleted
	finished  bool      // the handler returned: no more hand-over
	receives  int       // the job's receives so far: what a continuation carries
}

// leaseKey is the key of a continuation's lease, "" for another message.
func leaseKey(raw types.Message) string {
	if v, ok := raw.MessageAttributes[LeaseAttribute]; ok {
		return aws.ToString(v.StringValue)
	}
	return ""
}

// ownLease reports whether key can be a lease of this queue's jobs: the key of a
// message id of the queue (one path segment, no dot-dot), as Leases.Key makes it.
func (p *Poller) ownLease(key string) bool {
	before, after, _ := strings.Cut(p.cfg.HandOver.Leases.Key(p.cfg.Queue, "\x00"), "\x00")
	id, ok := strings.CutPrefix(key, before)
	id, ok2 := strings.CutSuffix(id, after)
	return ok && ok2 && id != "" && !strings.ContainsAny(id, "/\\") && !strings.Contains(id, "..") && utf8.ValidString(id)
}

// priorReceives is what a continuation says its job was received before it.
func priorReceives(raw types.Message) int {
	n, _ := strconv.Atoi(aws.ToString(raw.MessageAttributes[ReceivesAttribute].StringValue))
	return max(n, 0)
}

// hideMargin is how long after its lease's expiry a hidden continuation comes back.
const hideMargin = 2 * time.Second

// claimContinuation judges a received continuation before its handler may run;
// false means it was settled here.
func (p *Poller) claimContinuation(ctx context.Context, budget *stopBudget, f *inflight, m *Message, key string) bool {
	hs := f.hand
	prior := priorReceives(f.msg)
	if !p.ownLease(key) {
		// Only this queue's hand-over writes continuations: one that names another
		// object of the data bucket would have a take-over overwrite it.
		err := DeadLetter(fmt.Errorf("continuation names %q, not a lease of queue %s", key, p.cfg.Queue))
		p.settle(budget, *m, f.receipt, err, p.extender.untrack(f))
		return false
	}
	c, err := p.cfg.HandOver.Leases.Claim(ctx, key)
	switch {
	case err != nil:
		p.settle(budget, *m, f.receipt, fmt.Errorf("judge continuation by lease %s: %w", key, err), p.extender.untrack(f))
	case c.Done:
		p.extender.untrack(f)
		p.deleter.add(f.receipt)
		p.metrics.handled.WithLabelValues(p.cfg.Queue, "continuation_dropped").Inc()
		p.log.Info("continuation of a finished job dropped", zap.String("message_id", m.ID), zap.String("lease", key))
	case c.Lease == nil:
		p.extender.untrack(f)
		p.hide(budget, f, *m, key, prior, c.HeldUntil)
	default:
		m.ReceiveCount += prior // this run is one more of the job's
		hs.mu.Lock()            // the hand-over loop may already look at f: it runs
		hs.key, hs.lease, hs.receives = key, c.Lease, m.ReceiveCount
		hs.mu.Unlock()
		p.metrics.handled.WithLabelValues(p.cfg.Queue, "taken_over").Inc()
		p.log.Info("long job taken over from a dead or released lease", zap.String("message_id", m.ID), zap.String("lease", key))
		return true
	}
	return false
}

// hide keeps a continuation out of sight until its lease would expire: a fresh
// copy with that delay, and this one deleted; if the copy cannot be sent, this one
// is hidden by its visibility instead (its receive count then grows by one).
func (p *Poller) hide(budget *stopBudget, f *inflight, m Message, key string, prior int, until time.Time) {
	delay := min(max(time.Until(until)+hideMargin, time.Second), awslimit.SQSMaxDelay)
	ctx, cancel := context.WithTimeout(budget.flushCtx, afterStopTimeout)
	defer cancel()
	if err := p.sendContinuation(ctx, m.Body, key, prior, delay); err != nil { // a check is no run: the count stays
		p.log.Warn("copy of a continuation failed; hiding it by its visibility", zap.String("message_id", m.ID), zap.Error(err))
		p.changeVisibility(ctx, f.receipt, delay, "hide")
		return
	}
	p.deleter.add(f.receipt)
	p.metrics.handled.WithLabelValues(p.cfg.Queue, "continuation_hidden").Inc()
	if ce := p.log.Check(zap.DebugLevel, "continuation hidden: its lease is alive"); ce != nil {
		ce.Write(zap.String("message_id", m.ID), zap.String("lease", key), zap.Duration("delay", delay))
	}
}

func (p *Poller) sendContinuation(ctx context.Context, body, key string, receives int, delay time.Duration) error {
	p.metrics.requests.WithLabelValues(p.cfg.Queue, "SendMessage").Inc()
	_, err := p.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(p.cfg.QueueURL), MessageBody: aws.String(body), DelaySeconds: wholeSeconds(delay),
		MessageAttributes: map[string]types.MessageAttributeValue{
			LeaseAttribute:    {DataType: aws.String("String"), StringValue: aws.String(key)},
			ReceivesAttribute: {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(receives))},
		},
	})
	return err
}

// runHandOver hands on the messages that reach HandOver.After and renews the leases
// held, until ctx ends. It is one of the Poller's helpers.
func (p *Poller) runHandOver(ctx context.Context) {
	h := p.cfg.HandOver
	tick := max(min(h.Cap/40, h.Leases.TTL()/6), 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due, held := p.extender.handOverDue(time.Now(), h.After())
		for _, f := range due {
			p.handOn(ctx, f)
		}
		for _, f := range held {
			p.renewLease(ctx, f, h.Leases.TTL()/3)
		}
	}
}

// handOn hands f on: lease, continuation, delete, each step once; a step that
// fails is tried again at the next tick.
func (p *Poller) handOn(ctx context.Context, f *inflight) {
	hs := f.hand
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.finished || hs.handedOn {
		return
	}
	log := p.log.With(zap.String("message_id", aws.ToString(f.msg.MessageId)))
	leases := p.cfg.HandOver.Leases
	if hs.lease == nil { // the job's first hand-over
		hs.receives = p.message(f.msg).ReceiveCount
		hs.key = leases.Key(p.cfg.Queue, aws.ToString(f.msg.MessageId))
		l, err := leases.Hold(ctx, hs.key)
		if errors.Is(err, ErrLeaseHeld) {
			// The job has a lease already: this message is a second delivery of one
			// that was handed on. The lease decides: this run stops, and the message
			// goes (else it would come back and stop again, until the redrive took
			// it to the DLQ). A delete that fails leaves it to the same end.
			log.Error("a job handed on before holds this message's lease; stopping this run and deleting the message", zap.String("lease", hs.key))
			p.extender.loseLease(f)
			if err := p.deleteNow(ctx, f.receipt); err != nil {
				log.Warn("delete of a message whose job is held elsewhere failed", zap.Error(err))
			}
			hs.finished = true
			return
		}
		if err != nil {
			log.Warn("hand-over: hold lease failed; will try again", zap.Error(err))
			return
		}
		hs.lease = l
	}
	if !hs.continued {
		if err := p.sendContinuation(ctx, aws.ToString(f.msg.Body), hs.key, hs.receives, min(leases.TTL(), awslimit.SQSMaxDelay)); err != nil {
			log.Warn("hand-over: send continuation failed; will try again", zap.Error(err))
			return
		}
		hs.continued = true
	}
	if err := p.deleteNow(ctx, f.receipt); err != nil {
		// The extender keeps it invisible meanwhile; a delete that landed with its
		// reply lost succeeds again on the same receipt handle.
		log.Warn("hand-over: delete of the received message failed; will try again", zap.Error(err))
		return
	}
	hs.handedOn = true
	p.extender.handedOn(f)
	p.metrics.handled.WithLabelValues(p.cfg.Queue, "handed_on").Inc()
	log.Info("long job handed on before SQS's visibility cap", zap.String("lease", hs.key), zap.Duration("cap", p.cfg.HandOver.Cap))
}

// deleteNow deletes one message at once, not through the batching deleter: the
// hand-over must know it is gone before it goes on.
func (p *Poller) deleteNow(ctx context.Context, receipt string) error {
	p.metrics.requests.WithLabelValues(p.cfg.Queue, "DeleteMessageBatch").Inc()
	out, err := p.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(p.cfg.QueueURL),
		Entries: []types.DeleteMessageBatchRequestEntry{{Id: aws.String("0"), ReceiptHandle: aws.String(receipt)}}})
	if err == nil && len(out.Failed) > 0 {
		err = fmt.Errorf("%s: %s", aws.ToString(out.Failed[0].Code), aws.ToString(out.Failed[0].Message))
	}
	return err
}

// renewLease renews f's lease when every is past its last write; a lease lost
// stops the handler (another worker runs the job now).
func (p *Poller) renewLease(ctx context.Context, f *inflight, every time.Duration) {
	hs := f.hand
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.finished || hs.lease == nil || time.Since(hs.lease.Renewed()) < every {
		return
	}
	err := hs.lease.Renew(ctx)
	switch {
	case errors.Is(err, ErrLeaseLost):
		p.log.Error("lease lost: another worker took the job over; stopping this run", zap.String("lease", hs.key))
		p.extender.loseLease(f)
	case err != nil:
		p.log.Warn("renew lease failed; will try again", zap.String("lease", hs.key), zap.Error(err))
	}
}

// finishHandOver settles a handler's end for a message with a lease; handled is
// false when the message has no lease and settle decides alone. For a message
// handed on, the lease is all there is: done for a success (a dead letter is
// copied to the DLQ first), released for anything else. For a continuation taken
// over and not handed on again, settle decides its fate and the lease follows.
func (p *Poller) finishHandOver(budget *stopBudget, m Message, f *inflight, err error, lost bool) (handled bool) {
	hs := f.hand
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.finished = true
	if hs.lease == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(budget.flushCtx, afterStopTimeout)
	defer cancel()
	done := err == nil || IsDeadLetter(err)
	if hs.handedOn && IsDeadLetter(err) && !lost && !p.deadLetter(ctx, m, err) {
		done = false // the DLQ copy failed: the job runs again rather than be lost
	}
	if !lost {
		var ferr error
		for try := range 3 {
			if ferr = hs.lease.Finish(ctx, done); ferr == nil || errors.Is(ferr, ErrLeaseLost) {
				break
			}
			Sleep(ctx, Backoff(try, 200*time.Millisecond, 2*time.Second))
		}
		if ferr != nil {
			p.log.Error("finish lease failed; a continuation may run the job again", zap.String("lease", hs.key), zap.Bool("done", done), zap.Error(ferr))
		}
	}
	if !hs.handedOn {
		return false // its own receipt still stands: settle decides
	}
	outcome := "handed_on_done"
	switch {
	case lost:
		outcome = "lease_lost" // the taker's now: nothing written here
	case !done:
		outcome = "handed_on_released"
	}
	p.metrics.handled.WithLabelValues(p.cfg.Queue, outcome).Inc()
	p.log.Info("long job ended after its hand-over", zap.String("message_id", m.ID), zap.String("lease", hs.key), zap.Bool("done", done), zap.NamedError("handler_error", err))
	return true
}

// validateHandOver checks the hand-over's settings.
func (h *HandOver) validate(queue string) error {
	if h == nil {
		return nil
	}
	var errs []error
	if h.Leases == nil {
		errs = append(errs, fmt.Errorf("consumer %s: HandOver has no Leases", queue))
	} else if ttl := h.Leases.TTL(); ttl*2 > h.After() {
		errs = append(errs, fmt.Errorf("consumer %s: a lease TTL of %s does not fit twice in the %s before a hand-over", queue, ttl, h.After()))
	}
	if h.Cap < 4*time.Second || h.Cap > awslimit.SQSMaxVisibility {
		errs = append(errs, fmt.Errorf("consumer %s: HandOver.Cap must be 4s..%s, got %s", queue, awslimit.SQSMaxVisibility, h.Cap))
	}
	return errors.Join(errs...)
}

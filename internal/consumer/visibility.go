package consumer

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.uber.org/zap"
)

// inflight is one message the Poller holds, from its receipt to its fate: waiting
// for a handler (prefetched), then running. msg and receipt never change; the other
// fields are guarded by extender.mu.
type inflight struct {
	msg      types.Message
	receipt  string
	deadline time.Time   // when its visibility ends unless renewed
	ctx      *handlerCtx // its handler's; nil while it waits for one
	lost     bool        // renewal failed past the deadline (or its lease was lost): the handler, if any, was cancelled
	handedOn bool        // deleted and continued by the hand-over: no visibility to keep
	hand     *handState  // the hand-over's (nil without one); set at track, then guarded by hand.mu
}

// extender keeps the messages a Poller holds invisible: every tick it renews, in
// ChangeMessageVisibilityBatch calls, each message with less than half its
// visibility timeout left. If renewal fails and the deadline passes, it cancels that
// message's handler; the message must then be neither deleted nor released.
type extender struct {
	cfg     Config
	client  sqsAPI
	log     *zap.Logger
	metrics *Metrics

	mu       sync.Mutex
	inflight map[*inflight]struct{}
}

func newExtender(cfg Config, client sqsAPI, log *zap.Logger, m *Metrics) *extender {
	return &extender{cfg: cfg, client: client, log: log, metrics: m, inflight: map[*inflight]struct{}{}}
}

// track starts keeping the messages of one receive invisible; received is when
// the receive returned. (Not when it was sent: a long poll can wait 20 s before SQS
// hands it a message, and its visibility starts then.)
func (e *extender) track(msgs []types.Message, received time.Time) []inflight {
	held := make([]inflight, len(msgs)) // one allocation for the whole receive
	deadline := received.Add(e.cfg.VisibilityTimeout)
	for i, raw := range msgs {
		held[i] = inflight{msg: raw, receipt: aws.ToString(raw.ReceiptHandle), deadline: deadline}
	}
	if e.cfg.HandOver != nil { // only then: no byte more per message without one
		states := make([]handState, len(msgs))
		for i := range held {
			states[i].received = received
			held[i].hand = &states[i]
		}
	}
	e.mu.Lock()
	for i := range held {
		e.inflight[&held[i]] = struct{}{}
	}
	e.mu.Unlock()
	return held
}

// start gives f its handler's context; it reports whether f's visibility was lost
// while it waited, in which case its handler must not run.
func (e *extender) start(f *inflight, ctx *handlerCtx) (lost bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f.ctx = ctx
	return f.lost
}

// untrack stops renewing f and reports whether its visibility was lost.
func (e *extender) untrack(f *inflight) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.inflight, f)
	return f.lost
}

// cancelAll cancels every running handler (the drain timed out); their messages
// are released, not lost.
func (e *extender) cancelAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for f := range e.inflight {
		if f.ctx != nil {
			f.ctx.cancel()
		}
	}
}

func (e *extender) tick() time.Duration {
	return max(e.cfg.VisibilityTimeout/6, 200*time.Millisecond)
}

func (e *extender) run(ctx context.Context) {
	t := time.NewTicker(e.tick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.renewDue(ctx)
		}
	}
}

func (e *extender) renewDue(ctx context.Context) {
	now := time.Now()
	var due []*inflight
	e.mu.Lock()
	for f := range e.inflight {
		if f.lost || f.handedOn {
			continue
		}
		if now.After(f.deadline) {
			f.lost = true
			if f.ctx != nil {
				f.ctx.cancel()
			}
			continue
		}
		if f.deadline.Sub(now) < e.cfg.VisibilityTimeout/2 {
			due = append(due, f)
		}
	}
	e.mu.Unlock()
	for start := 0; start < len(due); start += maxBatch {
		e.renew(ctx, due[start:min(start+maxBatch, len(due))])
	}
}

func (e *extender) renew(ctx context.Context, batch []*inflight) {
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, 0, len(batch))
	asked := make([]time.Duration, len(batch))
	sent := time.Now()
	for i, f := range batch {
		if asked[i] = e.visibilityFor(f, sent); asked[i] < time.Second {
			continue // at SQS's cap: nothing more to ask (the hand-over failed until now)
		}
		entries = append(entries, types.ChangeMessageVisibilityBatchRequestEntry{
			Id: &batchIDs[i], ReceiptHandle: &f.receipt, // f.receipt never changes
			VisibilityTimeout: int32(asked[i] / time.Second),
		})
	}
	if len(entries) == 0 {
		return
	}
	e.metrics.requests.WithLabelValues(e.cfg.Queue, "ChangeMessageVisibilityBatch").Inc()
	out, err := e.client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(e.cfg.QueueURL), Entries: entries})
	if err != nil {
		e.metrics.visibility.WithLabelValues(e.cfg.Queue, "extend", "error").Add(float64(len(batch)))
		e.log.Warn("extend visibility failed; will retry before the deadline", zap.Int("batch_size", len(batch)), zap.Error(err))
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ok := range out.Successful {
		if i, err := strconv.Atoi(aws.ToString(ok.Id)); err == nil && i < len(batch) {
			batch[i].deadline = sent.Add(asked[i])
			e.metrics.visibility.WithLabelValues(e.cfg.Queue, "extend", "ok").Inc()
		}
	}
	for _, f := range out.Failed {
		e.metrics.visibility.WithLabelValues(e.cfg.Queue, "extend", "error").Inc()
		e.log.Warn("extend visibility entry failed", zap.String("code", aws.ToString(f.Code)), zap.String("reason", aws.ToString(f.Message)))
	}
}

// handOverDue returns the running messages received at least after ago and not
// yet handed on, and every running message (whose leases, if any, may be due a
// renewal).
func (e *extender) handOverDue(now time.Time, after time.Duration) (due, running []*inflight) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for f := range e.inflight {
		if f.lost || f.ctx == nil {
			continue
		}
		running = append(running, f)
		if !f.handedOn && now.Sub(f.hand.received) >= after {
			due = append(due, f)
		}
	}
	return due, running
}

// handedOn records that f was deleted and continued: its visibility is no longer
// kept, and no deadline of it passes.
func (e *extender) handedOn(f *inflight) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f.handedOn = true
}

// loseLease stops f's handler: another worker holds its job's lease. Its message
// is then neither deleted nor released.
func (e *extender) loseLease(f *inflight) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f.lost = true
	if f.ctx != nil {
		f.ctx.cancel()
	}
}

// visibilityFor is the visibility a renewal at now asks for f: the queue's
// timeout, but with a hand-over never past SQS's cap from f's receipt, which SQS
// would refuse (the hand-over comes before).
func (e *extender) visibilityFor(f *inflight, now time.Time) time.Duration {
	if e.cfg.HandOver == nil {
		return e.cfg.VisibilityTimeout
	}
	left := (e.cfg.HandOver.Cap - now.Sub(f.hand.received)).Truncate(time.Second)
	return max(min(e.cfg.VisibilityTimeout, left), 0)
}

// VisibilityAPI is the one call ChangeVisibility makes; *sqs.Client satisfies it.
type VisibilityAPI interface {
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// VisibilityBatch is one ChangeMessageVisibilityBatch call of ChangeVisibility.
type VisibilityBatch struct {
	Receipts []string
	Failed   []types.BatchResultErrorEntry // the entries SQS refused
	Err      error                         // the call failed whole: every receipt is unchanged
}

// ChangeVisibility sets the visibility timeout of every receipt to timeout seconds
// (0: visible now) in ChangeMessageVisibilityBatch calls of up to 10, SQS's limit,
// one after another, and hands each call's result to done. The one home of a
// batched release: the Poller's after a stop, the dlq reads'.
func ChangeVisibility(ctx context.Context, client VisibilityAPI, queueURL string, receipts []string, timeout int32, done func(VisibilityBatch)) {
	for start := 0; start < len(receipts); start += maxBatch {
		batch := receipts[start:min(start+maxBatch, len(receipts))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(batch))
		for i := range batch {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: &batchIDs[i], ReceiptHandle: &batch[i], VisibilityTimeout: timeout}
		}
		out, err := client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		result := VisibilityBatch{Receipts: batch, Err: err}
		if err == nil {
			result.Failed = out.Failed
		}
		done(result)
	}
}

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
	deadline time.Time          // when its visibility ends unless renewed
	cancel   context.CancelFunc // its handler's; nil while it waits for one
	lost     bool               // renewal failed past the deadline: the handler, if any, was cancelled
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
	e.mu.Lock()
	for i := range held {
		e.inflight[&held[i]] = struct{}{}
	}
	e.mu.Unlock()
	return held
}

// start gives f its handler's cancel; it reports whether f's visibility was lost
// while it waited, in which case its handler must not run.
func (e *extender) start(f *inflight, cancel context.CancelFunc) (lost bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f.cancel = cancel
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
		if f.cancel != nil {
			f.cancel()
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
		if f.lost {
			continue
		}
		if now.After(f.deadline) {
			f.lost = true
			if f.cancel != nil {
				f.cancel()
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
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(batch))
	for i, f := range batch {
		entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(f.receipt),
			VisibilityTimeout: int32(e.cfg.VisibilityTimeout / time.Second),
		}
	}
	sent := time.Now()
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
			batch[i].deadline = sent.Add(e.cfg.VisibilityTimeout)
			e.metrics.visibility.WithLabelValues(e.cfg.Queue, "extend", "ok").Inc()
		}
	}
	for _, f := range out.Failed {
		e.metrics.visibility.WithLabelValues(e.cfg.Queue, "extend", "error").Inc()
		e.log.Warn("extend visibility entry failed", zap.String("code", aws.ToString(f.Code)), zap.String("reason", aws.ToString(f.Message)))
	}
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
		for i, r := range batch {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r), VisibilityTimeout: timeout}
		}
		out, err := client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		result := VisibilityBatch{Receipts: batch, Err: err}
		if err == nil {
			result.Failed = out.Failed
		}
		done(result)
	}
}

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

const (
	maxBatch        = 10          // SQS batch limit
	deleteMaxDelay  = time.Second // how long a delete may wait for company
	deleteAttempts  = 3           // per entry, for entries that fail in a batch
	deletesInFlight = 4           // DeleteMessageBatch calls of one queue at once
)

// deleter batches deletes: up to 10 receipts per DeleteMessageBatch, sent when 10
// are pending or deleteMaxDelay after the first. A handled message waits at most
// that long, still invisible, so a queue that trickles (a few messages a second, as
// a Step Functions Map makes) still shares its deletes; a stop flushes at once.
// Up to deletesInFlight batches are sent at once, each on a goroutine of its own:
// one call at a time would bound a busy queue to one batch per round trip, and the
// handlers waiting in add would hold their slots. Its run goroutine owns the
// pending list; add is safe from any goroutine.
type deleter struct {
	cfg     Config
	client  sqsAPI
	log     *zap.Logger
	metrics *Metrics
	hot     queueMetrics
	in      chan string
	done    chan struct{} // closed when run returns
}

func newDeleter(cfg Config, client sqsAPI, log *zap.Logger, m *Metrics) *deleter {
	return &deleter{cfg: cfg, client: client, log: log, metrics: m, hot: m.forQueue(cfg.Queue), in: make(chan string, cfg.Concurrency), done: make(chan struct{})}
}

// add queues a receipt handle for deletion. It never blocks for long: run drains
// in, and once run has returned, add drops the receipt (the message comes back).
func (d *deleter) add(receipt string) {
	select {
	case d.in <- receipt:
	case <-d.done:
	}
}

// run batches until ctx is done, then flushes what is pending and returns. Every
// DeleteMessageBatch runs on afterCtx (which a stop does not cancel, but which ends
// when the stop's flush budget is spent) with afterStopTimeout. Callers stop adding
// before they cancel ctx.
func (d *deleter) run(ctx, afterCtx context.Context) {
	defer close(d.done)
	var sending sync.WaitGroup
	defer sending.Wait()
	slots := make(chan struct{}, deletesInFlight)
	pending := make([]string, 0, maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		slots <- struct{}{} // backpressure: at most deletesInFlight calls
		batch := pending
		pending = make([]string, 0, maxBatch)
		sending.Go(func() {
			defer func() { <-slots }()
			fctx, cancel := context.WithTimeout(afterCtx, afterStopTimeout)
			defer cancel()
			d.delete(fctx, batch)
		})
	}
	for {
		select {
		case r := <-d.in:
			pending = append(pending, r)
			if len(pending) == 1 {
				timer.Reset(deleteMaxDelay)
			}
			if len(pending) == maxBatch {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		case <-ctx.Done():
			timer.Stop()
			for {
				select {
				case r := <-d.in:
					pending = append(pending, r)
					continue
				default:
				}
				break
			}
			// The last batches go out together: the stop's budget is short.
			fctx, cancel := context.WithTimeout(afterCtx, afterStopTimeout)
			defer cancel()
			var wg sync.WaitGroup
			for start := 0; start < len(pending); start += maxBatch {
				batch := pending[start:min(start+maxBatch, len(pending))]
				wg.Go(func() { d.delete(fctx, batch) })
			}
			wg.Wait()
			return
		}
	}
}

// delete sends one batch and retries the entries that failed, unless their receipt
// is no longer valid (the message will come back; handlers tolerate redelivery).
func (d *deleter) delete(ctx context.Context, receipts []string) {
	todo := make([]types.DeleteMessageBatchRequestEntry, len(receipts))
	for i, r := range receipts {
		todo[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r)}
	}
	for attempt := 1; len(todo) > 0 && attempt <= deleteAttempts; attempt++ {
		d.hot.deleteReqs.Inc()
		out, err := d.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(d.cfg.QueueURL), Entries: todo})
		if err != nil {
			d.log.Error("delete batch failed", zap.Int("attempt", attempt), zap.Int("batch_size", len(todo)), zap.Error(err))
			if !sleep(ctx, Backoff(attempt, 100*time.Millisecond, time.Second)) {
				break
			}
			continue
		}
		d.hot.deletesOK.Add(float64(len(out.Successful)))
		if len(out.Successful) == len(todo) {
			todo = nil
			break
		}
		// Retry what neither succeeded nor failed for good.
		settled := make(map[string]bool, len(todo))
		for _, ok := range out.Successful {
			settled[aws.ToString(ok.Id)] = true
		}
		for _, f := range out.Failed {
			d.log.Warn("delete entry failed", zap.String("code", aws.ToString(f.Code)), zap.String("reason", aws.ToString(f.Message)), zap.Bool("sender_fault", f.SenderFault))
			// A sender fault (e.g. ReceiptHandleIsInvalid after the visibility ran out)
			// does not get better with a retry; the message will come back.
			if f.SenderFault {
				settled[aws.ToString(f.Id)] = true
				d.metrics.deletes.WithLabelValues(d.cfg.Queue, "error").Inc()
			}
		}
		var retry []types.DeleteMessageBatchRequestEntry
		for _, e := range todo {
			if !settled[aws.ToString(e.Id)] {
				retry = append(retry, e)
			}
		}
		todo = retry
	}
	if len(todo) > 0 {
		d.metrics.deletes.WithLabelValues(d.cfg.Queue, "error").Add(float64(len(todo)))
		d.log.Error("gave up deleting; the messages will be redelivered", zap.Int("count", len(todo)))
	}
}

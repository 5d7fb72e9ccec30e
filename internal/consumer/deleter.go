package consumer

import (
	"context"
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

// batchIDs are the entry ids of a batch call (at most maxBatch entries, SQS's
// limit), by position; read only.
var batchIDs = [maxBatch]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// deleter batches deletes: up to 10 receipts per DeleteMessageBatch, sent when 10
// are pending or deleteMaxDelay after the first. A handled message waits at most
// that long, still invisible, so a queue that trickles (a few messages a second, as
// a Step Functions Map makes) still shares its deletes; a stop flushes at once.
// Up to deletesInFlight batches are sent at once, by as many sender goroutines:
// one call at a time would bound a busy queue to one batch per round trip. The
// handler whose receipt fills a batch hands it over, waiting while every sender is
// busy: backpressure on the receives, through the slot that handler holds. No
// goroutine is woken per message. add is safe from any goroutine; mu guards
// pending and closed.
type deleter struct {
	cfg     Config
	client  sqsAPI
	log     *zap.Logger
	metrics *Metrics
	hot     queueMetrics

	// batches feeds the deletesInFlight sender goroutines run starts; they live as
	// long as the deleter, so a call's deep SDK stack is grown once, not per batch.
	batches chan []string
	sending sync.WaitGroup // batches taken and not yet sent

	mu      sync.Mutex
	pending []string
	timer   *time.Timer // flushes a partial batch deleteMaxDelay after its first
	closed  bool
}

func newDeleter(cfg Config, client sqsAPI, log *zap.Logger, m *Metrics) *deleter {
	d := &deleter{cfg: cfg, client: client, log: log, metrics: m, hot: m.forQueue(cfg.Queue), batches: make(chan []string)}
	d.timer = time.AfterFunc(time.Hour, d.flushPartial)
	d.timer.Stop()
	return d
}

// add queues a receipt handle for deletion. Once the deleter has stopped, add drops
// the receipt: the message comes back after its visibility timeout.
func (d *deleter) add(receipt string) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.pending = append(d.pending, receipt)
	var batch []string
	switch len(d.pending) {
	case maxBatch:
		d.timer.Stop()
		batch, d.pending = d.pending, make([]string, 0, maxBatch)
		d.sending.Add(1) // under mu: run's Wait, after closed is set, sees every call
	case 1:
		d.timer.Reset(deleteMaxDelay)
	}
	d.mu.Unlock()
	if batch != nil {
		d.send(batch)
	}
}

// flushPartial sends what is pending: the timer's function.
func (d *deleter) flushPartial() {
	d.mu.Lock()
	if d.closed || len(d.pending) == 0 {
		d.mu.Unlock()
		return
	}
	batch := d.pending
	d.pending = make([]string, 0, maxBatch)
	d.sending.Add(1)
	d.mu.Unlock()
	d.send(batch)
}

// send hands a batch to a sender goroutine, waiting while all deletesInFlight are
// busy. The caller has counted it in sending.
func (d *deleter) send(batch []string) { d.batches <- batch }

// run starts the senders, waits until ctx is done, then sends what is pending, all
// batches at once, and returns when every call has ended. Every DeleteMessageBatch
// runs on flushCtx (the stop budget's: a stop does not cancel it, the budget's end
// does) with afterStopTimeout. Callers stop adding before they cancel ctx.
func (d *deleter) run(ctx, flushCtx context.Context) {
	var senders sync.WaitGroup
	for range deletesInFlight {
		senders.Go(func() {
			for batch := range d.batches {
				fctx, cancel := context.WithTimeout(flushCtx, afterStopTimeout)
				d.delete(fctx, batch)
				cancel()
				d.sending.Done()
			}
		})
	}
	<-ctx.Done()
	d.mu.Lock()
	d.closed = true
	d.timer.Stop()
	pending := d.pending
	d.pending = nil
	d.mu.Unlock()
	// The last batches go out together: the stop's budget is short.
	for start := 0; start < len(pending); start += maxBatch {
		batch := pending[start:min(start+maxBatch, len(pending))]
		d.sending.Go(func() {
			fctx, cancel := context.WithTimeout(flushCtx, afterStopTimeout)
			defer cancel()
			d.delete(fctx, batch)
		})
	}
	d.sending.Wait() // no batch is taken after closed: nothing more comes to the senders
	close(d.batches)
	senders.Wait()
}

// delete sends one batch and retries the entries that failed, unless their receipt
// is no longer valid (the message will come back; handlers tolerate redelivery).
func (d *deleter) delete(ctx context.Context, receipts []string) {
	// The entries point into batchIDs and into receipts, which this call owns: no
	// string is copied to the heap per message (as the raw loop of BENCHMARKS.md).
	todo := make([]types.DeleteMessageBatchRequestEntry, len(receipts))
	for i := range receipts {
		todo[i] = types.DeleteMessageBatchRequestEntry{Id: &batchIDs[i], ReceiptHandle: &receipts[i]}
	}
	for attempt := 1; len(todo) > 0 && attempt <= deleteAttempts; attempt++ {
		d.hot.deleteReqs.Inc()
		out, err := d.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(d.cfg.QueueURL), Entries: todo})
		if err != nil {
			d.log.Error("delete batch failed", zap.Int("attempt", attempt), zap.Int("batch_size", len(todo)), zap.Error(err))
			if !Sleep(ctx, Backoff(attempt, 100*time.Millisecond, time.Second)) {
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

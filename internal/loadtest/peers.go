package loadtest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// RawSQS is what the raw loop calls.
type RawSQS interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// RawLoop is the hand-tuned loop the consumer is measured against (issue 13): each
// of Goroutines receives up to 10 messages with a Wait long poll, runs handle on
// each in turn, and deletes those handled in one DeleteMessageBatch. No concurrency
// bound, visibility extension, DLQ copy or metrics.
type RawLoop struct {
	URL        string
	Goroutines int
	Wait       time.Duration
}

// Run loops until ctx is cancelled.
func (l RawLoop) Run(ctx context.Context, client RawSQS, handle func(types.Message) error) {
	var wg sync.WaitGroup
	for range l.Goroutines {
		wg.Go(func() {
			entries := make([]types.DeleteMessageBatchRequestEntry, 0, 10)
			ids := [...]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
			for ctx.Err() == nil {
				out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
					QueueUrl: aws.String(l.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: int32(l.Wait / time.Second),
				})
				if err != nil || len(out.Messages) == 0 {
					continue
				}
				entries = entries[:0]
				for i, m := range out.Messages {
					if handle(m) == nil {
						entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: &ids[i], ReceiptHandle: m.ReceiptHandle})
					}
				}
				if len(entries) == 0 {
					continue
				}
				_, _ = client.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(l.URL), Entries: entries})
			}
		})
	}
	wg.Wait()
}

// DeleteCounter wraps an SQS client and counts the messages its DeleteMessageBatch
// calls deleted, closing Done when Target is reached: the end of a drain, whichever
// consumer deletes.
type DeleteCounter struct {
	*sqs.Client
	Target int64
	Done   chan struct{}
	n      atomic.Int64
	// Failed counts the entries a DeleteMessageBatch answered as failed: each keeps
	// a drain waiting for a visibility timeout.
	Failed atomic.Int64
}

// NewDeleteCounter counts deletes through client until target.
func NewDeleteCounter(client *sqs.Client, target int64) *DeleteCounter {
	return &DeleteCounter{Client: client, Target: target, Done: make(chan struct{})}
}

// Add records n deleted messages.
func (d *DeleteCounter) Add(n int) {
	total := d.n.Add(int64(n))
	if total >= d.Target && total-int64(n) < d.Target {
		close(d.Done)
	}
}

// DeleteMessageBatch deletes and counts.
func (d *DeleteCounter) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	out, err := d.Client.DeleteMessageBatch(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	d.Failed.Add(int64(len(out.Failed)))
	d.Add(len(out.Successful))
	return out, err
}

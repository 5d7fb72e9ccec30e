package loadtest

import (
	"context"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// NaiveSQS is what the naive consumer calls.
type NaiveSQS interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

// NaiveQueue is one queue the naive consumer reads.
type NaiveQueue struct {
	Name, URL   string
	Concurrency int           // goroutines, each with its own receive loop
	Wait        time.Duration // long-poll wait of each receive
}

// RunNaive is the consumer the worker is compared with: the shape of a hand-written
// loop, or of an SQS-triggered Lambda with batch size 1. Each of Concurrency
// goroutines receives one message, handles it and deletes it when the handler
// returns nil. No batching, no visibility extension, no DLQ copy. It returns when
// ctx is cancelled and every goroutine has stopped.
func RunNaive(ctx context.Context, client NaiveSQS, q NaiveQueue, h consumer.Handler) {
	done := make(chan struct{})
	for range q.Concurrency {
		go func() {
			defer func() { done <- struct{}{} }()
			for ctx.Err() == nil {
				naiveOnce(ctx, client, q, h)
			}
		}()
	}
	for range q.Concurrency {
		<-done
	}
}

func naiveOnce(ctx context.Context, client NaiveSQS, q NaiveQueue, h consumer.Handler) {
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(q.URL), MaxNumberOfMessages: 1, WaitTimeSeconds: int32(q.Wait / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	})
	if err != nil || len(out.Messages) == 0 {
		return
	}
	m := out.Messages[0]
	receives, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	msg := consumer.Message{ID: aws.ToString(m.MessageId), Queue: q.Name, Body: aws.ToString(m.Body), ReceiveCount: receives}
	if h.Handle(ctx, msg) == nil {
		_, _ = client.DeleteMessage(context.WithoutCancel(ctx), &sqs.DeleteMessageInput{QueueUrl: aws.String(q.URL), ReceiptHandle: m.ReceiptHandle})
	}
}

package consumer

import (
	"context"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// TestChangeVisibilityInBatchesOfTen releases 23 received messages and a receipt
// SQS does not know, on the emulator: three calls of at most 10 (SQS's limit), the
// unknown receipt among the Failed entries, every message visible again.
func TestChangeVisibilityInBatchesOfTen(t *testing.T) {
	t.Parallel()
	client := sqs.NewFromConfig(awstest.Config(t))
	ctx := context.Background()
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(awstest.Stack(t))})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}) })
	url := aws.ToString(q.QueueUrl)
	const n = 23
	for i := range n {
		_, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(strconv.Itoa(i))})
		require.NoError(t, err)
	}
	receive := func() []string {
		var receipts []string
		for len(receipts) < n {
			out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 300, WaitTimeSeconds: 1})
			require.NoError(t, err)
			if len(out.Messages) == 0 {
				break
			}
			for _, m := range out.Messages {
				receipts = append(receipts, aws.ToString(m.ReceiptHandle))
			}
		}
		return receipts
	}
	receipts := receive()
	require.Len(t, receipts, n)

	var sizes []int
	failed := 0
	ChangeVisibility(ctx, client, url, append(receipts, "not-a-receipt"), 0, func(b VisibilityBatch) {
		require.NoError(t, b.Err)
		sizes = append(sizes, len(b.Receipts))
		failed += len(b.Failed)
	})
	require.Equal(t, []int{10, 10, 4}, sizes)
	require.Equal(t, 1, failed, "the unknown receipt, and only it")
	require.Len(t, receive(), n, "every message is visible again")
}

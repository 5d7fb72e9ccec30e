package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"path"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/taskbridge/taskbridge/internal/awslimit"
)

// MaxMessageBytes reads a queue's MaximumMessageSize: the largest message, in
// bytes, that SQS lets into it.
func MaxMessageBytes(ctx context.Context, client sqsAPI, url string) (int64, error) {
	n, err := QueueCounts(ctx, client, url, sqstypes.QueueAttributeNameMaximumMessageSize)
	if err != nil {
		return 0, err
	}
	return n[0], nil
}

// SmallQueue says what a queue of maxBytes under SQS's limit (awslimit.SQSMessageBytes)
// loses and how to raise it, naming the queue by its SQS name (the last part of
// its URL); "" when the queue takes the limit. A queue made before SQS's raise, or by
// terraform with a hashicorp/aws provider before 6.8.0, takes 256 KiB: an event
// larger than that cannot be delivered to it (EventBridge's delivery fails into the
// events DLQ), and a message larger than a DLQ's size cannot be moved to that DLQ.
func SmallQueue(queueURL string, maxBytes int64) string {
	if maxBytes >= awslimit.SQSMessageBytes {
		return ""
	}
	return fmt.Sprintf("queue %s takes messages of at most %d bytes (%d KiB), less than the %d the worker takes and sends: a larger event or message cannot reach it; "+
		"raise it with `aws sqs set-queue-attributes --queue-url %s --attributes MaximumMessageSize=%d`, `worker bootstrap`, or terraform's raise_queue_size_with_aws_cli",
		QueueName(queueURL), maxBytes, maxBytes>>10, awslimit.SQSMessageBytes, queueURL, awslimit.SQSMessageBytes)
}

// QueueName is the SQS name of the queue at queueURL: its URL's last path element.
func QueueName(queueURL string) string {
	if u, err := url.Parse(queueURL); err == nil && u.Path != "" {
		return path.Base(u.Path)
	}
	return queueURL
}

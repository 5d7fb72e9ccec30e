package telemetry

import (
	"context"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// QueueCounts reads the named counts of a queue (ApproximateNumberOfMessages,
// ...NotVisible, ...Delayed, or its MaximumMessageSize) in one GetQueueAttributes
// call, in the order asked. An answer without one of them, or with one that is not a
// count, is an error: an unknown depth is never read as 0. The DLQ gauge, `worker
// status` and `worker dlq list` all read depths here.
func QueueCounts(ctx context.Context, client sqsAPI, url string, names ...sqstypes.QueueAttributeName) ([]int64, error) {
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
	if err != nil {
		return nil, fmt.Errorf("get attributes of %s: %w", url, err)
	}
	counts := make([]int64, len(names))
	for i, name := range names {
		v, ok := out.Attributes[string(name)]
		if !ok {
			return nil, fmt.Errorf("get attributes of %s: answer has no %s", url, name)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("get attributes of %s: %s is %q, not a count", url, name, v)
		}
		counts[i] = n
	}
	return counts, nil
}

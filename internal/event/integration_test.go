package event

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// TestIntegrationPublishedEventsParseBackFromTheQueue publishes through a real bus and
// rule to a queue and parses what arrives: the publisher and Parse agree on the
// envelope, and batches over ten entries all arrive.
func TestIntegrationPublishedEventsParseBackFromTheQueue(t *testing.T) {
	cfg := awstest.Config(t)
	ctx := context.Background()
	name := awstest.Stack(t)
	eb, q := eventbridge.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	_, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(name)})
	require.NoError(t, err)
	qu, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	require.NoError(t, err)
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: qu.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	require.NoError(t, err)
	_, err = eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventBusName: aws.String(name), EventPattern: aws.String(`{"source":["taskbridge.worker"]}`)})
	require.NoError(t, err)
	_, err = eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), EventBusName: aws.String(name),
		Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String(attrs.Attributes["QueueArn"])}}})
	require.NoError(t, err)

	p := NewPublisher(PublisherConfig{EventBus: name, Source: "taskbridge.worker"}, eb, zaptest.NewLogger(t), prometheus.NewRegistry())
	const n = 12 // two PutEvents calls
	var entries []Entry
	for i := range n {
		entries = append(entries, Entry{DetailType: "etl-success", Detail: map[string]any{"n": i, "name": "Zoë \"quoted\" / ✓"}})
	}
	require.NoError(t, p.PublishMany(ctx, entries))

	seen := map[int]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: qu.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		require.NoError(t, err)
		for _, msg := range out.Messages {
			env, err := Parse([]byte(aws.ToString(msg.Body)))
			require.NoError(t, err)
			require.Equal(t, "etl-success", env.DetailType)
			require.Equal(t, "taskbridge.worker", env.Source)
			var d struct {
				N    int    `json:"n"`
				Name string `json:"name"`
			}
			require.NoError(t, json.Unmarshal(env.Detail, &d))
			require.Equal(t, "Zoë \"quoted\" / ✓", d.Name)
			seen[d.N] = true // a redelivery (moto can lose a delete) is harmless here
			_, err = q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: qu.QueueUrl, ReceiptHandle: msg.ReceiptHandle})
			require.NoError(t, err)
		}
	}
	require.Len(t, seen, n, fmt.Sprintf("events received: %v", seen))
}

package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/taskbridge/taskbridge/internal/topology"
)

// eventsDLQ is the stack's dead-letter queue of the rule targets.
type eventsDLQ struct{ url, arn string }

// createEventsDLQ creates the queue where EventBridge puts the events it could not
// deliver to a target (after the target's retry policy), kept 14 days like every DLQ.
func (b *Bootstrapper) createEventsDLQ(ctx context.Context) (eventsDLQ, error) {
	url, err := b.createQueue(ctx, b.stack.Names.EventsDLQ(), map[string]string{
		"MessageRetentionPeriod": strconv.Itoa(14 * 24 * 3600),
	})
	if err != nil {
		return eventsDLQ{}, err
	}
	arn, err := b.queueARN(ctx, url)
	if err != nil {
		return eventsDLQ{}, err
	}
	return eventsDLQ{url: url, arn: arn}, nil
}

// allowRules sets the events DLQ's policy: EventBridge may send to it from the
// stack's rules, and no one else through the policy.
func (b *Bootstrapper) allowRules(ctx context.Context, dlq eventsDLQ, ruleARNs []string) error {
	policy, _ := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []map[string]any{{
			"Sid": "AllowTheStacksRules", "Effect": "Allow", "Principal": map[string]string{"Service": "events.amazonaws.com"},
			"Action": "sqs:SendMessage", "Resource": dlq.arn,
			"Condition": map[string]any{"ArnEquals": map[string][]string{"aws:SourceArn": ruleARNs}},
		}},
	})
	if _, err := b.c.SQS.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(dlq.url), Attributes: map[string]string{"Policy": string(policy)}}); err != nil {
		return fmt.Errorf("set policy of queue %s: %w", b.stack.Names.EventsDLQ(), err)
	}
	return nil
}

// target is the rule target that feeds queue q: its retry policy always explicit
// (EventBridge's implicit one is a day of retries, then the event is dropped), its
// dead-letter queue the stack's events DLQ when dlqARN is set.
func (b *Bootstrapper) target(q topology.Queue, queueARN, dlqARN string) ebtypes.Target {
	attempts, age := b.topo.Retry()
	t := ebtypes.Target{
		Id: aws.String("sqs-" + q.Name), Arn: aws.String(queueARN),
		RetryPolicy: &ebtypes.RetryPolicy{MaximumRetryAttempts: aws.Int32(int32(attempts)), MaximumEventAgeInSeconds: aws.Int32(int32(age))},
	}
	if dlqARN != "" {
		t.DeadLetterConfig = &ebtypes.DeadLetterConfig{Arn: aws.String(dlqARN)}
	}
	return t
}

// SameTarget reports whether a target read back (ListTargetsByRule) is want: the same
// id, queue, retry policy and dead-letter queue.
func SameTarget(have, want ebtypes.Target) bool {
	if aws.ToString(have.Id) != aws.ToString(want.Id) || aws.ToString(have.Arn) != aws.ToString(want.Arn) {
		return false
	}
	dlq := func(t ebtypes.Target) string {
		if t.DeadLetterConfig == nil {
			return ""
		}
		return aws.ToString(t.DeadLetterConfig.Arn)
	}
	retry := func(t ebtypes.Target) [2]int32 {
		if t.RetryPolicy == nil {
			return [2]int32{-1, -1}
		}
		return [2]int32{aws.ToInt32(t.RetryPolicy.MaximumRetryAttempts), aws.ToInt32(t.RetryPolicy.MaximumEventAgeInSeconds)}
	}
	return dlq(have) == dlq(want) && retry(have) == retry(want)
}

package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// TestE2EUndeliverableEventRedriven: every rule target carries the stack's events
// DLQ and an explicit retry policy (read back); an event EventBridge could not
// deliver, in its DLQ format (the event as body, ERROR_CODE, ERROR_MESSAGE, RULE_ARN,
// TARGET_ARN), is listed with its rule, makes status fail, and `dlq redrive --queue
// eventbridge` puts it back on its bus, from where its task completes; a second one
// `--to queue` goes into its rule's queue, where the worker completes it.
func TestE2EUndeliverableEventRedriven(t *testing.T) {
	st := newStack(t, "WORKER_TOPOLOGY="+dlqTopology(t))
	ctx := context.Background()
	require.NotEmpty(t, st.out.EventsDLQ, "bootstrap made the events DLQ")
	stack := st.out.EventBus // the bus is named after the stack, as its rules are
	eb := eventbridge.NewFromConfig(awstest.Config(t))
	attrs, err := st.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(st.out.EventsDLQ), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	require.NoError(t, err)
	dlqARN := attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	rules := map[string]string{} // queue → rule ARN
	for _, q := range []string{"work", "flaky"} {
		targets, err := eb.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(stack + "-" + q), EventBusName: aws.String(stack)})
		require.NoError(t, err)
		require.Len(t, targets.Targets, 1)
		tg := targets.Targets[0]
		require.NotNil(t, tg.DeadLetterConfig, "target of %s", q)
		require.Equal(t, dlqARN, aws.ToString(tg.DeadLetterConfig.Arn))
		require.NotNil(t, tg.RetryPolicy, "target of %s", q)
		require.Equal(t, int32(topology.DefaultMaxEventAgeSeconds), aws.ToInt32(tg.RetryPolicy.MaximumEventAgeInSeconds))
		require.Equal(t, int32(topology.DefaultRetryAttempts), aws.ToInt32(tg.RetryPolicy.MaximumRetryAttempts))
		rule, err := eb.DescribeRule(ctx, &eventbridge.DescribeRuleInput{Name: aws.String(stack + "-" + q), EventBusName: aws.String(stack)})
		require.NoError(t, err)
		rules[q] = aws.ToString(rule.Arn)
	}

	// No worker runs: the execution's event waits in the work queue. Take it out and
	// put it in the events DLQ as EventBridge does when the queue refuses it.
	queueAttrs, err := st.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(st.out.Queues["work"]), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	require.NoError(t, err)
	str := func(v string) sqstypes.MessageAttributeValue {
		return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	deadLetter := func() {
		var event string
		eventually(t, time.Minute, "the execution's event reaches its queue", func() bool {
			out, err := st.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(st.out.Queues["work"]), WaitTimeSeconds: 1})
			require.NoError(t, err)
			if len(out.Messages) == 0 {
				return false
			}
			event = aws.ToString(out.Messages[0].Body)
			_, err = st.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(st.out.Queues["work"]), ReceiptHandle: out.Messages[0].ReceiptHandle})
			require.NoError(t, err)
			return true
		})
		_, err = st.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(st.out.EventsDLQ), MessageBody: aws.String(event),
			MessageAttributes: map[string]sqstypes.MessageAttributeValue{
				"ERROR_CODE":    str("NO_PERMISSIONS"),
				"ERROR_MESSAGE": str("User: arn:aws:sts::123456789012:assumed-role/events is not authorized to perform: sqs:SendMessage on resource"),
				"RULE_ARN":      str(rules["work"]),
				"TARGET_ARN":    str(queueAttrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
			}})
		require.NoError(t, err)
	}
	exec := st.start("work", `{"n": 7}`)
	deadLetter()

	code, text := st.exitCode("status")
	require.Equal(t, 1, code, "status fails while the events DLQ holds an event:\n%s", text)
	require.Contains(t, text, "eventbridge (events)")
	var listed struct {
		Queues []struct {
			Queue  string
			Groups []struct {
				Reason   string
				Messages []struct {
					Rule         string
					TargetARN    string `json:"targetArn"`
					ExecutionARN string `json:"executionArn"`
					ErrorMessage string `json:"errorMessage"`
				}
			}
		}
	}
	out := st.cli("dlq", "list", "--queue", "eventbridge", "--output", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Len(t, listed.Queues, 1, out)
	require.Len(t, listed.Queues[0].Groups, 1, out)
	g := listed.Queues[0].Groups[0]
	require.Equal(t, "NO_PERMISSIONS (rule "+stack+"-work)", g.Reason)
	require.Equal(t, stack+"-work", g.Messages[0].Rule)
	require.Equal(t, exec, g.Messages[0].ExecutionARN)
	require.Contains(t, g.Messages[0].ErrorMessage, "not authorized")
	text = st.cli("dlq", "list")
	t.Logf("worker dlq list:\n%s\nworker dlq show --queue eventbridge:\n%s", text, st.cli("dlq", "show", "--queue", "eventbridge"))
	require.Contains(t, text, "NO_PERMISSIONS (rule "+stack+"-work)", "a plain list shows the events DLQ too")
	text = st.cli("dlq", "list", "--queue", "eventbridge") // as operations.md shows it
	require.Contains(t, text, "NO_PERMISSIONS (rule "+stack+"-work)", text)

	w := st.startWorker()
	var sum struct{ Moved, Skipped, Left int }
	out = st.cli("dlq", "redrive", "--queue", "eventbridge", "--rate", "5", "--output", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &sum), out)
	require.Equal(t, struct{ Moved, Skipped, Left int }{1, 0, 0}, sum, out)
	d := st.waitExecution(exec, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	require.True(t, strings.Contains(aws.ToString(d.Output), `"n":7`) || strings.Contains(aws.ToString(d.Output), `"n": 7`), aws.ToString(d.Output))
	eventually(t, time.Minute, "status says all clear", func() bool { c, _ := st.exitCode("status"); return c == 0 })

	// Again, into its rule's queue instead of onto its bus (`--to queue`), with the
	// worker stopped so that the event waits where the redrive put it.
	w.signal(syscall.SIGTERM)
	require.Zero(t, w.waitExit(time.Minute))
	exec = st.start("work", `{"n": 8}`)
	deadLetter()
	out = st.cli("dlq", "redrive", "--queue", "eventbridge", "--to", "queue") // as operations.md shows it
	require.Regexp(t, `moved 1, skipped 0 \(task closed, or dead-lettered during this redrive\), left 0`, out)
	require.Equal(t, 0, st.queueDepth(st.out.EventsDLQ), "the DLQ gave it up")
	require.Equal(t, 1, st.queueDepth(st.out.Queues["work"]), "the event waits in its rule's queue")
	st.startWorker()
	d = st.waitExecution(exec, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	require.Contains(t, strings.ReplaceAll(aws.ToString(d.Output), " ", ""), `"n":8`)
}

// TestE2EEventsDLQReadableWhileARuleQueueIsMissing: a deleted queue is one reason
// events land in the events DLQ, so `dlq list/show --queue eventbridge` resolve that
// DLQ alone and work while a rule's queue is missing; a plain `dlq list` names the
// missing queue.
func TestE2EEventsDLQReadableWhileARuleQueueIsMissing(t *testing.T) {
	st := newStack(t, "WORKER_TOPOLOGY="+dlqTopology(t))
	ctx := context.Background()
	_, err := st.sqs.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(st.out.Queues["work"])})
	require.NoError(t, err)
	str := func(v string) sqstypes.MessageAttributeValue {
		return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	event := `{"version":"0","id":"e-1","detail-type":"work","source":"dlq.test","account":"123456789012","time":"2026-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{"TaskToken":"t","executionArn":"arn:aws:states:us-east-1:123456789012:execution:x:y"}}`
	_, err = st.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(st.out.EventsDLQ), MessageBody: aws.String(event),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"ERROR_CODE":    str("SQS_QUEUE_DOES_NOT_EXIST"),
			"ERROR_MESSAGE": str("The specified queue does not exist."),
			"RULE_ARN":      str("arn:aws:events:us-east-1:123456789012:rule/" + st.out.EventBus + "/" + st.out.EventBus + "-work"),
			"TARGET_ARN":    str("arn:aws:sqs:us-east-1:123456789012:" + st.out.EventBus + "-work"),
		}})
	require.NoError(t, err)

	out := st.cli("dlq", "list", "--queue", "eventbridge")
	t.Logf("worker dlq list --queue eventbridge:\n%s", out)
	require.Contains(t, out, "SQS_QUEUE_DOES_NOT_EXIST (rule "+st.out.EventBus+"-work)")
	require.Contains(t, st.cli("dlq", "show", "--queue", "eventbridge"), "The specified queue does not exist.")
	code, _, stderr := st.run("dlq", "list")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no queue "+st.out.EventBus+"-work on this endpoint", "a plain list names the missing queue")
}

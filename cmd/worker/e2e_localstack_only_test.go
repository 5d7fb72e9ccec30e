//go:build localstack

package main_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/batch"
)

// What only LocalStack does (no Glue in its community edition, EventBridge rules that
// start state machines): built with -tags localstack, which only make
// test-localstack passes, so these never run, nor skip, on moto.

// requireLocalStack fails a test that depends on LocalStack's own behaviour when
// the emulator under test is another.
func requireLocalStack(t *testing.T, why string) {
	t.Helper()
	if k := awstest.Emulator(); k != awstest.LocalStack {
		t.Fatalf("needs LocalStack (build tag localstack), the emulator is %s: %s", k, why)
	}
}

// TestE2ELocalStackBatchEndsStartFailedWithoutGlue runs the batch as far as LocalStack's
// community edition goes: files land, the batcher writes the manifest, StartJobRun is
// refused (no Glue), and an etl-error with state START_FAILED reaches the bus for the
// flows that chain on it.
func TestE2ELocalStackBatchEndsStartFailedWithoutGlue(t *testing.T) {
	requireLocalStack(t, "moto has Glue, so its runs start")
	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=3s", "WORKER_GLUE_POLL_INTERVAL=1s")
	results := st.subscribeResults()
	w := st.startWorker()
	keys, _ := st.putFiles("noglue", 5)

	got := map[string][]batch.ResultDetail{}
	eventually(t, 2*time.Minute, "an etl-error", func() bool { st.results(results, got); return len(got["etl-error"]) >= 1 })
	require.Empty(t, got["etl-success"])
	d := got["etl-error"][0]
	require.Equal(t, "START_FAILED", d.State)
	require.Equal(t, st.out.GlueJob, d.JobName)
	require.Empty(t, d.JobRunID)
	require.Equal(t, 5, d.FileCount)
	require.NotEmpty(t, d.Error, "the etl-error says why")
	require.True(t, strings.HasPrefix(d.Manifest, "s3://"+st.out.DataBucket+"/manifests/"+d.BatchID), d.Manifest)
	t.Logf("etl-error: %s", d.Error)

	// The manifest of the refused run is written, with every file once.
	ms := st.manifests()
	require.NotEmpty(t, ms)
	requireEachKeyOnce(t, keys, ms[:1])
	require.Contains(t, w.Logs(), "batch not started")
}

// TestE2ELocalStackRuleStartsAStateMachine: an EventBridge rule whose target is a
// state machine (no queue, no worker in between) starts an execution with the event
// as its input. moto records such targets but never starts anything. LocalStack 4.14
// names the execution after the event id, and a target with InputPath, Input or an
// InputTransformer fails to deliver there (its sender reads the id from the
// transformed input: "Failed to deliver to target sfn: 'id'"), so the state machine
// unwraps the detail itself.
func TestE2ELocalStackRuleStartsAStateMachine(t *testing.T) {
	requireLocalStack(t, "moto's EventBridge does not deliver to Step Functions targets")
	st := newStack(t, "WORKER_ROLES=jobs")
	ctx := context.Background()
	eb := eventbridge.NewFromConfig(awstest.Config(t))
	sm, err := st.sfn.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name:       aws.String(st.out.EventBus + "-orders"),
		Definition: aws.String(`{"StartAt":"Unwrap","States":{"Unwrap":{"Type":"Pass","OutputPath":"$.detail","End":true}}}`),
		RoleArn:    aws.String(awstest.RoleARN(t, "e2e")),
	})
	require.NoError(t, err)
	rule := st.out.EventBus + "-orders"
	_, err = eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(rule), EventBusName: aws.String(st.out.EventBus),
		EventPattern: aws.String(`{"source":["e2e.orders"],"detail-type":["cookiesWanted"]}`)})
	require.NoError(t, err)
	_, err = eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(rule), EventBusName: aws.String(st.out.EventBus),
		Targets: []ebtypes.Target{{Id: aws.String("sfn"), Arn: sm.StateMachineArn, RoleArn: aws.String(awstest.RoleARN(t, "e2e"))}}})
	require.NoError(t, err)

	st.putEvent(eb, "e2e.orders", "cookiesWanted", map[string]any{"names": []string{"Ada", "Zoë \"Z\""}})
	var arn string
	eventually(t, time.Minute, "the rule started an execution", func() bool {
		out, err := st.sfn.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: sm.StateMachineArn})
		require.NoError(t, err)
		if len(out.Executions) == 0 {
			return false
		}
		require.Len(t, out.Executions, 1, "one event, one execution")
		arn = aws.ToString(out.Executions[0].ExecutionArn)
		return true
	})
	d := st.waitExecution(arn, time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "error %s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	require.JSONEq(t, `{"names": ["Ada", "Zoë \"Z\""]}`, aws.ToString(d.Output))
	var in struct {
		Source     string `json:"source"`
		DetailType string `json:"detail-type"`
	}
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(d.Input)), &in))
	require.Equal(t, "e2e.orders", in.Source, "the input is the whole event")
	require.Equal(t, "cookiesWanted", in.DetailType)
}

// TestE2ELocalStackFixThenRedriveTheExecution: the operator's loop of issue 29 on
// LocalStack, which was to prove it where moto lacks RedriveExecution. A job fails
// retryably on every receive until its last one fails the task
// (flaky.RetriesExhausted) and its message goes to the DLQ; the cause is fixed (the
// file the job looks for appears), and `dlq redrive --executions` asks Step Functions
// to redrive the execution. LocalStack 4.14.0's community edition does not have the
// call either: it answers HTTP 501 InternalFailure ("The API for service
// stepfunctions is either not included in your current license plan or has not yet
// been emulated by LocalStack."). This pins that answer and what the command does
// with it: says plainly that the endpoint lacks the call, fails, and keeps the dead
// letter and the FAILED execution as they were. When LocalStack grows the call, this
// test fails at its first check: then finish the loop here (the execution SUCCEEDS).
func TestE2ELocalStackFixThenRedriveTheExecution(t *testing.T) {
	requireLocalStack(t, "pins LocalStack's answer to RedriveExecution")
	dir := t.TempDir()
	fixed := filepath.Join(dir, "upstream-is-back")
	job := `cat > /dev/null; if [ -e '` + fixed + `' ]; then echo '{"fixed": true}'; else echo 'upstream 503' >&2; exit 75; fi`
	jobJSON, err := json.Marshal([]string{"sh", "-c", job})
	require.NoError(t, err)
	for name, body := range map[string]string{
		"flaky.asl.json": dlqStep("flaky"),
		"topology.json": `{"source": "dlq.worker", "queues": [
		    {"name": "flaky", "detailTypes": ["flaky"], "exec": {"command": ` + string(jobJSON) + `}, "maxReceiveCount": 2, "visibilityTimeoutSeconds": 5}],
		  "stateMachines": [{"name": "flaky", "definition": "flaky.asl.json"}]}`,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	st := newStack(t, "WORKER_TOPOLOGY="+filepath.Join(dir, "topology.json"))
	w := st.startWorker()
	ctx := context.Background()

	exec := st.start("flaky", `{"order": 42}`)
	d := st.waitExecution(exec, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Equal(t, "flaky.RetriesExhausted", aws.ToString(d.Error), aws.ToString(d.Cause))
	eventually(t, time.Minute, "the dead letter in the DLQ", func() bool { return st.queueDepth(st.out.DLQs["flaky"]) == 1 })
	require.Contains(t, w.Logs(), "upstream 503")

	// Fixed. The dry run finds the execution the worker failed.
	require.NoError(t, os.WriteFile(fixed, nil, 0o644))
	out := st.cli("dlq", "redrive", "--queue", "flaky", "--executions", "--dry-run")
	t.Logf("dlq redrive --executions --dry-run:\n%s", out)
	require.Contains(t, out, "executions would redrive 1 (1 dead letters), skipped 0, left 0")

	// The redrive: LocalStack's exact answer, said plainly, nothing changed.
	code, out, stderr := st.run("dlq", "redrive", "--queue", "flaky", "--executions")
	t.Logf("dlq redrive --executions (exit %d):\n%s%s", code, out, stderr)
	require.Contains(t, out, "StatusCode: 501", "LocalStack 4.14.0 answers 501 (if it redrove, finish the loop here)")
	require.Contains(t, out, "api error InternalFailure: The API for service stepfunctions is either not included in your current license plan or has not yet been emulated by LocalStack.")
	require.Equal(t, 1, code, "a redrive that could not act fails")
	require.Contains(t, stderr, "does not implement Step Functions RedriveExecution")
	require.Contains(t, out, "executions redriven 0 (0 dead letters), skipped 0, left 1")
	require.Equal(t, 1, st.queueDepth(st.out.DLQs["flaky"]), "the dead letter stays")
	d, err = st.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(exec)})
	require.NoError(t, err)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status, "not redriven")
	require.Zero(t, aws.ToInt32(d.RedriveCount))
}

// TestE2ELocalStackUndeliverableEventIsDroppedNotDeadLettered: issue 28's edge for
// real, not a message put in EventBridge's format by hand (that is
// TestE2EUndeliverableEventRedriven, on every emulator). After bootstrap the rule's
// queue is deleted, so the execution's event cannot be delivered. AWS would put it in
// the target's dead-letter queue (the stack's events DLQ, which the target carries:
// read back). LocalStack 4.14.0 does not: its EventBridge stores the target's
// DeadLetterConfig and RetryPolicy but neither retries nor dead-letters; a failed
// delivery is one INFO line in its log ({"ErrorCode": "TargetDeliveryFailure",
// "ErrorMessage": "Failed to deliver to target <id>: <error>"}) and the event is
// gone. This pins that: the events DLQ stays empty, `worker dlq list --queue
// eventbridge` shows depth 0, and the execution waits. When LocalStack grows target
// DLQs, this test fails: then assert that the event lands there and is listed.
//
// No waiting for something not to happen: LocalStack hands a PutEvents' matching
// rules to one thread, in the order they were made, so a probe rule made after the
// stack's, on the same events, has its event only once the stack's target was tried.
func TestE2ELocalStackUndeliverableEventIsDroppedNotDeadLettered(t *testing.T) {
	requireLocalStack(t, "pins what LocalStack's EventBridge does with an undeliverable event")
	st := newStack(t, "WORKER_TOPOLOGY="+dlqTopology(t))
	ctx := context.Background()
	eb := eventbridge.NewFromConfig(awstest.Config(t))
	require.NotEmpty(t, st.out.EventsDLQ, "bootstrap made the events DLQ")
	stack := st.out.EventBus
	arnOf := func(url string) string {
		attrs, err := st.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
		require.NoError(t, err)
		return attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	}
	targets, err := eb.ListTargetsByRule(ctx, &eventbridge.ListTargetsByRuleInput{Rule: aws.String(stack + "-work"), EventBusName: aws.String(stack)})
	require.NoError(t, err)
	require.Len(t, targets.Targets, 1)
	require.NotNil(t, targets.Targets[0].DeadLetterConfig, "the target has its DLQ")
	require.Equal(t, arnOf(st.out.EventsDLQ), aws.ToString(targets.Targets[0].DeadLetterConfig.Arn))
	require.NotNil(t, targets.Targets[0].RetryPolicy)

	// The probe: a second rule on the same events, made after the stack's.
	probe, err := st.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(stack + "-probe")})
	require.NoError(t, err)
	_, err = eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(stack + "-probe"), EventBusName: aws.String(stack), EventPattern: aws.String(`{"detail-type": ["work"]}`)})
	require.NoError(t, err)
	_, err = eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(stack + "-probe"), EventBusName: aws.String(stack),
		Targets: []ebtypes.Target{{Id: aws.String("probe"), Arn: aws.String(arnOf(aws.ToString(probe.QueueUrl)))}}})
	require.NoError(t, err)

	// The rule's queue goes away after bootstrap (a change gone wrong).
	_, err = st.sqs.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(st.out.Queues["work"])})
	require.NoError(t, err)
	logFile := os.Getenv("TASKBRIDGE_TEST_LOCALSTACK_LOG")
	before := len(failedDeliveries(t, logFile))
	exec := st.start("work", `{"n": 9}`)
	var event string
	eventually(t, 2*time.Minute, "the probe has the execution's event", func() bool {
		out, err := st.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: probe.QueueUrl, WaitTimeSeconds: 1})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			return false
		}
		event = aws.ToString(out.Messages[0].Body)
		return true
	})
	require.Contains(t, event, exec, "the execution's event")

	// The stack's target was tried before the probe's, and failed: nothing in the DLQ.
	require.Zero(t, st.queueDepth(st.out.EventsDLQ), "LocalStack 4.14.0 dead-letters nothing (if it does now, assert the dead letter here)")
	var listed struct {
		Queues []struct {
			Queue       string
			Depth, Read int
		}
	}
	out := st.cli("dlq", "list", "--queue", "eventbridge", "--output", "json")
	t.Logf("worker dlq list --queue eventbridge --output json:\n%s", out)
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Len(t, listed.Queues, 1, out)
	require.Zero(t, listed.Queues[0].Depth, out)
	d, err := st.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(exec)})
	require.NoError(t, err)
	require.Equal(t, sfntypes.ExecutionStatusRunning, d.Status, "the execution waits for a task whose event is gone")

	// What LocalStack does instead: one more line in its log (make test-localstack
	// names it), counted from before the execution started.
	if logFile == "" {
		t.Log("TASKBRIDGE_TEST_LOCALSTACK_LOG unset (LocalStack started by hand): its log not checked")
		return
	}
	eventually(t, 30*time.Second, "LocalStack logs the failed delivery", func() bool { return len(failedDeliveries(t, logFile)) > before })
	t.Logf("LocalStack's log: %s", failedDeliveries(t, logFile)[before])
}

// failedDeliveries are the lines of LocalStack's log (at path, "" for none) where its
// EventBridge failed to deliver to a queue that does not exist.
func failedDeliveries(t *testing.T, path string) []string {
	t.Helper()
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var lines []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"ErrorCode": "TargetDeliveryFailure"`) && strings.Contains(line, "Failed to deliver to target") && strings.Contains(line, "NonExistentQueue") {
			lines = append(lines, line)
		}
	}
	return lines
}

//go:build localstack

package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
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

package startjob_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/awslimit"
	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/callback"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/startjob"
)

// TestMain starts moto on first use, stops it, and checks for leaked goroutines.
func TestMain(m *testing.M) { awstest.Main(m) }

// TestSameEventTwiceStartsOneExecutionOnMoto: a Pass state machine on moto; the
// same task delivered twice → one execution whose input is the detail.
func TestSameEventTwiceStartsOneExecutionOnMoto(t *testing.T) {
	client := sfn.NewFromConfig(awstest.Config(t))
	ctx := context.Background()
	name := awstest.Stack(t) + "-start"
	sm, err := client.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name:       aws.String(name),
		Definition: aws.String(`{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}`),
		RoleArn:    aws.String("arn:aws:iam::123456789012:role/x"),
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = client.DeleteStateMachine(context.Background(), &sfn.DeleteStateMachineInput{StateMachineArn: sm.StateMachineArn})
	})

	m := startjob.NewMetrics(prometheus.NewRegistry())
	j, err := startjob.New("next", startjob.Config{StateMachine: "etl2", StateMachineARN: aws.ToString(sm.StateMachineArn)}, client, zaptest.NewLogger(t), m)
	require.NoError(t, err)

	tk := task()
	tk.Token = token
	tk.Detail = json.RawMessage(`{"TaskToken":"` + token + `","batchId":"b-1","fileCount":3,"note":"<a & b>"}`)
	first, err := j.Run(ctx, tk)
	require.NoError(t, err)
	require.True(t, first.(startjob.Output).Started)
	second, err := j.Run(ctx, tk)
	require.NoError(t, err, "a redelivery is done, not an error")
	require.Equal(t, first.(startjob.Output).ExecutionArn, second.(startjob.Output).ExecutionArn)

	list, err := client.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: sm.StateMachineArn})
	require.NoError(t, err)
	require.Len(t, list.Executions, 1, "one event, one execution")
	require.Equal(t, first.(startjob.Output).ExecutionArn, aws.ToString(list.Executions[0].ExecutionArn))
	desc, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: list.Executions[0].ExecutionArn})
	require.NoError(t, err)
	require.JSONEq(t, `{"batchId":"b-1","fileCount":3,"note":"<a & b>"}`, aws.ToString(desc.Input))
	require.NotContains(t, aws.ToString(desc.Input), token)

	// A state machine that does not exist fails at once.
	gone, err := startjob.New("next", startjob.Config{StateMachine: "gone", StateMachineARN: "arn:aws:states:us-east-1:123456789012:stateMachine:" + name + "-gone"}, client, zaptest.NewLogger(t), m)
	require.NoError(t, err)
	_, err = gone.Run(ctx, task())
	kind, _, final := jobs.KindOf(err)
	require.True(t, final, "%v", err)
	require.Equal(t, "StateMachineDoesNotExist", kind)
}

// TestInputOverStepFunctionsLimitIsClaimCheckedOnMoto: an event of 900 KiB (SQS and
// EventBridge take it since 2026-01-29) starts its execution with a claim check of
// the input, stored in the data bucket; a redelivery makes the same pointer and so
// starts nothing more.
func TestInputOverStepFunctionsLimitIsClaimCheckedOnMoto(t *testing.T) {
	cfg := awstest.Config(t)
	client, store := sfn.NewFromConfig(cfg), s3.NewFromConfig(cfg)
	ctx := context.Background()
	name := awstest.Stack(t) + "-big"
	_, err := store.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	require.NoError(t, err)
	sm, err := client.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name:       aws.String(name),
		Definition: aws.String(`{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}`),
		RoleArn:    aws.String("arn:aws:iam::123456789012:role/x"),
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = client.DeleteStateMachine(context.Background(), &sfn.DeleteStateMachineInput{StateMachineArn: sm.StateMachineArn})
	})
	reporter := callback.New(callback.Config{DataBucket: name}, client, store, zaptest.NewLogger(t), callback.NewMetrics(prometheus.NewRegistry()))
	j, err := startjob.New("next", startjob.Config{StateMachine: "etl2", StateMachineARN: aws.ToString(sm.StateMachineArn), FitFunc: reporter.Fit},
		client, zaptest.NewLogger(t), startjob.NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)

	detail, err := json.Marshal(map[string]string{"TaskToken": token, "blob": strings.Repeat("x", 900<<10)})
	require.NoError(t, err)
	tk := task()
	tk.Detail = detail
	first, err := j.Run(ctx, tk)
	require.NoError(t, err)
	second, err := j.Run(ctx, tk)
	require.NoError(t, err)
	require.True(t, first.(startjob.Output).Started)
	require.False(t, second.(startjob.Output).Started, "the redelivery's pointer is the same: the execution is already started")

	desc, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(first.(startjob.Output).ExecutionArn)})
	require.NoError(t, err)
	var pointer struct {
		ClaimCheck string `json:"claimCheck"`
		Size       int    `json:"size"`
	}
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(desc.Input)), &pointer))
	require.LessOrEqual(t, len(aws.ToString(desc.Input)), awslimit.StepFunctionsPayloadBytes)
	bucket, key, ok := strings.Cut(strings.TrimPrefix(pointer.ClaimCheck, "s3://"), "/")
	require.True(t, ok, pointer.ClaimCheck)
	obj, err := store.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(t, err)
	defer obj.Body.Close()
	stored, err := io.ReadAll(obj.Body)
	require.NoError(t, err)
	require.Equal(t, len(stored), pointer.Size)
	require.JSONEq(t, `{"blob":"`+strings.Repeat("x", 900<<10)+`"}`, string(stored), "the whole input, without the token")
}

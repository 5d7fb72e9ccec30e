package startjob_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/awstest"
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

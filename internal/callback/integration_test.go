package callback

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// callbackStack is a bus, a rule to a queue, and a one-step waitForTaskToken state
// machine on the emulator.
type callbackStack struct {
	sfn   *sfn.Client
	sqs   *sqs.Client
	queue string
	sm    string
}

func newCallbackStack(t *testing.T) *callbackStack {
	t.Helper()
	cfg := awstest.Config(t)
	ctx := context.Background()
	name := awstest.Stack(t)
	eb, q, sf := eventbridge.NewFromConfig(cfg), sqs.NewFromConfig(cfg), sfn.NewFromConfig(cfg)
	_, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(name)})
	require.NoError(t, err)
	qu, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	require.NoError(t, err)
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: qu.QueueUrl, AttributeNames: []sqsAttr{"QueueArn"}})
	require.NoError(t, err)
	_, err = eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventBusName: aws.String(name), EventPattern: aws.String(`{"detail-type":["work"]}`)})
	require.NoError(t, err)
	_, err = eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), EventBusName: aws.String(name), Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String(attrs.Attributes["QueueArn"])}}})
	require.NoError(t, err)
	def := fmt.Sprintf(`{"StartAt":"Work","States":{"Work":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents.waitForTaskToken",
		"Parameters":{"Entries":[{"EventBusName":%q,"Source":"test","DetailType":"work","Detail":{"TaskToken.$":"$$.Task.Token"}}]},"HeartbeatSeconds":60,"End":true}}}`, name)
	sm, err := sf.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{Name: aws.String(name), Definition: aws.String(def), RoleArn: aws.String("arn:aws:iam::123456789012:role/x")})
	require.NoError(t, err)
	return &callbackStack{sfn: sf, sqs: q, queue: aws.ToString(qu.QueueUrl), sm: aws.ToString(sm.StateMachineArn)}
}

// start starts an execution and returns its ARN and the token its step put out.
func (s *callbackStack) start(t *testing.T, name string) (string, string) {
	t.Helper()
	ctx := context.Background()
	ex, err := s.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(s.sm), Name: aws.String(name)})
	require.NoError(t, err)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := s.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.queue), WaitTimeSeconds: 1})
		require.NoError(t, err)
		if len(out.Messages) == 1 {
			var env struct {
				Detail struct{ TaskToken string } `json:"detail"`
			}
			require.NoError(t, json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &env))
			return aws.ToString(ex.ExecutionArn), env.Detail.TaskToken
		}
	}
	t.Fatal("no task token arrived")
	return "", ""
}

func (s *callbackStack) wait(t *testing.T, arn string) *sfn.DescribeExecutionOutput {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		d, err := s.sfn.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		require.NoError(t, err)
		if d.Status != sfntypes.ExecutionStatusRunning {
			return d
		}
		time.Sleep(200 * time.Millisecond) // polling the emulator: no signal to wait on
	}
	t.Fatal("execution did not end")
	return nil
}

func TestIntegrationCallbacksAgainstTheEmulator(t *testing.T) {
	st := newCallbackStack(t)
	cfg := awstest.Config(t)
	r := New(Config{DataBucket: "unused"}, sfn.NewFromConfig(cfg), s3.NewFromConfig(cfg), zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	ctx := context.Background()

	arn, token := st.start(t, "ok")
	require.NoError(t, r.Heartbeat(ctx, token))
	require.NoError(t, r.Succeed(ctx, token, []byte(`{"answer":42}`)))
	d := st.wait(t, arn)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status)
	require.JSONEq(t, `{"answer":42}`, aws.ToString(d.Output))
	require.True(t, IsTaskClosed(r.Succeed(ctx, token, []byte(`{}`))), "a second answer finds the task closed")

	arn, token = st.start(t, "fail")
	require.NoError(t, r.Fail(ctx, token, "job.Broken", "it broke"))
	d = st.wait(t, arn)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Equal(t, "job.Broken", aws.ToString(d.Error))
	// moto keeps the cause out of DescribeExecution; the unit tests check what is sent.
}

type sqsAttr = sqstypes.QueueAttributeName

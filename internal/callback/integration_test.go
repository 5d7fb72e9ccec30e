package callback

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
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
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// callbackStack is a bus, a rule to a queue, and a one-step waitForTaskToken state
// machine on the emulator.
type callbackStack struct {
	sfn    *sfn.Client
	sqs    *sqs.Client
	queue  string
	sm     string
	bucket string
}

func newCallbackStack(t *testing.T) *callbackStack {
	return newCallbackStackWith(t, `"HeartbeatSeconds":60,`)
}

// newCallbackStackWith makes the stack with extra fields of the step (step ends
// with a comma).
func newCallbackStackWith(t *testing.T, step string) *callbackStack {
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
		"Parameters":{"Entries":[{"EventBusName":%q,"Source":"test","DetailType":"work","Detail":{"TaskToken.$":"$$.Task.Token"}}]},%s"End":true}}}`, name, step)
	sm, err := sf.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{Name: aws.String(name), Definition: aws.String(def), RoleArn: aws.String(awstest.RoleARN(t, "x"))})
	require.NoError(t, err)
	bucket := name + "-data"
	_, err = s3.NewFromConfig(cfg).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	return &callbackStack{sfn: sf, sqs: q, queue: aws.ToString(qu.QueueUrl), sm: aws.ToString(sm.StateMachineArn), bucket: bucket}
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
			// Deleted, or it comes back after the queue's 30 s visibility timeout and a
			// slow run's next start takes the closed token of an earlier execution.
			_, err = s.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.queue), ReceiptHandle: out.Messages[0].ReceiptHandle})
			require.NoError(t, err)
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
	m := NewMetrics(prometheus.NewRegistry())
	r := New(Config{DataBucket: st.bucket}, sfn.NewFromConfig(cfg), s3.NewFromConfig(cfg), zaptest.NewLogger(t), m)
	ctx := context.Background()

	t.Run("succeed, then the task is closed", func(t *testing.T) {
		arn, token := st.start(t, "ok")
		require.NoError(t, r.Heartbeat(ctx, token))
		_, stop := r.KeepAlive(ctx, token, "", 50*time.Millisecond, nil)
		require.Eventually(t, func() bool {
			return testutil.ToFloat64(m.calls.WithLabelValues("SendTaskHeartbeat", "ok")) >= 3
		}, 10*time.Second, 20*time.Millisecond, "KeepAlive beats while the task is open")
		stop()
		require.NoError(t, r.Succeed(ctx, token, []byte(`{"answer":42}`)))
		d := st.wait(t, arn)
		require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status)
		require.JSONEq(t, `{"answer":42}`, aws.ToString(d.Output))
		require.True(t, IsTaskClosed(r.Succeed(ctx, token, []byte(`{}`))), "a second answer finds the task closed")
		require.True(t, IsTaskClosed(r.Heartbeat(ctx, token)), "so does a heartbeat")
		// (moto 5.2.5 accepts a late SendTaskFailure silently: it looks the token up in
		// finished executions too. AWS answers TaskTimedOut; the unit tests cover it.)
		require.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskSuccess", "ok")))
		require.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskSuccess", "task_closed")))
		require.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskHeartbeat", "task_closed")))

		// A KeepAlive on a closed task hears so (the unit tests show it then ends).
		_, stop = r.KeepAlive(ctx, token, "", 20*time.Millisecond, nil)
		require.Eventually(t, func() bool {
			return testutil.ToFloat64(m.calls.WithLabelValues("SendTaskHeartbeat", "task_closed")) == 2
		}, 10*time.Second, 10*time.Millisecond)
		stop()
	})

	t.Run("fail", func(t *testing.T) {
		arn, token := st.start(t, "fail")
		require.NoError(t, r.Fail(ctx, token, "job.Broken", "it broke"))
		d := st.wait(t, arn)
		require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
		require.Equal(t, "job.Broken", aws.ToString(d.Error))
		// moto 5.2.5 drops the cause of SendTaskFailure (responses.send_task_failure
		// passes only the error on); the unit tests check what is sent.
	})

	t.Run("an output over the limit arrives as a claim check", func(t *testing.T) {
		arn, token := st.start(t, "big")
		big, err := json.Marshal(map[string]string{"blob": strings.Repeat("é", MaxOutputBytes/2)})
		require.NoError(t, err)
		require.NoError(t, r.Succeed(ctx, token, big))
		d := st.wait(t, arn)
		require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status)
		var pointer struct {
			ClaimCheck string `json:"claimCheck"`
			Size       int    `json:"size"`
		}
		require.NoError(t, json.Unmarshal([]byte(aws.ToString(d.Output)), &pointer))
		require.Equal(t, len(big), pointer.Size)
		key, ok := strings.CutPrefix(pointer.ClaimCheck, "s3://"+st.bucket+"/")
		require.True(t, ok, pointer.ClaimCheck)
		obj, err := s3.NewFromConfig(cfg).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(st.bucket), Key: aws.String(key)})
		require.NoError(t, err)
		defer obj.Body.Close()
		stored, err := io.ReadAll(obj.Body)
		require.NoError(t, err)
		require.Equal(t, big, stored)
	})
}

type sqsAttr = sqstypes.QueueAttributeName

// Issue 30: a stopped execution's task is found closed at the next heartbeat, and
// the job's context ends with the reason; a live one's is not.
func TestIntegrationKeepAliveFindsAStoppedExecution(t *testing.T) {
	t.Run("HeartbeatSeconds", func(t *testing.T) { testKeepAliveFindsAStoppedExecution(t, `"HeartbeatSeconds":60,`, true) })
	// moto answers InvalidToken to every heartbeat of such a step's task: the
	// execution, RUNNING, says it is live. moto (5.2.5) never ends such an execution
	// once stopped either (its interpreter waits on the callback with no timeout, and
	// DescribeExecution says RUNNING for good): nothing can see that stop there.
	t.Run("no HeartbeatSeconds", func(t *testing.T) { testKeepAliveFindsAStoppedExecution(t, ``, false) })
}

func testKeepAliveFindsAStoppedExecution(t *testing.T, step string, stopObservable bool) {
	st := newCallbackStackWith(t, step)
	cfg := awstest.Config(t)
	r := New(Config{DataBucket: st.bucket}, sfn.NewFromConfig(cfg), s3.NewFromConfig(cfg), zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	ctx := context.Background()
	arn, token := st.start(t, "stopped")
	jctx, stop := r.KeepAlive(ctx, token, arn, 100*time.Millisecond, nil)
	defer stop()
	time.Sleep(500 * time.Millisecond) // heartbeats of a live task: nothing ends
	require.NoError(t, jctx.Err(), "a live task's job runs on")
	if !stopObservable {
		return
	}
	_, err := st.sfn.StopExecution(ctx, &sfn.StopExecutionInput{ExecutionArn: aws.String(arn)})
	require.NoError(t, err)
	select {
	case <-jctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the stopped execution's task was not found closed")
	}
	var c *TaskClosedError
	require.ErrorAs(t, context.Cause(jctx), &c)
	t.Logf("a stopped execution's heartbeat: %v", c)
	require.True(t, c.Confirmed())
}

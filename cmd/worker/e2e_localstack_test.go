package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
)

// The cases below complete the shared end-to-end tests on LocalStack (make
// test-localstack) and run on every emulator; what only LocalStack does is in
// e2e_localstack_only_test.go, behind the build tag localstack.

// routeToNewQueue adds a rule for detailType on the stack's bus to a new queue of the
// test, before any event flows, and returns the queue's URL.
func (st *stackEnv) routeToNewQueue(eb *eventbridge.Client, detailType string) string {
	st.t.Helper()
	ctx := context.Background()
	name := st.out.EventBus + "-" + detailType
	q, err := st.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	require.NoError(st.t, err)
	attrs, err := st.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	require.NoError(st.t, err)
	pattern, _ := json.Marshal(map[string]any{"detail-type": []string{detailType}})
	_, err = eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventBusName: aws.String(st.out.EventBus), EventPattern: aws.String(string(pattern))})
	require.NoError(st.t, err)
	_, err = eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), EventBusName: aws.String(st.out.EventBus),
		Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String(attrs.Attributes["QueueArn"])}}})
	require.NoError(st.t, err)
	return aws.ToString(q.QueueUrl)
}

// putEvent puts one event on the stack's bus.
func (st *stackEnv) putEvent(eb *eventbridge.Client, source, detailType string, detail any) {
	st.t.Helper()
	b, err := json.Marshal(detail)
	require.NoError(st.t, err)
	out, err := eb.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		EventBusName: aws.String(st.out.EventBus), Source: aws.String(source), DetailType: aws.String(detailType), Detail: aws.String(string(b)),
	}}})
	require.NoError(st.t, err)
	require.Zero(st.t, out.FailedEntryCount, "PutEvents: %+v", out.Entries)
}

// TestE2EFinisherCompletesATaskFromOneEvent: a state machine waits on a task token it
// handed to a third party (here: a queue of the test); the third party puts one
// taskFinished event on the bus, from a source of its own, and the execution ends
// with that event's detail, less the token, as the task's output.
func TestE2EFinisherCompletesATaskFromOneEvent(t *testing.T) {
	st := newStack(t, "WORKER_ROLES=jobs")
	ctx := context.Background()
	eb := eventbridge.NewFromConfig(awstest.Config(t))
	inbox := st.routeToNewQueue(eb, "externalWork")
	def := fmt.Sprintf(`{"StartAt":"Wait","States":{"Wait":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents.waitForTaskToken",
		"Parameters":{"Entries":[{"EventBusName":%q,"Source":"e2e.caller","DetailType":"externalWork","Detail":{"TaskToken.$":"$$.Task.Token","order":42}}]},
		"HeartbeatSeconds":120,"TimeoutSeconds":600,"End":true}}}`, st.out.EventBus)
	sm, err := st.sfn.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name: aws.String(st.out.EventBus + "-external"), Definition: aws.String(def), RoleArn: aws.String(awstest.RoleARN(t, "e2e")),
	})
	require.NoError(t, err)
	st.startWorker()
	ex, err := st.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: sm.StateMachineArn})
	require.NoError(t, err)

	var token string
	eventually(t, time.Minute, "the third party has the token", func() bool {
		out, err := st.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(inbox), WaitTimeSeconds: 1})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			return false
		}
		var env struct {
			Detail struct {
				TaskToken string `json:"TaskToken"`
				Order     int    `json:"order"`
			} `json:"detail"`
		}
		require.NoError(t, json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &env))
		require.Equal(t, 42, env.Detail.Order)
		token = env.Detail.TaskToken
		return token != ""
	})

	st.putEvent(eb, "third.party", "taskFinished", map[string]any{"TaskToken": token, "shipped": true, "parcel": "Zoë/1 \"fragile\""})
	d := st.waitExecution(aws.ToString(ex.ExecutionArn), 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "error %s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	require.JSONEq(t, `{"shipped": true, "parcel": "Zoë/1 \"fragile\""}`, aws.ToString(d.Output))
	st.requireQueuesDrain(time.Minute)
}

// TestE2ECallbackAnswersOfTheEmulator records, per emulator, how Step Functions answers
// the callbacks where the emulators and AWS differ (docs/development.md has the
// table): a heartbeat on a task without HeartbeatSeconds, a second answer while the
// execution still runs, a late failure after it ended, and a failure's cause. The
// tests' moto and LocalStack agree on all but the cause; a change of either shows
// here first.
func TestE2ECallbackAnswersOfTheEmulator(t *testing.T) {
	st := newStack(t, "WORKER_ROLES=jobs")
	ctx := context.Background()
	eb := eventbridge.NewFromConfig(awstest.Config(t))
	inbox := st.routeToNewQueue(eb, "answerMe")
	// No HeartbeatSeconds; a 3 s Wait after the task keeps the execution running once
	// the task is closed.
	def := fmt.Sprintf(`{"StartAt":"Ask","States":{
		"Ask":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents.waitForTaskToken",
			"Parameters":{"Entries":[{"EventBusName":%q,"Source":"e2e.caller","DetailType":"answerMe","Detail":{"TaskToken.$":"$$.Task.Token"}}]},"Next":"Linger"},
		"Linger":{"Type":"Wait","Seconds":3,"End":true}}}`, st.out.EventBus)
	sm, err := st.sfn.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name: aws.String(st.out.EventBus + "-answers"), Definition: aws.String(def), RoleArn: aws.String(awstest.RoleARN(t, "e2e")),
	})
	require.NoError(t, err)
	runs := 0
	token := func() (string, string) {
		t.Helper()
		runs++ // moto needs a name to tell two executions apart
		ex, err := st.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: sm.StateMachineArn, Name: aws.String(fmt.Sprintf("run-%d", runs))})
		require.NoError(t, err)
		var tok string
		eventually(t, time.Minute, "the task token", func() bool {
			out, err := st.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(inbox), WaitTimeSeconds: 1})
			require.NoError(t, err)
			if len(out.Messages) == 0 {
				return false
			}
			var env struct {
				Detail struct{ TaskToken string } `json:"detail"`
			}
			require.NoError(t, json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &env))
			_, _ = st.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(inbox), ReceiptHandle: out.Messages[0].ReceiptHandle})
			tok = env.Detail.TaskToken
			return true
		})
		return aws.ToString(ex.ExecutionArn), tok
	}
	code := func(err error) string {
		if err == nil {
			return "ok"
		}
		var api interface{ ErrorCode() string }
		if errors.As(err, &api) {
			return api.ErrorCode()
		}
		return err.Error()
	}
	lsOr := func(localstack, moto string) string {
		if awstest.Emulator() == awstest.LocalStack {
			return localstack
		}
		return moto
	}

	arn, tok := token()
	_, err = st.sfn.SendTaskHeartbeat(ctx, &sfn.SendTaskHeartbeatInput{TaskToken: aws.String(tok)})
	t.Logf("heartbeat without HeartbeatSeconds: %s", code(err))
	// moto 5.2.5 and LocalStack 4.14.0 answer InvalidToken; the tests' moto
	// (tools/moto/server.py) and LocalStack (tools/localstack/launch.py) accept a
	// heartbeat of a task that has no heartbeat wait yet, as AWS does.
	require.Equal(t, "ok", code(err), "heartbeat on a task without HeartbeatSeconds (give callback steps HeartbeatSeconds)")
	_, err = st.sfn.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(tok), Output: aws.String(`{"n":1}`)})
	require.NoError(t, err)
	_, err = st.sfn.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(tok), Output: aws.String(`{"n":2}`)})
	t.Logf("second answer while the execution runs: %s", code(err))
	require.Equal(t, "ok", code(err), "a second answer while the execution still runs (both emulators; AWS: TaskTimedOut)")
	d := st.waitExecution(arn, time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status)
	require.JSONEq(t, `{"n":1}`, aws.ToString(d.Output), "the first answer wins")
	_, err = st.sfn.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: aws.String(tok), Error: aws.String("late")})
	t.Logf("late failure after the end: %s", code(err))
	require.Equal(t, "ok", code(err), "a late SendTaskFailure after the execution ended (both emulators; AWS: TaskTimedOut)")

	arn, tok = token()
	_, err = st.sfn.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{TaskToken: aws.String(tok), Error: aws.String("job.Broken"), Cause: aws.String("it broke")})
	require.NoError(t, err)
	d = st.waitExecution(arn, time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Equal(t, "job.Broken", aws.ToString(d.Error))
	t.Logf("failure cause: %q", aws.ToString(d.Cause))
	require.Equal(t, lsOr("it broke", ""), aws.ToString(d.Cause), "SendTaskFailure's cause (moto drops it)")
}

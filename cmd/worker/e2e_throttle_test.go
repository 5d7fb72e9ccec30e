package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// throttleRun is a burst of callback tasks at once against a Step Functions that
// throttles: one execution whose Map sends every item straight to the finisher
// queue (sqs:sendMessage.waitForTaskToken, no EventBridge in between), a worker
// whose AWS endpoint is an awstest.Throttle of burst and perSecond per API.
type throttleRun struct {
	tasks, failed, dlq, retried int
	calls, throttled            int // SendTask*, at the proxy
	took, ideal                 time.Duration
	span, upstream              time.Duration // first to last let-through SendTaskSuccess; the emulator's mean answer time
	startup, closing            time.Duration // worker start to the first let-through; the last to the execution's end seen
	// Capacity the bucket had and the worker left unused (seconds of its refill),
	// by what the worker was doing in that second: no message in hand (waiting on
	// SQS), messages in hand with its limiter below the bucket's rate, or neither.
	idleNoMessage, idleLimiter, idleOther float64
}

func runThrottled(t *testing.T, tasks, burst int, perSecond float64, within time.Duration, workerEnv ...string) throttleRun {
	t.Helper()
	st := newStack(t)
	th := awstest.NewThrottle(t, burst, perSecond)
	queue := st.out.Queues["finisher"]
	require.NotEmpty(t, queue)
	body := `{"version": "0", "id": "throttle-test", "detail-type": "taskFinished", "source": "throttle.test", "account": "123456789012",
	  "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [], "detail": {"TaskToken.$": "$$.Task.Token", "n.$": "$.n"}}`
	def := `{"StartAt": "All", "States": {"All": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 0, "End": true,
	  "Iterator": {"StartAt": "Callback", "States": {"Callback": {"Type": "Task", "End": true, "TimeoutSeconds": 3600,
	    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
	    "Parameters": {"QueueUrl": "` + queue + `", "MessageBody": ` + body + `}}}}}}}`
	ctx := context.Background()
	sm, err := st.sfn.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name: aws.String(awstest.Stack(t) + "-burst"), Definition: aws.String(def), RoleArn: aws.String("arn:aws:iam::123456789012:role/burst"),
	})
	require.NoError(t, err)
	items := make([]map[string]int, tasks)
	for i := range items {
		items[i] = map[string]int{"n": i}
	}
	input, err := json.Marshal(map[string]any{"items": items})
	require.NoError(t, err)

	// The tasks wait in the queue before the worker starts: all of them at once.
	exec, err := st.sfn.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: sm.StateMachineArn, Input: aws.String(string(input))})
	require.NoError(t, err)
	eventually(t, within, fmt.Sprintf("%d callback messages queued", tasks), func() bool { return st.queueDepth(queue) >= tasks })

	began := time.Now()
	// The proxy plays AWS's quota, so the worker acts as against AWS: no proving
	// heartbeat before an outcome (that is for the emulators' window; see
	// WORKER_PROVE_BEFORE_ANSWER), whose extra calls would be counted here.
	w := st.startWorker(append([]string{"AWS_ENDPOINT_URL=" + th.URL(), "WORKER_PROVE_BEFORE_ANSWER=false"}, workerEnv...)...)
	r := throttleRun{tasks: tasks, ideal: time.Duration(float64(tasks-burst) / perSecond * float64(time.Second))}
	stopSampling := sampleIdle(w, th, perSecond, &r)
	d := st.waitExecution(aws.ToString(exec.ExecutionArn), within)
	ended := time.Now()
	stopSampling()
	r.took = ended.Sub(began)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "execution: %s %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	var out []map[string]any
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(d.Output)), &out))
	for _, o := range out {
		if _, ok := o["n"]; !ok {
			r.failed++
		}
	}
	r.failed += tasks - len(out)
	st.requireQueuesDrain(30 * time.Second)
	r.dlq = st.queueDepth(st.out.DLQs["finisher"])
	r.retried = int(max(0, w.metric(`worker_jobs_total{job="finisher",outcome="retry"}`)))
	for _, api := range []string{"SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"} {
		r.calls += th.Calls(api)
		r.throttled += th.Throttled(api)
	}
	r.span, r.upstream = th.Span("SendTaskSuccess")
	first, last := th.Window("SendTaskSuccess")
	r.startup, r.closing = first.Sub(began), ended.Sub(last)
	t.Logf("at the proxy: SendTaskSuccess from first to last %s (%.3f× ideal), moto answered in %s on average; worker start to first call %s, last call to the execution's end seen %s",
		r.span.Round(100*time.Millisecond), r.span.Seconds()/r.ideal.Seconds(), r.upstream.Round(time.Millisecond), r.startup.Round(100*time.Millisecond), r.closing.Round(100*time.Millisecond))
	t.Logf("bucket capacity left unused: %.1f s with no message in hand, %.1f s with the limiter under %g/s, %.1f s otherwise",
		r.idleNoMessage, r.idleLimiter, perSecond, r.idleOther)
	t.Logf("%d tasks through a %d burst / %g per s bucket: took %s (ideal %s, %.2f×), %d SendTask* calls (%.3f per task), %d throttled, %d retried, %d failed, %d in the DLQ",
		tasks, burst, perSecond, r.took.Round(100*time.Millisecond), r.ideal, r.took.Seconds()/r.ideal.Seconds(), r.calls, float64(r.calls)/float64(tasks), r.throttled, r.retried, r.failed, r.dlq)
	return r
}

// sampleIdle samples, once a second until stop is called, the bucket's unused
// capacity at th and what w was doing: messages of the finisher in hand, and its
// SendTaskSuccess limiter's rate. Each second's unused capacity goes to its cause in r.
func sampleIdle(w *workerProc, th *awstest.Throttle, perSecond float64, r *throttleRun) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		prev := th.Unused("SendTaskSuccess")
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			inHand := w.metric(`worker_jobs_in_flight{queue="finisher"}`)
			rate := w.metric(`worker_sfn_rate_limit{api="SendTaskSuccess"}`)
			u := th.Unused("SendTaskSuccess")
			idle := (u - prev) / perSecond
			prev = u
			switch {
			case inHand <= 0:
				r.idleNoMessage += idle
			case rate < perSecond:
				r.idleLimiter += idle
			default:
				r.idleOther += idle
			}
		}
	}()
	return func() { close(done); <-exited }
}

// TestE2EBurstAtTheCallbackQuota: 150 callback tasks at once against a bucket of
// 5 and 5/s. Throttling delays callbacks; it never fails a task, never uses up a
// receive, never dead-letters, and costs few extra calls.
func TestE2EBurstAtTheCallbackQuota(t *testing.T) {
	r := runThrottled(t, 150, 5, 5, 3*time.Minute)
	require.Zero(t, r.failed)
	require.Zero(t, r.dlq)
	require.Zero(t, r.retried, "no message went back to the queue")
	require.Positive(t, r.throttled, "the proxy did throttle")
	require.LessOrEqual(t, float64(r.calls), 1.1*float64(r.tasks), "SendTask* calls per task")
}

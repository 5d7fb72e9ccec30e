package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"
)

// envelope is an EventBridge event as a rule delivers it to SQS.
func envelope(detailType string, detail any) string {
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": "e2e", "detail-type": detailType, "source": "e2e.test",
		"account": "123456789012", "time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1",
		"resources": []string{}, "detail": detail,
	})
	return string(b)
}

// TestE2EBadInputGetsItsDefinedFate sends each kind of bad input and checks its fate:
// a failure callback where a token can be read, the DLQ for what no retry can fix,
// deletion for an already-closed token; the worker keeps running and logs why.
func TestE2EBadInputGetsItsDefinedFate(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()

	// A live token: start an execution with no worker running and take the token of
	// its first step from the getMultiple queue ourselves.
	arn := st.startExecution(`{"names": ["x"]}`)
	var token string
	eventually(t, time.Minute, "getMultiple event queued", func() bool {
		out, err := st.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(st.out.Queues["getMultiple"]), WaitTimeSeconds: 1})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			return false
		}
		var env struct {
			Detail struct {
				TaskToken string `json:"TaskToken"`
			} `json:"detail"`
		}
		require.NoError(t, json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &env))
		token = env.Detail.TaskToken
		_, err = st.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(st.out.Queues["getMultiple"]), ReceiptHandle: out.Messages[0].ReceiptHandle})
		require.NoError(t, err)
		return true
	})
	require.NotEmpty(t, token)

	execName := arn[strings.LastIndex(arn, ":")+1:]
	forbidden := envelope("processSinglePost", map[string]any{
		"TaskToken": token, "executionArn": arn, "name": "x", "index": 0,
		"key": execName + "/profiles/00000-x.json",
		"url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
	})
	st.sendRaw("postProcessSingle", forbidden)
	st.sendRaw("getMultiple", "this is not JSON")
	st.sendRaw("processSingle", `{"version":"0","id":"x","detail-type":"processSingle","source":"e2e.test","time":"2026-01-01T00:00:00Z"}`)

	w := st.startWorker()

	// The forbidden URL ends the step with a failure callback: the execution fails
	// with the job's error name instead of waiting for a timeout.
	d := st.waitExecution(arn, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Equal(t, "postProcessSingle.ForbiddenURL", aws.ToString(d.Error))

	// Each bad message lands in its queue's DLQ, with the reason attached.
	for _, q := range []string{"postProcessSingle", "getMultiple", "processSingle"} {
		var reason string
		eventually(t, time.Minute, q+" DLQ holds the bad message", func() bool {
			out, err := st.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
				QueueUrl: aws.String(st.out.DLQs[q]), WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"},
			})
			require.NoError(t, err)
			if len(out.Messages) == 0 {
				return false
			}
			if a, ok := out.Messages[0].MessageAttributes["taskbridge-error"]; ok {
				reason = aws.ToString(a.StringValue)
			}
			return true
		})
		require.NotEmpty(t, reason, "%s: DLQ copy says why", q)
		t.Logf("%s DLQ reason: %s", q, reason)
	}

	// A taskFinished event for a task that is already closed is a finished outcome:
	// deleted, not retried, not dead-lettered.
	st.sendRaw("finisher", envelope("taskFinished", map[string]any{"TaskToken": token, "result": "late"}))
	eventually(t, time.Minute, "finisher queue drained", func() bool {
		return st.queueDepth(st.out.Queues["finisher"]) == 0
	})
	require.Zero(t, st.queueDepth(st.out.DLQs["finisher"]), "a closed token is not dead-lettered")

	// The worker is still alive, and its log says why for each.
	resp, err := http.Get("http://" + w.addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	logs := w.Logs()
	for _, why := range []string{"ForbiddenURL", "not JSON", "no detail", "task_closed"} {
		require.Contains(t, logs, why, "the log says %q", why)
	}
	require.NotContains(t, logs, token, "task tokens are never logged whole")
}

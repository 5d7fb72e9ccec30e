package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/batch"
)

// s3Created is an S3 Object Created event as EventBridge delivers it to SQS, for
// key of the stack's landing bucket, forged by the test.
func (st *stackEnv) s3Created(key string) string {
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": "forged-" + key, "detail-type": "Object Created", "source": "aws.s3",
		"account": "123456789012", "time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1",
		"resources": []string{"arn:aws:s3:::" + st.out.LandingBucket},
		"detail": map[string]any{
			"version": "0", "bucket": map[string]any{"name": st.out.LandingBucket},
			"object": map[string]any{"key": key, "size": 1, "etag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0062E99A88DC407460"},
			"reason": "PutObject",
		},
	})
	return string(b)
}

// TestE2EInputsForgedAndEncodedS3Keys (issue 12 items 14, 15): real uploads whose
// keys have a space, a + and a %, beside a forged Object Created event for a key
// that does not exist and an event that names a real object by its URL-encoded key
// (as S3's notifications to SQS do). The manifest lists exactly the real objects,
// by their real keys, with their real sizes; the forged event goes to the DLQ with
// its reason.
func TestE2EInputsForgedAndEncodedS3Keys(t *testing.T) {
	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=4s", "WORKER_GLUE_POLL_INTERVAL=1s")
	st.startWorker()
	ctx := context.Background()
	real := map[string]string{
		"keys/a b.csv":    "space\n",
		"keys/a+b.csv":    "plus, raw\n",
		"keys/100%.csv":   "percent\n",
		"keys/x%41y.csv":  "an escape that is not one\n",
		"keys/c d+e%.csv": "all three\n",
	}
	for k, body := range real {
		_, err := st.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.out.LandingBucket), Key: aws.String(k), Body: bytes.NewReader([]byte(body))})
		require.NoError(t, err)
	}
	st.sendRaw("landing", st.s3Created("keys/forged.csv"))
	st.sendRaw("landing", st.s3Created("keys/c+d%2Be%25.csv")) // "keys/c d+e%.csv", URL-encoded

	var ms []batch.Manifest
	eventually(t, time.Minute, "a manifest", func() bool { ms = st.manifests(); return len(ms) >= 1 })
	time.Sleep(2 * time.Second) // a second batch would be a defect too
	ms = st.manifests()
	got := map[string]int64{}
	for _, m := range ms {
		for _, f := range m.Files {
			_, dup := got[f.Key]
			require.False(t, dup, "key %q listed twice", f.Key)
			got[f.Key] = f.Size
			require.NotEmpty(t, f.ETag)
			require.NotEqual(t, "d41d8cd98f00b204e9800998ecf8427e", f.ETag, "the ETag is S3's, not the event's")
		}
	}
	want := map[string]int64{}
	for k, body := range real {
		want[k] = int64(len(body))
	}
	require.Equal(t, want, got, "exactly the real objects, by their real keys and sizes")

	reason := st.dlqReason(t, "landing", "object does not exist")
	require.Contains(t, reason, "keys/forged.csv")
	eventually(t, time.Minute, "landing queue empty", func() bool { return st.queueDepth(st.out.Queues["landing"]) == 0 })
}

// TestE2EInputsDeeplyNestedDetailFailsItsTask (issue 12 item 8): a detail nested
// 100,000 levels deep cannot be parsed, but its token can be read: the step fails
// at once with a failure callback (and the message goes to the DLQ) instead of
// waiting for its timeout.
func TestE2EInputsDeeplyNestedDetailFailsItsTask(t *testing.T) {
	st := newStack(t)
	arn := st.startExecution(`{"names": ["x"]}`)
	token := st.takeToken("getMultiple")

	const depth = 100_000
	body := `{"version":"0","id":"deep","detail-type":"getMultiple","source":"e2e.test","account":"123456789012",` +
		`"time":"` + time.Now().UTC().Format(time.RFC3339) + `","region":"us-east-1","resources":[],` +
		`"detail":{"executionArn":` + mustJSON(t, arn) + `,"TaskToken":` + mustJSON(t, token) + `,"deep":` +
		strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}}`
	require.Less(t, len(body), 256*1024)
	st.sendRaw("getMultiple", body)
	w := st.startWorker()

	d := st.waitExecution(arn, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Contains(t, aws.ToString(d.Error), "MalformedEvent")
	t.Logf("failed with %s: %q", aws.ToString(d.Error), aws.ToString(d.Cause))
	st.dlqReason(t, "getMultiple", "nested more than")
	require.NotContains(t, w.Logs(), token, "task tokens are never logged whole")
}

// TestE2EInputsAngleBracketNamesAreNotInflated (issue 12 item 5): names made of <
// and & are 6 bytes each once HTML-escaped; 60 KB of them made getMultiple's output
// a 360 KB claim check, and the execution failed with States.Runtime. Written as
// they are, the execution runs to its end and the report keeps the names intact.
func TestE2EInputsAngleBracketNamesAreNotInflated(t *testing.T) {
	st := newStack(t)
	st.startWorker()
	names := []string{strings.Repeat("<", 20_000), strings.Repeat("&", 20_000), strings.Repeat("<>", 10_000)}
	input, err := awsjson.Marshal(map[string]any{"names": names}) // 60 KB; json.Marshal makes 360 KB of it
	require.NoError(t, err)
	arn := st.startExecution(string(input))
	d := st.waitExecution(arn, 3*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "error %s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	rep := st.requireConsistent(arn, output{d.Output}, len(names))
	require.ElementsMatch(t, names, rep.Names)
	require.Empty(t, st.listKeys(st.out.DataBucket, "claim-checks/"), "nothing needed a claim check")
}

// takeToken receives the first message of queue (no worker running), deletes it
// and returns its detail's TaskToken.
func (st *stackEnv) takeToken(queue string) string {
	st.t.Helper()
	ctx := context.Background()
	var token string
	eventually(st.t, time.Minute, queue+" event queued", func() bool {
		out, err := st.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(st.out.Queues[queue]), WaitTimeSeconds: 1})
		require.NoError(st.t, err)
		if len(out.Messages) == 0 {
			return false
		}
		var env struct {
			Detail struct {
				TaskToken string `json:"TaskToken"`
			} `json:"detail"`
		}
		require.NoError(st.t, json.Unmarshal([]byte(aws.ToString(out.Messages[0].Body)), &env))
		token = env.Detail.TaskToken
		_, err = st.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(st.out.Queues[queue]), ReceiptHandle: out.Messages[0].ReceiptHandle})
		require.NoError(st.t, err)
		return true
	})
	require.NotEmpty(st.t, token)
	return token
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

package main_test

import (
	"context"
	"encoding/json"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"
)

// TestE2EQueueUnderSQSSizeIsWarned: a stack at 1 MiB (as bootstrap makes it) draws
// no warning; a queue and a DLQ at 256 KiB (as terraform's provider before 6.8.0
// makes them) are named, with their size and the fix, by `status`, `validate --stack`
// and the running worker's log and worker_queue_max_message_bytes, and the queue
// does refuse a 300 KiB message.
func TestE2EQueueUnderSQSSizeIsWarned(t *testing.T) {
	st := newStack(t, "WORKER_TOPOLOGY="+dlqTopology(t))
	ctx := context.Background()
	work, flakyDLQ := st.out.Queues["work"], st.out.DLQs["flaky"]

	type status struct {
		Queues []struct {
			Queue                               string
			MaxMessageBytes, DLQMaxMessageBytes int64
		}
		EventsDLQ struct{ MaxMessageBytes int64 }
		Warnings  []string
	}
	readStatus := func() status {
		code, out := st.exitCode("status", "--output", "json")
		require.Equal(t, 0, code, "a small queue is a warning, not an alarm: %s", out)
		var s status
		require.NoError(t, json.Unmarshal([]byte(out), &s), out)
		return s
	}

	// At 1 MiB: nothing to say.
	s := readStatus()
	require.Empty(t, s.Warnings)
	require.Len(t, s.Queues, 2)
	for _, q := range s.Queues {
		require.EqualValues(t, 1<<20, q.MaxMessageBytes, q.Queue)
		require.EqualValues(t, 1<<20, q.DLQMaxMessageBytes, q.Queue)
	}
	require.EqualValues(t, 1<<20, s.EventsDLQ.MaxMessageBytes)
	require.NotContains(t, st.cli("validate", "--stack"), "warning: queue")

	// At 256 KiB, the size terraform's provider gives a queue.
	for _, url := range []string{work, flakyDLQ} {
		_, err := st.sqs.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: map[string]string{"MaximumMessageSize": "262144"}})
		require.NoError(t, err)
	}
	_, err := st.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(work), MessageBody: aws.String(strings.Repeat("x", 300<<10))})
	require.Error(t, err, "a 300 KiB message cannot reach a 256 KiB queue")

	s = readStatus()
	require.Len(t, s.Warnings, 2, "%q", s.Warnings)
	for i, url := range []string{work, flakyDLQ} { // in the queues' order: flaky's DLQ, then work
		w := s.Warnings[1-i]
		require.Contains(t, w, "queue "+path.Base(url)+" takes messages of at most 262144 bytes (256 KiB)")
		require.Contains(t, w, "aws sqs set-queue-attributes --queue-url "+url+" --attributes MaximumMessageSize=1048576")
	}
	for _, q := range s.Queues {
		switch q.Queue {
		case "work":
			require.EqualValues(t, 262144, q.MaxMessageBytes)
			require.EqualValues(t, 1<<20, q.DLQMaxMessageBytes)
		case "flaky":
			require.EqualValues(t, 1<<20, q.MaxMessageBytes)
			require.EqualValues(t, 262144, q.DLQMaxMessageBytes)
		}
	}
	_, text, _ := st.run("status")
	t.Logf("worker status:\n%s", text)
	require.Contains(t, text, "warning: queue "+path.Base(work)+" takes messages of at most 262144 bytes")

	out := st.cli("validate", "--stack")
	t.Logf("worker validate --stack:\n%s", out)
	require.Equal(t, 2, strings.Count(out, "warning: queue "), out)
	require.Contains(t, out, "warning: queue "+path.Base(flakyDLQ)+" takes messages of at most 262144 bytes")
	require.Contains(t, out, ": 2 queues, 2 state machines: ok")

	w := st.startWorker()
	eventually(t, time.Minute, "the worker exports every queue's size", func() bool {
		return w.metric(`worker_queue_max_message_bytes{queue="`+path.Base(work)+`"}`) == 262144 &&
			w.metric(`worker_queue_max_message_bytes{queue="`+path.Base(flakyDLQ)+`"}`) == 262144 &&
			w.metric(`worker_queue_max_message_bytes{queue="`+path.Base(st.out.DLQs["work"])+`"}`) == 1<<20 &&
			w.metric(`worker_queue_max_message_bytes{queue="`+path.Base(st.out.EventsDLQ)+`"}`) == 1<<20
	})
	logs := w.Logs()
	require.Equal(t, 2, strings.Count(logs, "queue smaller than SQS's limit"), "one warning per small queue:\n%s", tail(logs, 4096))
	require.Contains(t, logs, "MaximumMessageSize=1048576")
}

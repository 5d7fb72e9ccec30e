package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/batch"
)

// subscribeResults adds a rule for etl-success/etl-error on the stack's bus to a new
// queue, before any event flows (rule changes disturb PutEvents on moto).
func (st *stackEnv) subscribeResults() string {
	st.t.Helper()
	ctx := context.Background()
	cfg := awstest.Config(st.t)
	eb := eventbridge.NewFromConfig(cfg)
	name := st.out.EventBus + "-results"
	q, err := st.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	require.NoError(st.t, err)
	attrs, err := st.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"QueueArn"}})
	require.NoError(st.t, err)
	_, err = eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(name), EventBusName: aws.String(st.out.EventBus), EventPattern: aws.String(`{"detail-type":["etl-success","etl-error"]}`)})
	require.NoError(st.t, err)
	_, err = eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(name), EventBusName: aws.String(st.out.EventBus), Targets: []ebtypes.Target{{Id: aws.String("q"), Arn: aws.String(attrs.Attributes["QueueArn"])}}})
	require.NoError(st.t, err)
	return aws.ToString(q.QueueUrl)
}

// putFiles puts n small files into the landing bucket, a few at a time, and returns
// their keys and when the first was put.
func (st *stackEnv) putFiles(prefix string, n int) ([]string, time.Time) {
	st.t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s/file-%04d.csv", prefix, i)
	}
	first := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := st.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(st.out.LandingBucket), Key: aws.String(k), Body: bytes.NewReader([]byte("a,b\n1,2\n"))})
			require.NoError(st.t, err)
		})
	}
	wg.Wait()
	return keys, first
}

func (st *stackEnv) manifests() []batch.Manifest {
	st.t.Helper()
	var out []batch.Manifest
	for _, k := range st.listKeys(st.out.DataBucket, "manifests/") {
		var m batch.Manifest
		st.getJSON(st.out.DataBucket, k, &m)
		out = append(out, m)
	}
	return out
}

// results drains the results queue into detail-type → details.
func (st *stackEnv) results(url string, into map[string][]batch.ResultDetail) {
	st.t.Helper()
	out, err := st.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	require.NoError(st.t, err)
	for _, m := range out.Messages {
		var env struct {
			DetailType string             `json:"detail-type"`
			Detail     batch.ResultDetail `json:"detail"`
		}
		require.NoError(st.t, json.Unmarshal([]byte(aws.ToString(m.Body)), &env))
		into[env.DetailType] = append(into[env.DetailType], env.Detail)
		_, _ = st.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
	}
}

// requireEachKeyOnce checks every key is in exactly one manifest of a started run.
func requireEachKeyOnce(t *testing.T, keys []string, ms []batch.Manifest) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range ms {
		for _, f := range m.Files {
			seen[f.Key]++
		}
	}
	for _, k := range keys {
		require.Equal(t, 1, seen[k], "key %s in exactly one manifest", k)
	}
}

func TestE2EBatchBurstOf250MakesThreeRuns(t *testing.T) {
	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=20s", "WORKER_GLUE_POLL_INTERVAL=1s")
	results := st.subscribeResults()
	st.startWorker()
	keys, _ := st.putFiles("burst", 250)
	var ms []batch.Manifest
	eventually(t, 3*time.Minute, "three manifests", func() bool { ms = st.manifests(); return len(ms) >= 3 })
	sizes := map[int]int{}
	for _, m := range ms {
		sizes[len(m.Files)]++
	}
	require.Equal(t, map[int]int{100: 2, 50: 1}, sizes, "manifests of 100, 100 and 50 files")
	requireEachKeyOnce(t, keys, ms)

	got := map[string][]batch.ResultDetail{}
	eventually(t, 2*time.Minute, "an etl-success per run", func() bool { st.results(results, got); return len(got["etl-success"]) >= 3 })
	for _, d := range got["etl-success"] {
		require.Equal(t, st.out.GlueJob, d.JobName)
		require.NotEmpty(t, d.JobRunID)
		require.Equal(t, "SUCCEEDED", d.State)
		require.True(t, strings.HasPrefix(d.Manifest, "s3://"+st.out.DataBucket+"/manifests/"+d.BatchID))
		require.Contains(t, []int{100, 50}, d.FileCount)
	}
	eventually(t, 3*time.Minute, "landing queue and DLQ empty", func() bool {
		return st.queueDepth(st.out.Queues["landing"]) == 0 && st.queueDepth(st.out.DLQs["landing"]) == 0
	})
}

func TestE2EBatchWindowFlushesSevenFiles(t *testing.T) {
	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=3s", "WORKER_GLUE_POLL_INTERVAL=1s")
	st.startWorker()
	keys, first := st.putFiles("window", 7)
	var ms []batch.Manifest
	eventually(t, time.Minute, "a manifest", func() bool { ms = st.manifests(); return len(ms) >= 1 })
	require.Len(t, ms, 1)
	require.Len(t, ms[0].Files, 7)
	requireEachKeyOnce(t, keys, ms)
	// The window opens with the first file the batcher receives, which reaches it
	// after S3 → EventBridge → SQS; it cannot close before 3 s after the first put.
	delay := ms[0].CreatedAt.Sub(first)
	t.Logf("flushed %s after the first file was put", delay)
	require.GreaterOrEqual(t, delay, 3*time.Second)
	require.Less(t, delay, 15*time.Second, "one window after the first file (5 s in the acceptance, slack for -race on moto)")
	eventually(t, time.Minute, "landing queue empty", func() bool { return st.queueDepth(st.out.Queues["landing"]) == 0 })
}

func TestE2EBatchSurvivesSigkillInAnOpenWindow(t *testing.T) {
	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=1h", "WORKER_GLUE_POLL_INTERVAL=1s")
	w := st.startWorker()
	keys, _ := st.putFiles("crash", 12)
	eventually(t, time.Minute, "the batcher holds every file", func() bool { return w.metric(`worker_batch_open_files`) == 12 })
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	<-w.done
	require.Empty(t, st.manifests(), "nothing was flushed before the crash")
	// The restarted worker gets the messages back after their visibility timeout and
	// flushes them on its SIGTERM (its window is an hour).
	w2 := st.startWorker()
	eventually(t, 4*time.Minute, "the restarted batcher holds every file again", func() bool { return w2.metric(`worker_batch_open_files`) == 12 })
	w2.signal(syscall.SIGTERM)
	<-w2.done
	require.NoError(t, w2.waitErr)
	ms := st.manifests()
	require.Len(t, ms, 1, "one manifest, flushed at shutdown")
	requireEachKeyOnce(t, keys, ms)
	eventually(t, time.Minute, "landing queue empty", func() bool { return st.queueDepth(st.out.Queues["landing"]) == 0 })
}

// batchOnce is what runBatchExactlyOnce measured.
type batchOnce struct {
	files, duplicates, runs, unrun, lost, twice int
	dropped, takenOver                          float64
	took                                        time.Duration
}

// runBatchExactlyOnce is issue 19's proof that a landing file lands in exactly one
// run: two batchers on one landing queue (a deploy overlap), files put straight
// into the landing bucket with their Object Created events sent onto the landing
// queue by the test (moto's S3 → EventBridge path is ~9 events/s), every tenth
// event twice (SQS and EventBridge deliver at least once), and one batcher
// SIGKILLed while it holds an open batch (or, with atFlush, as soon as it made its
// first claim: mid-flush, with claims made and its run perhaps not started), then
// restarted. The landing queue's
// visibility timeout is 30 s (a topology of its own), so what the killed batcher
// held comes back, and its claims can be taken over, within a minute.
func runBatchExactlyOnce(t *testing.T, files int, atFlush bool) batchOnce {
	start := time.Now()
	topo := filepath.Join(t.TempDir(), "topology.json")
	require.NoError(t, os.WriteFile(topo, []byte(`{"source": "taskbridge.worker", "queues": [
		{"name": "landing", "s3Batch": {}, "concurrency": 100, "visibilityTimeoutSeconds": 30, "maxReceiveCount": 5}]}`), 0o600))
	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=3s", "WORKER_GLUE_POLL_INTERVAL=1s", "WORKER_TOPOLOGY="+topo)
	ctx := context.Background()
	// No notifications: the test sends the events, so it knows each one.
	_, err := st.s3.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(st.out.LandingBucket), NotificationConfiguration: &s3types.NotificationConfiguration{},
	})
	require.NoError(t, err)
	keys, _ := st.putFiles("once", files)
	require.Zero(t, st.queueDepth(st.out.Queues["landing"]), "S3 sent no event of its own")

	var bodies []string
	for i, k := range keys {
		head, err := st.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(st.out.LandingBucket), Key: aws.String(k)})
		require.NoError(t, err)
		ev := st.landingEvent(k, strings.Trim(aws.ToString(head.ETag), `"`), aws.ToInt64(head.ContentLength), fmt.Sprintf("%018X", i+1))
		bodies = append(bodies, ev)
		if i%10 == 0 {
			bodies = append(bodies, ev)
		}
	}
	rnd := rand.New(rand.NewPCG(19, 3))
	rnd.Shuffle(len(bodies), func(i, j int) { bodies[i], bodies[j] = bodies[j], bodies[i] })

	w1, w2 := st.startWorker(), st.startWorker()
	half := len(bodies) / 2
	st.sendLanding(bodies[:half])
	if atFlush {
		eventually(t, 2*time.Minute, "the first batcher claims", func() bool { return w1.metric(`worker_batch_claims_total{result="made"}`) > 0 })
	} else {
		eventually(t, 2*time.Minute, "the first batcher holds an open batch", func() bool { return w1.metric("worker_batch_open_files") > 0 })
	}
	require.NoError(t, w1.cmd.Process.Signal(syscall.SIGKILL))
	<-w1.done
	w3 := st.startWorker()
	st.sendLanding(bodies[half:])

	started := map[string]bool{} // manifests of runs that started
	var ms []batch.Manifest
	eventually(t, 10*time.Minute, "every file in a started run, landing queue and DLQ empty", func() bool {
		for _, m := range st.glueManifests() {
			started[m] = true
		}
		ms = st.manifests()
		listed := map[string]bool{}
		for _, m := range ms {
			if started["s3://"+st.out.DataBucket+"/manifests/"+m.BatchID+".json"] {
				for _, f := range m.Files {
					listed[f.Key] = true
				}
			}
		}
		return len(listed) == len(keys) && st.queueDepth(st.out.Queues["landing"]) == 0 && st.queueDepth(st.out.DLQs["landing"]) == 0
	})
	res := batchOnce{files: files, duplicates: len(bodies) - len(keys), took: time.Since(start)}
	seen := map[string]int{}
	for _, m := range ms {
		if !started["s3://"+st.out.DataBucket+"/manifests/"+m.BatchID+".json"] {
			res.unrun++ // written by the killed batcher before it could start the run
			continue
		}
		res.runs++
		for _, f := range m.Files {
			seen[f.Key]++
		}
	}
	for _, k := range keys {
		switch n := seen[k]; {
		case n == 0:
			res.lost++
		case n > 1:
			res.twice += n - 1
		}
	}
	for _, w := range []*workerProc{w2, w3} {
		res.dropped += max(w.metric(`worker_batch_claims_total{result="duplicate"}`), 0) // -1: none yet
		res.takenOver += max(w.metric(`worker_batch_claims_total{result="taken_over"}`), 0)
	}
	t.Logf("%d files, %d duplicate events, %d runs (+%d manifests never run), %d in two runs, %d lost; survivors dropped %.0f duplicates and took over %.0f claims; %s",
		res.files, res.duplicates, res.runs, res.unrun, res.twice, res.lost, res.dropped, res.takenOver, res.took.Round(time.Second))
	require.Zero(t, res.lost, "no file lost")
	require.Zero(t, res.twice, "no file in two runs")
	return res
}

// landingEvent is the Object Created event of one upload as EventBridge delivers it.
func (st *stackEnv) landingEvent(key, etag string, size int64, sequencer string) string {
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": "once-" + sequencer, "detail-type": "Object Created", "source": "aws.s3",
		"account": "123456789012", "time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1",
		"resources": []string{"arn:aws:s3:::" + st.out.LandingBucket},
		"detail": map[string]any{
			"version": "0", "bucket": map[string]any{"name": st.out.LandingBucket},
			"object": map[string]any{"key": key, "size": size, "etag": etag, "sequencer": sequencer},
			"reason": "PutObject",
		},
	})
	return string(b)
}

// sendLanding sends bodies onto the landing queue, ten a call.
func (st *stackEnv) sendLanding(bodies []string) {
	st.t.Helper()
	for i := 0; i < len(bodies); i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j, b := range bodies[i:min(i+10, len(bodies))] {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(b)})
		}
		out, err := st.sqs.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(st.out.Queues["landing"]), Entries: entries})
		require.NoError(st.t, err)
		require.Empty(st.t, out.Failed)
	}
}

// glueManifests lists the manifests named by the runs of the stack's Glue job.
func (st *stackEnv) glueManifests() []string {
	client := glue.NewFromConfig(awstest.Config(st.t))
	var out []string
	p := glue.NewGetJobRunsPaginator(client, &glue.GetJobRunsInput{JobName: aws.String(st.out.GlueJob)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(st.t, err)
		for _, jr := range page.JobRuns {
			out = append(out, jr.Arguments["--manifest"])
		}
	}
	return out
}

func TestE2EBatchEachFileInExactlyOneRunWithTwoBatchersDuplicatesAndAKill(t *testing.T) {
	runBatchExactlyOnce(t, 200, false)
}

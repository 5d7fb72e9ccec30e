//go:build chaos

// The chaos scenarios of `make chaos`: faults while the cookies workflow runs against
// the emulator, each ending in a row of sent / completed / retried / dead-lettered /
// lost. Lost must be 0. Run with: go test -tags chaos -run Chaos -v ./cmd/worker
package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/batch"
)

type chaosRow struct {
	scenario                                     string
	sent, completed, retried, deadLettered, lost int
	took                                         time.Duration
}

var (
	chaosMu   sync.Mutex
	chaosRows []chaosRow
)

func record(t *testing.T, r chaosRow) {
	chaosMu.Lock()
	chaosRows = append(chaosRows, r)
	chaosMu.Unlock()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tsent\tcompleted\tredelivered\tdead-lettered\tlost\ttook")
	for _, r := range chaosRows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.scenario, r.sent, r.completed, r.retried, r.deadLettered, r.lost, r.took.Round(time.Second))
	}
	_ = tw.Flush()
	require.Zero(t, r.lost, "%s lost work", r.scenario)
}

// redeliveries counts the messages the workers handled more than once (receive count
// of 2 or more in their per-message log lines): after a crash, a release at shutdown,
// a retried error or a lost delete.
func redeliveries(workers ...*workerProc) int {
	n := 0
	for _, w := range workers {
		for _, line := range strings.Split(w.Logs(), "\n") {
			var l struct {
				Msg          string `json:"msg"`
				ReceiveCount int    `json:"receive_count"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.ReceiveCount >= 2 && strings.HasPrefix(l.Msg, "message ") {
				n++
			}
		}
	}
	return n
}

// runCookies starts executions of people names each and returns their ARNs and the
// callback tasks they make (getMultiple + one per person + postProcessAll).
func runCookies(st *stackEnv, executions, people int) ([]string, int) {
	arns := make([]string, executions)
	for i := range arns {
		arns[i] = st.startExecution(fmt.Sprintf(`{"count": %d}`, people))
	}
	return arns, executions * (people + 2)
}

// settle waits for every execution and counts the tasks of those that did not succeed.
func settle(t *testing.T, st *stackEnv, arns []string, people int, within time.Duration) (completed, lost int) {
	deadline := time.Now().Add(within)
	for _, arn := range arns {
		d := st.waitExecution(arn, time.Until(deadline)+time.Second)
		if d.Status == sfntypes.ExecutionStatusSucceeded {
			completed += people + 2
		} else {
			t.Logf("execution %s ended %s: %s", arn, d.Status, aws.ToString(d.Cause))
			lost += people + 2
		}
	}
	return completed, lost
}

// glueRunIDs lists the ids of every run of the stack's Glue job.
func (st *stackEnv) glueRunIDs() []string {
	client := glue.NewFromConfig(awstest.Config(st.t))
	var ids []string
	p := glue.NewGetJobRunsPaginator(client, &glue.GetJobRunsInput{JobName: aws.String(st.out.GlueJob)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(st.t, err)
		for _, jr := range page.JobRuns {
			ids = append(ids, aws.ToString(jr.Id))
		}
	}
	return ids
}

func (st *stackEnv) dlqTotal() int {
	n := 0
	for _, name := range st.out.QueueNames() {
		n += st.queueDepth(st.out.DLQs[name])
	}
	return n
}

func TestChaosSigkillInTheMiddleOf200Tasks(t *testing.T) {
	start := time.Now()
	st := newStack(t, "WORKER_SHUTDOWN_TIMEOUT=8s")
	w := st.startWorker()
	arns, sent := runCookies(st, 4, 48) // 4 × (48 + 2) = 200 callback tasks
	eventually(t, 3*time.Minute, "a third of the people stored", func() bool {
		n := 0
		for _, arn := range arns {
			n += len(st.listKeys(st.out.DataBucket, arn[strings.LastIndex(arn, ":")+1:]+"/people/"))
		}
		return n >= 64
	})
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	<-w.done
	w2 := st.startWorker()
	completed, lost := settle(t, st, arns, 48, 8*time.Minute)
	record(t, chaosRow{"SIGKILL mid 200 callback tasks", sent, completed, redeliveries(w, w2), st.dlqTotal(), lost, time.Since(start)})
}

func TestChaosSigtermDuringABurst(t *testing.T) {
	start := time.Now()
	st := newStack(t, "WORKER_SHUTDOWN_TIMEOUT=8s")
	w := st.startWorker()
	arns, sent := runCookies(st, 8, 10)
	time.Sleep(8 * time.Second) // mid-burst: a fault injected at a moment, not a synchronisation
	w.signal(syscall.SIGTERM)
	<-w.done
	require.NoError(t, w.waitErr, "exit 0 on SIGTERM")
	w2 := st.startWorker()
	completed, lost := settle(t, st, arns, 10, 6*time.Minute)
	record(t, chaosRow{"SIGTERM during a burst", sent, completed, redeliveries(w, w2), st.dlqTotal(), lost, time.Since(start)})
}

func TestChaosEmulatorUnreachableFor20s(t *testing.T) {
	start := time.Now()
	proxy := awstest.NewProxy(t)
	st := newStack(t)
	w := st.startWorker("AWS_ENDPOINT_URL=" + proxy.URL())
	arns, sent := runCookies(st, 4, 10)
	time.Sleep(5 * time.Second) // work in flight
	proxy.Cut()
	time.Sleep(20 * time.Second) // the outage itself
	proxy.Restore()
	completed, lost := settle(t, st, arns, 10, 6*time.Minute)
	record(t, chaosRow{"emulator unreachable 20 s", sent, completed, redeliveries(w), st.dlqTotal(), lost, time.Since(start)})
}

func TestChaosMalformedAmongValid(t *testing.T) {
	start := time.Now()
	st := newStack(t)
	w := st.startWorker()
	arns, sent := runCookies(st, 3, 6)
	bad := []struct{ queue, body string }{
		{"getMultiple", "not JSON"}, {"getMultiple", "{"}, {"getMultiple", "[]"}, {"getMultiple", `"text"`},
		{"getMultiple", `{"detail-type":"getMultiple","source":"x"}`}, {"getMultiple", `{"detail-type":"getMultiple","source":"x","detail":null}`},
		{"getMultiple", `{"detail-type":"getMultiple","source":"x","detail":"str"}`}, {"getMultiple", `{"source":"x","detail":{}}`},
		{"getMultiple", envelope("getMultiple", map[string]any{"input": map[string]any{}})}, // no token
		{"getMultiple", envelope("wrongType", map[string]any{"TaskToken": "t"})},
		{"processSingle", envelope("processSingle", map[string]any{"TaskToken": "t", "executionArn": "arn:aws:s3:::nope", "name": "a", "index": 0})},
		{"processSingle", envelope("processSingle", map[string]any{"TaskToken": "t", "executionArn": "arn:aws:states:us-east-1:1:execution:sm:x", "index": -1})},
		{"processSingle", envelope("processSingle", map[string]any{"TaskToken": "t", "executionArn": "arn:aws:states:us-east-1:1:execution:sm:..", "name": "a", "index": 0})},
		{"postProcessSingle", envelope("processSinglePost", map[string]any{"TaskToken": "t", "executionArn": "arn:aws:states:us-east-1:1:execution:sm:x", "name": "a", "index": 0, "url": "http://169.254.169.254/"})},
		{"postProcessSingle", envelope("processSinglePost", map[string]any{"TaskToken": "t", "executionArn": "arn:aws:states:us-east-1:1:execution:sm:x", "name": "a", "index": 0, "url": "file:///etc/passwd"})},
		{"postProcessSingle", envelope("processSinglePost", map[string]any{"TaskToken": "t", "executionArn": "arn:aws:states:us-east-1:1:execution:sm:x", "name": "a", "index": 0, "url": "http://user:pw@127.0.0.1/x"})},
		{"sideEffect", envelope("processSinglePost", map[string]any{"executionArn": "bad", "name": 5})},
		{"postProcessAll", envelope("postProcessAll", map[string]any{"TaskToken": "t", "executionArn": "nope"})},
		{"finisher", envelope("taskFinished", map[string]any{"result": "no token"})},
		{"finisher", `{"detail-type":"taskFinished","source":"x","time":"yesterday","detail":{"TaskToken":"t"}}`},
	}
	for _, b := range bad {
		st.sendRaw(b.queue, b.body)
	}
	completed, lost := settle(t, st, arns, 6, 5*time.Minute)
	// Each malformed message ends in the DLQ, or, when its (forged) token fails the
	// job's heartbeat before anything is fetched or written, is dropped with a
	// warning (token_refused): the postProcessSingle ones with a bogus token.
	var dead, refused int
	eventually(t, 2*time.Minute, "every malformed message dead-lettered or refused", func() bool {
		dead, refused = st.dlqTotal(), strings.Count(w.Logs(), `"outcome":"token_refused"`)
		return dead+refused >= len(bad)
	})
	lost += len(bad) - min(dead+refused, len(bad))
	record(t, chaosRow{fmt.Sprintf("%d malformed among %d valid", len(bad), sent), sent + len(bad), completed, redeliveries(w), dead, lost, time.Since(start)})
}

func TestChaosBatcherKilledTwiceIn2000Files(t *testing.T) {
	start := time.Now()
	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=5s", "WORKER_GLUE_POLL_INTERVAL=1s")
	results := st.subscribeResults()
	workers := []*workerProc{st.startWorker()}
	const bursts, perBurst = 4, 500
	var keys []string
	for i := range bursts {
		put := make(chan []string, 1)
		go func() { k, _ := st.putFiles(fmt.Sprintf("burst-%d", i), perBurst); put <- k }()
		if i == 1 || i == 3 { // kill while this burst is arriving and a batch is open
			w := workers[len(workers)-1]
			eventually(t, 2*time.Minute, "the batcher holds files of burst "+fmt.Sprint(i), func() bool { return w.metric("worker_batch_open_files") >= 20 })
			require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
			<-w.done
			workers = append(workers, st.startWorker())
		}
		keys = append(keys, <-put...)
	}

	// Done when every file is in the manifest of a run that succeeded and the landing
	// queue is empty. Files a killed batcher held come back after the landing queue's
	// visibility timeout (120 s).
	got := map[string][]batch.ResultDetail{}
	succeeded := map[string]bool{} // batch id
	completedKeys := map[string]int{}
	eventually(t, 12*time.Minute, "every file in a succeeded run, landing queue empty", func() bool {
		st.results(results, got)
		for _, d := range got["etl-success"] {
			succeeded[d.BatchID] = true
		}
		clear(completedKeys)
		for _, m := range st.manifests() {
			if succeeded[m.BatchID] {
				for _, f := range m.Files {
					completedKeys[f.Key]++
				}
			}
		}
		return len(completedKeys) >= len(keys) && st.queueDepth(st.out.Queues["landing"]) == 0
	})
	twice := 0
	for _, n := range completedKeys {
		twice += n - 1
	}
	lost := 0
	for _, k := range keys {
		if completedKeys[k] == 0 {
			lost++
		}
	}
	// Every Glue run started has its result on the bus, the runs of killed batchers too.
	runs := st.glueRunIDs()
	eventually(t, 2*time.Minute, "a result event for each of the job's runs", func() bool {
		st.results(results, got)
		published := map[string]bool{}
		for _, ds := range got {
			for _, d := range ds {
				published[d.JobRunID] = true
			}
		}
		for _, id := range runs {
			if !published[id] {
				return false
			}
		}
		return true
	})
	t.Logf("%d Glue runs; %d etl-success, %d etl-error", len(runs), len(got["etl-success"]), len(got["etl-error"]))
	record(t, chaosRow{"2,000 S3 files in 4 bursts, batcher SIGKILLed twice", len(keys), len(keys) - lost, twice, st.queueDepth(st.out.DLQs["landing"]), lost, time.Since(start)})
}

// TestChaosRollingRestart is a rolling deploy while messages keep arriving: a new
// worker starts, then the old one gets SIGTERM with its 20 s long polls in flight.
// Every message is bad input, so its DLQ copy's SentTimestamp says when a worker
// handled it; a message put during the restart must not wait for a visibility
// timeout (60 s) because a cancelled long poll took it (issue 12 item 10).
func TestChaosRollingRestart(t *testing.T) {
	start := time.Now()
	st := newStack(t, "WORKER_POLL_WAIT=20s", "WORKER_ROLES=jobs", "WORKER_SHUTDOWN_TIMEOUT=25s")
	old := st.startWorker()
	old.waitReady(30 * time.Second)

	ctx, stopPutting := context.WithCancel(context.Background())
	putAt := map[string]time.Time{}
	var putMu sync.Mutex
	var putters sync.WaitGroup
	putters.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			body := fmt.Sprintf("rolling restart %d", i)
			putMu.Lock()
			putAt[body] = time.Now()
			putMu.Unlock()
			st.sendRaw("getMultiple", body)
		}
	})
	time.Sleep(3 * time.Second) // messages flowing before the deploy: a moment, not a synchronisation
	next := st.startWorker()
	next.waitReady(30 * time.Second)
	restartAt := time.Now()
	old.signal(syscall.SIGTERM)
	<-old.done
	require.NoError(t, old.waitErr, "exit 0 on SIGTERM")
	time.Sleep(5 * time.Second) // and after it
	stopPutting()
	putters.Wait()

	// Every message's DLQ copy, read once each (a long visibility so none comes twice).
	handledAt := map[string]time.Time{}
	eventually(t, 3*time.Minute, "every message dead-lettered", func() bool {
		out, err := st.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(st.out.DLQs["getMultiple"]), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 600,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp},
		})
		require.NoError(t, err)
		for _, m := range out.Messages {
			ms, _ := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64)
			handledAt[aws.ToString(m.Body)] = time.UnixMilli(ms)
		}
		return len(handledAt) >= len(putAt)
	})
	var during []time.Duration // delays of the messages put from the SIGTERM on
	lost := 0
	for body, at := range putAt {
		h, ok := handledAt[body]
		if !ok {
			lost++
			continue
		}
		if !at.Before(restartAt) {
			during = append(during, h.Sub(at))
		}
	}
	slices.Sort(during)
	p99 := during[(len(during)*99+99)/100-1]
	t.Logf("%d messages put after the SIGTERM: p50 %s, p99 %s, max %s", len(during), during[len(during)/2], p99, during[len(during)-1])
	record(t, chaosRow{fmt.Sprintf("rolling restart, messages arriving (p99 delay %s)", p99.Round(time.Millisecond)), len(putAt), len(putAt) - lost, redeliveries(old, next), len(handledAt), lost, time.Since(start)})
	require.Less(t, p99, 10*time.Second, "a message put during the restart waits for no visibility timeout")
}

// TestChaosBurstAtTheCallbackQuota: 2,000 callback tasks at once through a Step
// Functions that throttles SendTask* at 20 burst / 5 per s (awstest.Throttle):
// all succeed, none dead-lettered, at most 1.1 SendTask* calls a task. The time
// the bucket let calls through, against what it allows ((tasks − burst) / rate),
// goes in BENCHMARKS.md; moto's part (the worker's start, closing the Map) is
// logged beside it.
func TestChaosBurstAtTheCallbackQuota(t *testing.T) {
	// 32 slots, not the finisher's 8: moto scans a 2,000-deep queue on every receive,
	// and 8 slots waiting on the limiter starve the worker of messages (BENCHMARKS.md).
	r := runThrottled(t, 2000, 20, 5, 20*time.Minute, "WORKER_CONCURRENCY=32")
	record(t, chaosRow{scenario: fmt.Sprintf("2000 callbacks at a 20/5 per s quota (%d throttled, %.3f calls/task, let through over %s = %.3f× ideal)",
		r.throttled, float64(r.calls)/float64(r.tasks), r.span.Round(100*time.Millisecond), r.span.Seconds()/r.ideal.Seconds()),
		sent: r.tasks, completed: r.tasks - r.failed, retried: r.retried, deadLettered: r.dlq, lost: r.failed, took: r.took})
	require.Zero(t, r.failed)
	require.Zero(t, r.dlq)
	require.LessOrEqual(t, float64(r.calls), 1.1*float64(r.tasks), "SendTask* calls per task")
}

//go:build fleet

// The fleet simulation of `make fleet` (issue 19 part 4): worker processes on the
// emulator as ECS would run them, each with its own ECS_AGENT_URI at a stand-in of
// the agent endpoint, and a controller that applies the terraform's target tracking
// and stops tasks the way ECS does. The scale-out test needs ElasticMQ for SQS (see
// TestFleetScaleOut). Run with `make fleet`, or:
// scripts/elasticmq.sh go test -tags fleet -count=1 -run Fleet -v ./cmd/worker
package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/ecsagenttest"
)

// The processes are built as shipped, without the race detector: its cost per
// message would be measured with the slots (the e2e protection tests run -race).
func init() { workerBuildFlags = nil }

// fleetConcurrency is each process's jobs at once, and the controller's target of
// messages (visible + in flight) per task: terraform's backlog_per_task, scaled to
// the simulation. 4 is a queue's default concurrency, what one ECS task of the
// terraform's default size (256 CPU units) runs.
const fleetConcurrency = 4

// jobService is the http job of the fleet's queue: it sleeps the detail's "ms" and
// counts starts, finishes, and runs cut short (the worker's request was cancelled:
// its process was stopped under it).
type jobService struct {
	started, finished, killed atomic.Int64
	wastedNanos               atomic.Int64
	lastFinishNanos           atomic.Int64 // Unix nanoseconds of the latest finish
}

// lastFinish is when the latest job finished.
func (s *jobService) lastFinish() time.Time { return time.Unix(0, s.lastFinishNanos.Load()) }

func (s *jobService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		MS int `json:"ms"`
	}
	_ = json.NewDecoder(r.Body).Decode(&in)
	s.started.Add(1)
	began := time.Now()
	select {
	case <-time.After(time.Duration(in.MS) * time.Millisecond):
		s.lastFinishNanos.Store(time.Now().UnixNano())
		s.finished.Add(1)
		_, _ = w.Write([]byte(`{}`))
	case <-r.Context().Done():
		s.killed.Add(1)
		s.wastedNanos.Add(int64(time.Since(began)))
	}
}

type fleetRig struct {
	t        *testing.T
	st       *stackEnv
	jobs     *jobService
	agent    *ecsagenttest.Agent
	agentURL string
	queue    string
	seq      int
	// The job queue's server: moto's (the stack's), or another (onElasticMQ).
	sqs     *sqs.Client
	url     string
	taskEnv []string // extra environment of every task
}

func newFleetRig(t *testing.T, extraEnv ...string) *fleetRig {
	t.Helper()
	rig := &fleetRig{t: t, jobs: &jobService{}, agent: ecsagenttest.New(), queue: "work"}
	jobsSrv := httptest.NewServer(rig.jobs)
	t.Cleanup(jobsSrv.Close)
	agentSrv := httptest.NewServer(rig.agent)
	t.Cleanup(agentSrv.Close)
	rig.agentURL = agentSrv.URL
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pass.asl.json"), []byte(`{"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "topology.json"), []byte(`{
	  "source": "fleet.worker",
	  "queues": [{"name": "work", "detailTypes": ["work"], "http": {"url": "`+jobsSrv.URL+`/work", "timeout": "5m"},
	    "concurrency": `+strconv.Itoa(fleetConcurrency)+`, "visibilityTimeoutSeconds": 30}],
	  "stateMachines": [{"name": "pass", "definition": "pass.asl.json"}]
	}`), 0o644))
	rig.st = newStack(t, "WORKER_TOPOLOGY="+filepath.Join(dir, "topology.json"), "WORKER_ROLES=jobs",
		"WORKER_LOG_LEVEL=info", "WORKER_HEARTBEAT_INTERVAL=0", "WORKER_POLL_WAIT=1s", "WORKER_TASK_PROTECTION_GRACE=1s",
		// Shorter than the long jobs: a task stopped under one cuts it.
		"WORKER_SHUTDOWN_TIMEOUT=3s")
	rig.st.env = append(rig.st.env, extraEnv...)
	rig.sqs, rig.url = rig.st.sqs, rig.st.out.Queues[rig.queue]
	return rig
}

// onElasticMQ moves the job queue to the ElasticMQ at endpoint and Step Functions
// to sfnURL for the tasks started from now on (the SDK's service endpoints,
// AWS_ENDPOINT_URL_SQS and _SFN); the stack's other services stay on moto. The
// queue and its DLQ get the stack's names there, so the worker finds them as it
// finds the stack's.
func (rig *fleetRig) onElasticMQ(endpoint, sfnURL string) {
	rig.t.Helper()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	rig.t.Cleanup(transport.CloseIdleConnections) // ElasticMQ keeps connections open: the leak check follows
	rig.sqs = sqs.NewFromConfig(awstest.Config(rig.t), func(o *sqs.Options) {
		o.BaseEndpoint, o.HTTPClient = aws.String(endpoint), &http.Client{Transport: transport}
	})
	ctx := context.Background()
	name := func(url string) string { return url[strings.LastIndex(url, "/")+1:] }
	dlq, err := rig.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name(rig.st.out.DLQs[rig.queue]))})
	require.NoError(rig.t, err)
	attrs, err := rig.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	require.NoError(rig.t, err)
	q, err := rig.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name(rig.st.out.Queues[rig.queue])), Attributes: map[string]string{
		"VisibilityTimeout": "30",
		"RedrivePolicy":     `{"deadLetterTargetArn":"` + attrs.Attributes["QueueArn"] + `","maxReceiveCount":"5"}`,
	}})
	require.NoError(rig.t, err)
	rig.url = aws.ToString(q.QueueUrl)
	rig.taskEnv = append(rig.taskEnv, "AWS_ENDPOINT_URL_SQS="+endpoint, "AWS_ENDPOINT_URL_SFN="+sfnURL)
}

// depth is visible + in-flight messages of the job queue.
func (rig *fleetRig) depth() int {
	rig.t.Helper()
	out, err := rig.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(rig.url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	require.NoError(rig.t, err)
	total := 0
	for _, v := range out.Attributes {
		n, _ := strconv.Atoi(v)
		total += n
	}
	return total
}

// task is one worker process, as an ECS task.
type task struct {
	name string
	proc *workerProc
}

func (rig *fleetRig) startTask() *task {
	rig.seq++
	name := fmt.Sprintf("task-%d", rig.seq)
	return &task{name: name, proc: rig.st.startWorker(append([]string{"ECS_AGENT_URI=" + ecsagenttest.URI(rig.agentURL, name)}, rig.taskEnv...)...)}
}

// send puts n job messages of ms each on the queue, 10 a call.
func (rig *fleetRig) send(n, ms int) {
	for start := 0; start < n; start += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for i := start; i < min(start+10, n); i++ {
			body := envelope("work", map[string]any{"TaskToken": fmt.Sprintf("fleet-%d-%d", time.Now().UnixNano(), i), "ms": ms})
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(body)})
		}
		_, err := rig.sqs.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(rig.url), Entries: entries})
		require.NoError(rig.t, err)
	}
}

func (rig *fleetRig) waitFinished(n int64, within time.Duration) {
	eventually(rig.t, within, fmt.Sprintf("%d jobs finished", n), func() bool { return rig.jobs.finished.Load() >= n })
}

var fleetReport = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)

// TestFleetScaleOut: messages/s of 1, 2 and 4 processes on 50 ms jobs. moto takes
// 10–26 messages/s off a queue, below one process's slots, so here SQS is
// ElasticMQ (TASKBRIDGE_ELASTICMQ_ENDPOINT, started by scripts/elasticmq.sh) and
// Step Functions a stub that answers SendTaskSuccess at once (sfnStub); the rest
// (the stack's account, the agent stand-in) is as in the scale-in test. A
// raw receive + delete loop on the same ElasticMQ shows what the server and the
// machine allow without a worker.
func TestFleetScaleOut(t *testing.T) {
	endpoint := os.Getenv("TASKBRIDGE_ELASTICMQ_ENDPOINT")
	if endpoint == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("TASKBRIDGE_ELASTICMQ_ENDPOINT is not set (CI=true, so this fails): run make fleet")
		}
		t.Skip("TASKBRIDGE_ELASTICMQ_ENDPOINT is not set: run make fleet (it starts ElasticMQ)")
	}
	rig := newFleetRig(t)
	stub := newSFNStub(t)
	rig.onElasticMQ(endpoint, stub.URL)
	const (
		rounds  = 3
		jobMS   = 50
		perTask = 1000 // messages per process a run: about 12 s at the slots' ceiling
	)
	// Not counted: ElasticMQ's JVM compiles its hot paths in the first thousands of
	// requests, and the first run would pay for it.
	rawQueueRate(t, rig, 10000)
	sizes := []int{1, 2, 4}
	rates := map[int][]float64{}
	for round := range rounds {
		order := slices.Clone(sizes)
		if round%2 == 1 { // the machine drifts: alternate the order
			slices.Reverse(order)
		}
		for _, n := range order {
			var tasks []*task
			for range n {
				tasks = append(tasks, rig.startTask()) // healthy: polling
			}
			before := rig.jobs.finished.Load()
			msgs := perTask * n
			began := time.Now()
			rig.send(msgs, jobMS)
			rig.waitFinished(before+int64(msgs), 5*time.Minute)
			rate := float64(msgs) / rig.jobs.lastFinish().Sub(began).Seconds()
			rates[n] = append(rates[n], rate)
			t.Logf("round %d, %d processes: %d jobs, %.1f messages/s", round+1, n, msgs, rate)
			for _, tk := range tasks {
				tk.proc.signal(syscall.SIGTERM)
				require.Zero(t, tk.proc.waitExit(time.Minute))
			}
			eventually(t, time.Minute, "the queue drained", func() bool { return rig.depth() == 0 })
		}
	}
	require.Zero(t, rig.jobs.killed.Load(), "a job was cut short")
	require.EqualValues(t, rig.jobs.finished.Load(), stub.succeeded.Load(), "every finished job reported its success once")
	raw := rawQueueRate(t, rig, perTask*4)
	one := median(rates[1])
	fmt.Fprintf(fleetReport, "processes\tmessages/s (%d ms jobs, concurrency %d each; median of %d)\trounds\tvs one\tslots' ceiling\n", jobMS, fleetConcurrency, rounds)
	for _, n := range sizes {
		fmt.Fprintf(fleetReport, "%d\t%.1f\t%s\t%.2f×\t%d\n", n, median(rates[n]), joinRates(rates[n]), median(rates[n])/one, n*fleetConcurrency*1000/jobMS)
	}
	fmt.Fprintf(fleetReport, "ElasticMQ alone\t%.0f (4 loops of receive 10 + delete batch, no job, %d queued)\t\t\t\n", raw, perTask*4)
	_ = fleetReport.Flush()
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func joinRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(parts, " / ")
}

// sfnStub stands for Step Functions with live tasks: SendTaskSuccess answers 200 at
// once, as for a token of a task that waits. Any other call is refused, so a call
// the scale-out run did not expect shows up as a failure.
type sfnStub struct {
	*httptest.Server
	succeeded atomic.Int64
}

func newSFNStub(t *testing.T) *sfnStub {
	s := &sfnStub{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		if r.Header.Get("X-Amz-Target") != "AWSStepFunctions.SendTaskSuccess" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"UnknownOperationException","message":"the scale-out stub answers SendTaskSuccess only"}`))
			return
		}
		s.succeeded.Add(1)
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(s.Close)
	return s
}

// rawQueueRate is messages/s that 4 loops of ReceiveMessage(10) +
// DeleteMessageBatch take from the rig's queue with n queued, with no worker: what
// the queue server (and the machine) allow.
func rawQueueRate(t *testing.T, rig *fleetRig, n int) float64 {
	rig.send(n, 0)
	var got atomic.Int64
	began := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for got.Load() < int64(n) && time.Since(began) < 5*time.Minute {
				out, err := rig.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(rig.url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				if err != nil || len(out.Messages) == 0 {
					continue
				}
				var entries []sqstypes.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if _, err := rig.sqs.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(rig.url), Entries: entries}); err == nil {
					got.Add(int64(len(entries)))
				}
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, n, got.Load(), "the raw loop drained the queue")
	return float64(got.Load()) / time.Since(began).Seconds()
}

// TestFleetScaleInKillsNoJob: 40 long jobs on a fleet that the controller scales out
// and back in as the backlog falls. Scale-in stops only unprotected tasks, so no job
// is cut short.
func TestFleetScaleInKillsNoJob(t *testing.T) {
	fmt.Fprintln(fleetReport, "scenario\tjobs\tstarted\tkilled mid-run\twasted job-s\ttasks stopped\tstops deferred (protected)\tpeak tasks\tmakespan\tideal (max tasks from the start)")
	// The control run has protection off: the same controller then stops busy tasks.
	for _, protect := range []bool{true, false} {
		name := "protected"
		var env []string
		if !protect {
			name, env = "unprotected (control)", []string{"WORKER_TASK_PROTECTION_MINUTES=0"}
		}
		t.Run(name, func(t *testing.T) {
			killed := fleetScaleIn(t, newFleetRig(t, env...), name)
			if protect {
				require.Zero(t, killed, "scale-in stopped a task under a running job")
			}
		})
	}
}

// fleetScaleIn runs the scale-in scenario, prints its row and returns the jobs killed
// mid-run.
func fleetScaleIn(t *testing.T, rig *fleetRig, name string) int64 {
	const (
		jobs      = 40
		jobLength = 8 * time.Second
		minTasks  = 1
		maxTasks  = 4
		tick      = time.Second
		outCool   = 3 * time.Second  // terraform's scale_out_cooldown (30 s) / 10
		inCool    = 12 * time.Second // terraform's scale_in_cooldown (120 s) / 10
	)
	tasks := []*task{rig.startTask()}
	began := time.Now()
	rig.send(jobs, int(jobLength/time.Millisecond))
	var lastOut, lastIn time.Time
	peak, stops, deferred := 1, 0, 0
	var stopping sync.WaitGroup
	for rig.jobs.finished.Load() < jobs && time.Since(began) < 5*time.Minute {
		time.Sleep(tick)
		// terraform: (visible + in flight) / running tasks, kept near the target:
		// desired = ceil(messages / target), clamped to min..max.
		backlog := rig.depth()
		desired := int(math.Ceil(float64(backlog) / fleetConcurrency))
		desired = max(minTasks, min(maxTasks, desired))
		now := time.Now()
		switch {
		case desired > len(tasks) && now.Sub(lastOut) >= outCool:
			for len(tasks) < desired {
				tasks = append(tasks, rig.startTask())
			}
			lastOut = now
			peak = max(peak, len(tasks))
		case desired < len(tasks) && now.Sub(lastIn) >= inCool && now.Sub(lastOut) >= inCool:
			// ECS stops tasks that are not protected; it waits for protected ones.
			excess := len(tasks) - desired
			var keep []*task
			for _, tk := range tasks {
				protected := rig.agent.Protected(tk.name)
				if excess > 0 && protected {
					deferred++
				}
				if excess > 0 && !protected {
					excess--
					stops++
					tk.proc.signal(syscall.SIGTERM)
					stopping.Go(func() { tk.proc.waitExit(time.Minute) })
					continue
				}
				keep = append(keep, tk)
			}
			if len(keep) < len(tasks) {
				lastIn = now
			}
			tasks = keep
		}
	}
	makespan := time.Since(began)
	stopping.Wait()
	rig.waitFinished(jobs, time.Minute)
	ideal := time.Duration(math.Ceil(float64(jobs)/(maxTasks*fleetConcurrency))) * jobLength
	wasted := time.Duration(rig.jobs.wastedNanos.Load())
	fmt.Fprintf(fleetReport, "%s: %d × %s jobs\t%d\t%d\t%d\t%.1f\t%d\t%d\t%d\t%s\t%s\n", name, jobs, jobLength, jobs, rig.jobs.started.Load(), rig.jobs.killed.Load(),
		wasted.Seconds(), stops, deferred, peak, makespan.Round(100*time.Millisecond), ideal)
	_ = fleetReport.Flush()
	return rig.jobs.killed.Load()
}

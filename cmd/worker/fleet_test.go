//go:build fleet

// The fleet simulation of `make fleet` (issue 19 part 4): worker processes on the
// emulator as ECS would run them, each with its own ECS_AGENT_URI at a stand-in of
// the agent endpoint, and a controller that applies the terraform's target tracking
// and stops tasks the way ECS does. Run with:
// go test -tags fleet -count=1 -run Fleet -v ./cmd/worker
package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
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

	"github.com/taskbridge/taskbridge/internal/ecsagenttest"
)

// fleetConcurrency is each process's jobs at once, and the controller's target of
// messages (visible + in flight) per task: terraform's backlog_per_task, scaled to
// the simulation.
const fleetConcurrency = 4

// jobService is the http job of the fleet's queue: it sleeps the detail's "ms" and
// counts starts, finishes, and runs cut short (the worker's request was cancelled:
// its process was stopped under it).
type jobService struct {
	started, finished, killed atomic.Int64
	wastedNanos               atomic.Int64
}

func (s *jobService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		MS int `json:"ms"`
	}
	_ = json.NewDecoder(r.Body).Decode(&in)
	s.started.Add(1)
	began := time.Now()
	select {
	case <-time.After(time.Duration(in.MS) * time.Millisecond):
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
	return rig
}

// task is one worker process, as an ECS task.
type task struct {
	name string
	proc *workerProc
}

func (rig *fleetRig) startTask() *task {
	rig.seq++
	name := fmt.Sprintf("task-%d", rig.seq)
	return &task{name: name, proc: rig.st.startWorker("ECS_AGENT_URI=" + ecsagenttest.URI(rig.agentURL, name))}
}

// send puts n job messages of ms each on the queue, 10 a call.
func (rig *fleetRig) send(n, ms int) {
	url := rig.st.out.Queues[rig.queue]
	for start := 0; start < n; start += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for i := start; i < min(start+10, n); i++ {
			body := envelope("work", map[string]any{"TaskToken": fmt.Sprintf("fleet-%d-%d", time.Now().UnixNano(), i), "ms": ms})
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(body)})
		}
		_, err := rig.st.sqs.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		require.NoError(rig.t, err)
	}
}

func (rig *fleetRig) waitFinished(n int64, within time.Duration) {
	eventually(rig.t, within, fmt.Sprintf("%d jobs finished", n), func() bool { return rig.jobs.finished.Load() >= n })
}

var fleetReport = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)

// TestFleetScaleOut: messages/s of 1, 2 and 4 processes on 50 ms jobs, and the
// emulator's own receive+delete rate with no job at all, which bounds them.
func TestFleetScaleOut(t *testing.T) {
	rig := newFleetRig(t)
	const perRun = 600
	rate := map[int]float64{}
	for _, n := range []int{1, 2, 4} {
		var tasks []*task
		for range n {
			tasks = append(tasks, rig.startTask())
		}
		before := rig.jobs.finished.Load()
		began := time.Now()
		rig.send(perRun, 50)
		rig.waitFinished(before+perRun, 5*time.Minute)
		rate[n] = perRun / time.Since(began).Seconds()
		for _, tk := range tasks {
			tk.proc.signal(syscall.SIGTERM)
			require.Zero(t, tk.proc.waitExit(time.Minute))
		}
		rig.st.requireQueuesDrain(time.Minute)
	}
	raw := rawEmulatorRate(t, rig, perRun) // as many queued as each run: moto scans the queue per receive
	fmt.Fprintln(fleetReport, "processes\tmessages/s (50 ms jobs, concurrency 4 each)\tvs one")
	for _, n := range []int{1, 2, 4} {
		fmt.Fprintf(fleetReport, "%d\t%.1f\t%.2f×\n", n, rate[n], rate[n]/rate[1])
	}
	fmt.Fprintf(fleetReport, "emulator alone\t%.1f (receive 10 + delete batch, 4 loops, no job)\t\n", raw)
	_ = fleetReport.Flush()
}

// rawEmulatorRate is messages/s that 4 loops of ReceiveMessage(10) +
// DeleteMessageBatch take from the queue, with no worker: the emulator's ceiling.
func rawEmulatorRate(t *testing.T, rig *fleetRig, n int) float64 {
	rig.send(n, 0)
	url := rig.st.out.Queues[rig.queue]
	var got atomic.Int64
	began := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for got.Load() < int64(n) {
				out, err := rig.st.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				if err != nil || len(out.Messages) == 0 {
					continue
				}
				var entries []sqstypes.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if _, err := rig.st.sqs.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries}); err == nil {
					got.Add(int64(len(entries)))
				}
			}
		})
	}
	wg.Wait()
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
		backlog := rig.st.queueDepth(rig.st.out.Queues[rig.queue])
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

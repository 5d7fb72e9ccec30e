package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/ecsagenttest"
)

// The first hour of a new user, second round (issue 29 items 4, 5, 6 and 8; issue 27
// item 8): each test runs what the user ran, the worker binary on the emulator.

// runWith runs the worker binary with env added to the stack's, to its end (within
// three minutes), and returns its exit code, stdout and stderr.
func (st *stackEnv) runWith(env []string, args ...string) (code int, stdout, stderr string) {
	st.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, st.bin, args...)
	cmd.Env = append(append([]string{}, st.env...), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errOut.String()
	}
	require.NoError(st.t, err)
	return 0, out.String(), errOut.String()
}

// Item 4: a taken metrics port stops `worker run` before any queue is polled, with
// an error that names WORKER_METRICS_ADDR; the default listens on loopback only.
func TestE2EMetricsPortTakenFailsBeforePolling(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	st := newStack(t, "WORKER_POLL_WAIT=20s")
	code, stdout, stderr := st.runWith([]string{"WORKER_METRICS_ADDR=" + taken.Addr().String()}, "run")
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stderr, "WORKER_METRICS_ADDR="+taken.Addr().String())
	require.Contains(t, stderr, "address already in use")
	require.NotContains(t, stdout+stderr, `"msg":"polling"`, "no poller started")

	_, config, _ := st.runWith(nil, "config")
	require.Regexp(t, `(?m)^WORKER_METRICS_ADDR\s+127\.0\.0\.1:9090\s`, config, "the default is this host only")
}

// Item 5: Ctrl-C says what the stop waits for (a long poll, how long); a second
// Ctrl-C stops at once, cancelling the running job and releasing its message, whose
// receive count is logged, and which no cut long poll strands.
func TestE2ESecondInterruptStopsAtOnceAndReleases(t *testing.T) {
	rig := newKindsRig(t)
	// The slow queue's visibility at 10 minutes: a stranded message cannot pass for
	// a released one.
	topo, err := os.ReadFile(rig.topology())
	require.NoError(t, err)
	longer := strings.Replace(string(topo), `"visibilityTimeoutSeconds": 20`, `"visibilityTimeoutSeconds": 600`, 1)
	require.NotEqual(t, string(topo), longer)
	require.NoError(t, os.WriteFile(rig.topology(), []byte(longer), 0o644))
	st := newStack(t, "WORKER_TOPOLOGY="+rig.topology(), "WORKER_POLL_WAIT=20s", "WORKER_SHUTDOWN_TIMEOUT=25s", "SLOW_SECONDS=600", "WORKER_ROLES=jobs")
	w := st.startWorker()
	st.start("slow", `{}`)
	eventually(t, time.Minute, "the slow command started", func() bool {
		_, err := os.Stat(rig.starts)
		return err == nil
	})

	w.signal(syscall.SIGINT)
	eventually(t, 10*time.Second, "the stop says what it waits for", func() bool {
		return strings.Contains(w.Logs(), "stopping: waiting for the long polls in flight to return")
	})
	stopping := regexp.MustCompile(`"msg":"stopping: waiting for the long polls[^\n]*"poll_wait":20,"drain_timeout":21`).FindString(w.Logs())
	require.NotEmpty(t, stopping, "the line gives the poll wait (20 s) and the drain (21 s)")

	w.signal(syscall.SIGINT)
	require.Zero(t, w.waitExit(30*time.Second), "exit 0 after the second Ctrl-C")
	logs := w.Logs()
	require.Contains(t, logs, "second signal: stopping at once")
	require.Contains(t, logs, "work cancelled: releasing unfinished messages", "the drain ended at the second signal")
	require.NotContains(t, logs, "drain timeout", "not by the drain's own end, 21 s later")
	released := regexp.MustCompile(`"msg":"released at shutdown; the interrupted run counts as a receive"[^\n]*"queue":"slow"[^\n]*"receive_count":1[^\n]*"max_receive_count":5`).FindString(logs)
	require.NotEmpty(t, released, "the release names its receive count and the queue's maximum:\n%s", tail(logs, 4096))
	// The second signal cut the slow queue's long poll, which goes on on the server
	// for up to its 20 s: the release outlasts it, or the poll would take the message
	// and strand it for the queue's 10 minutes.
	eventually(t, time.Minute, "the slow message is visible again once the cut poll ended", func() bool {
		return visibleCount(st, "slow") == 1
	})
}

// Item 6: the embedded topology is named where it is used without being chosen; a
// refused connection is told apart from a stack that is not there; a bad duration in
// a topology names its queue and line.
func TestE2EFallbacksAndHintsSayWhatHappened(t *testing.T) {
	st := newStack(t)
	w := st.startWorker()
	first, _, _ := strings.Cut(w.Logs(), "\n")
	require.Contains(t, first, `"topology":"embedded cookies topology (WORKER_TOPOLOGY is not set)"`, "the first log line")

	code, _, stderr := st.runWith([]string{"WORKER_STACK=not-bootstrapped"}, "status")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no queue not-bootstrapped-")
	require.Contains(t, stderr, "run `worker bootstrap` first?")
	require.Contains(t, stderr, "WORKER_TOPOLOGY is not set: the embedded cookies topology was used")

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := closed.Addr().String()
	closed.Close() // nothing listens there now
	code, _, stderr = st.runWith([]string{"AWS_ENDPOINT_URL=http://" + addr, "AWS_MAX_ATTEMPTS=1"}, "status")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "cannot reach the endpoint")
	require.NotContains(t, stderr, "bootstrap` first", "a refused connection is not a missing stack")

	dir := t.TempDir()
	topo := "{\n  \"source\": \"my.app\",\n  \"queues\": [\n    {\"name\": \"resize\", \"detailTypes\": [\"resize\"],\n     \"exec\": {\"command\": [\"cat\"], \"timeout\": \"30 minute\"}}\n  ]\n}\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "topology.json"), []byte(topo), 0o644))
	code, stdout, stderr := st.runWith(nil, "validate", filepath.Join(dir, "topology.json"))
	require.Equal(t, 1, code)
	require.Contains(t, stdout+stderr, `line 5, column 46: queue "resize": "30 minute" is not a duration`)
}

// Item 8: the http job endpoint of the guide, run as the guide gives it, serves a
// task (it answers POST).
func TestE2EGuideHTTPEndpointServesATask(t *testing.T) {
	guide, err := os.ReadFile("../../docs/guide.md")
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)```python\n(.*?)```").FindSubmatch(guide)
	require.NotNil(t, m, "the guide has the python endpoint")
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	script := strings.Replace(string(m[1]), "8080", port, 1)
	require.Contains(t, script, port, "the example listens on 8080, replaced by a free port")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "score.py"), []byte(script), 0o644))
	ctx, cancel := context.WithCancel(context.Background())
	server := exec.CommandContext(ctx, "python3", filepath.Join(dir, "score.py"))
	require.NoError(t, server.Start())
	t.Cleanup(func() { cancel(); _ = server.Wait() })

	require.NoError(t, os.MkdirAll(filepath.Join(dir, "asl"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "asl", "score.asl.json"), []byte(`{"StartAt": "score", "States": {`+kindsStep("score", "score", "")+`}}`), 0o644))
	topo, err := json.Marshal(map[string]any{
		"source":        "kinds.worker",
		"queues":        []any{map[string]any{"name": "score", "detailTypes": []string{"score"}, "http": map[string]any{"url": "http://" + addr + "/score"}}},
		"stateMachines": []any{map[string]any{"name": "score", "definition": "asl/score.asl.json"}},
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "topology.json"), topo, 0o644))
	st := newStack(t, "WORKER_TOPOLOGY="+filepath.Join(dir, "topology.json"))
	st.startWorker()
	arn := st.start("score", `{"name": "Ada"}`)
	d := st.waitExecution(arn, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	var out struct {
		Score map[string]float64 `json:"score"`
	}
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(d.Output)), &out))
	require.Positive(t, out.Score["score"], "the endpoint's answer is the task output: %s", aws.ToString(d.Output))
}

// Issue 27 item 8: an ECS agent that refuses protection for good (TASK_NOT_VALID)
// is asked a bounded number of times, and the worker says so once, at error.
func TestE2ETaskProtectionRefusedForGoodStopsAsking(t *testing.T) {
	agent := ecsagenttest.New()
	for range 100 {
		agent.FailNext(ecsagenttest.FaultFailure)
	}
	srv := httptest.NewServer(agent)
	t.Cleanup(srv.Close)
	st := newStack(t, "WORKER_ROLES=jobs")
	w := st.startWorker("ECS_AGENT_URI="+ecsagenttest.URI(srv.URL, "task-1"), "WORKER_TASK_PROTECTION_GRACE=1s")
	for range 3 {
		st.sendRaw("getMultiple", "not JSON") // a message in hand: protection is asked for
	}
	eventually(t, time.Minute, "the worker stops asking", func() bool { return w.metric("worker_task_protection_disabled") == 1 })
	asked := agent.Refused()
	st.sendRaw("getMultiple", "not JSON either")
	eventually(t, 30*time.Second, "the last bad message went to the DLQ", func() bool {
		return st.queueDepth(st.out.DLQs["getMultiple"]) == 4
	})
	require.Equal(t, asked, agent.Refused(), "no more calls after it gave up")
	require.LessOrEqual(t, asked, 3)
	require.Equal(t, 1, strings.Count(w.Logs(), "ECS refuses task scale-in protection for this task"), "said once")
}

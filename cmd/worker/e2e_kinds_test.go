package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"
)

// kindsStep is one putEvents.waitForTaskToken step of the kinds test's state
// machines; the detail carries the whole state as "input".
func kindsStep(name, detailType, next string) string {
	end := `"End": true`
	if next != "" {
		end = `"Next": "` + next + `"`
	}
	return `"` + name + `": {"Type": "Task", "Resource": "arn:${partition}:states:::events:putEvents.waitForTaskToken",
	  "Parameters": {"Entries": [{"EventBusName": "${event_bus_name}", "Source": "kinds.test", "DetailType": "` + detailType + `",
	    "Detail": {"TaskToken.$": "$$.Task.Token", "executionArn.$": "$$.Execution.Id", "input.$": "$"}}]},
	  "TimeoutSeconds": 300, "HeartbeatSeconds": 120, "ResultPath": "$.` + name + `", ` + end + `}`
}

// kindsRig is a topology of exec, http and startExecution queues, written to a
// folder outside the repository, with its scripts and a local HTTP service.
type kindsRig struct {
	dir      string
	starts   string // file the slow command appends a line to per start
	svc      *httptest.Server
	calls500 atomic.Int32
}

func newKindsRig(t *testing.T) *kindsRig {
	t.Helper()
	rig := &kindsRig{dir: t.TempDir()}
	rig.starts = filepath.Join(rig.dir, "starts.log")
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	rig.svc = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in map[string]any
		_ = json.NewDecoder(r.Body).Decode(&in)
		switch r.URL.Path {
		case "/score":
			if _, ok := in["TaskToken"]; ok {
				http.Error(w, "the token must not reach a sidecar", http.StatusBadRequest)
				return
			}
			if rig.calls500.Add(1) == 1 {
				http.Error(w, "warming up", http.StatusInternalServerError)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"score": 42, "sawInput": in["input"] != nil})
		case "/missing":
			http.NotFound(w, r)
		case "/hang":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(rig.svc.Close)
	write := func(name, body string, mode os.FileMode) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(rig.dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(rig.dir, name), []byte(body), mode))
	}
	write("bin/resize.sh", "#!/bin/sh\n# reads the detail on stdin, answers JSON\ncat > /dev/null\necho '{\"resized\": true}'\n", 0o755)
	write("bin/fail.sh", "#!/bin/sh\ncat > /dev/null\necho 'disk quota exceeded on /scratch' >&2\nexit 3\n", 0o755)
	write("bin/slow.sh", "#!/bin/sh\ncat > /dev/null\necho start >> "+rig.starts+"\nsleep ${SLOW_SECONDS:-45}\necho '{\"slept\": true}'\n", 0o755)
	write("asl/pipeline.asl.json", `{"StartAt": "resize", "States": {`+kindsStep("resize", "resize", "score")+`, `+kindsStep("score", "score", "")+`}}`, 0o644)
	write("asl/failing.asl.json", `{"StartAt": "fail", "States": {`+kindsStep("fail", "fail", "")+`}}`, 0o644)
	write("asl/slow.asl.json", `{"StartAt": "slow", "States": {`+kindsStep("slow", "slow", "")+`}}`, 0o644)
	write("asl/http404.asl.json", `{"StartAt": "missing", "States": {`+kindsStep("missing", "missing", "")+`}}`, 0o644)
	write("asl/hang.asl.json", `{"StartAt": "hang", "States": {`+kindsStep("hang", "hang", "")+`}}`, 0o644)
	write("asl/target.asl.json", `{"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}}`, 0o644)
	write("topology.json", `{
	  "source": "kinds.worker",
	  "queues": [
	    {"name": "resize", "detailTypes": ["resize"], "exec": {"command": ["bin/resize.sh"], "timeout": "1m"}},
	    {"name": "score", "detailTypes": ["score"], "http": {"url": "`+rig.svc.URL+`/score", "timeout": "5s"}},
	    {"name": "fail", "detailTypes": ["fail"], "exec": {"command": ["./bin/fail.sh"]}},
	    {"name": "slow", "detailTypes": ["slow"], "exec": {"command": ["bin/slow.sh"], "timeout": "5m"}, "visibilityTimeoutSeconds": 20},
	    {"name": "missing", "detailTypes": ["missing"], "http": {"url": "`+rig.svc.URL+`/missing"}},
	    {"name": "hang", "detailTypes": ["hang"], "http": {"url": "`+rig.svc.URL+`/hang", "timeout": "10m"}, "concurrency": 1},
	    {"name": "next", "detailTypes": ["etl-success"], "sources": ["kinds.test"], "startExecution": {"stateMachine": "target"}}
	  ],
	  "stateMachines": [
	    {"name": "pipeline", "definition": "asl/pipeline.asl.json"},
	    {"name": "failing", "definition": "asl/failing.asl.json"},
	    {"name": "slow", "definition": "asl/slow.asl.json"},
	    {"name": "http404", "definition": "asl/http404.asl.json"},
	    {"name": "hang", "definition": "asl/hang.asl.json"},
	    {"name": "target", "definition": "asl/target.asl.json"}
	  ]
	}`, 0o644)
	return rig
}

func (rig *kindsRig) topology() string { return filepath.Join(rig.dir, "topology.json") }

func (st *stackEnv) start(stateMachine, input string) string {
	st.t.Helper()
	return strings.TrimSpace(st.cli("start", "--state-machine", stateMachine, "--input", input))
}

// TestE2EJobKinds: exec, http and startExecution queues of a topology the repository
// does not hold, served by bin/worker on moto.
func TestE2EJobKinds(t *testing.T) {
	rig := newKindsRig(t)
	st := newStack(t, "WORKER_TOPOLOGY="+rig.topology())
	require.Contains(t, st.cli("validate"), "7 queues, 6 state machines: ok")
	w := st.startWorker()

	hung := st.start("hang", `{}`) // holds the hang queue's only slot from now on
	pipeline := st.start("pipeline", `{"image": "cat.png"}`)
	failing := st.start("failing", `{}`)
	missing := st.start("http404", `{}`)

	// exec, then http: the outputs arrive as task outputs; a 500 was retried.
	d := st.waitExecution(pipeline, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	var out struct {
		Resize map[string]any `json:"resize"`
		Score  map[string]any `json:"score"`
	}
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(d.Output)), &out))
	require.Equal(t, map[string]any{"resized": true}, out.Resize)
	require.Equal(t, map[string]any{"score": float64(42), "sawInput": true}, out.Score)
	require.GreaterOrEqual(t, rig.calls500.Load(), int32(2), "the 500 was retried")

	// A command that exits 3: the job and the exit code name the failure.
	d = st.waitExecution(failing, time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Equal(t, "fail.Exit3", aws.ToString(d.Error))
	require.Contains(t, w.Logs(), "disk quota exceeded", "stderr's tail is the cause")

	// A 404 fails at once, naming the job; the hanging endpoint held up nothing else.
	d = st.waitExecution(missing, time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Equal(t, "missing.HTTP404", aws.ToString(d.Error))
	h, err := st.sfn.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: aws.String(hung)})
	require.NoError(t, err)
	require.Equal(t, sfntypes.ExecutionStatusRunning, h.Status, "the hanging call is still waiting")

	// startExecution: the same event twice starts one execution, with the detail as input.
	event := envelope("etl-success", map[string]any{"batchId": "b-1", "fileCount": 3})
	st.sendRaw("next", event)
	st.sendRaw("next", event)
	target := st.out.StateMachines["target"]
	var execs []sfntypes.ExecutionListItem
	eventually(t, time.Minute, "the target state machine ran", func() bool {
		list, err := st.sfn.ListExecutions(context.Background(), &sfn.ListExecutionsInput{StateMachineArn: aws.String(target)})
		require.NoError(t, err)
		execs = list.Executions
		return len(execs) > 0 && st.queueDepth(st.out.Queues["next"]) == 0
	})
	time.Sleep(2 * time.Second) // a second execution would have started by now
	list, err := st.sfn.ListExecutions(context.Background(), &sfn.ListExecutionsInput{StateMachineArn: aws.String(target)})
	require.NoError(t, err)
	require.Len(t, list.Executions, 1, "one event, one execution")
	desc, err := st.sfn.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: list.Executions[0].ExecutionArn})
	require.NoError(t, err)
	require.JSONEq(t, `{"batchId": "b-1", "fileCount": 3}`, aws.ToString(desc.Input))
}

// TestE2EExecOutlivesItsVisibilityTimeout: a command that runs 45 s on a queue with
// a 20 s visibility timeout succeeds, and it started exactly once.
func TestE2EExecOutlivesItsVisibilityTimeout(t *testing.T) {
	rig := newKindsRig(t)
	st := newStack(t, "WORKER_TOPOLOGY="+rig.topology(), "WORKER_HEARTBEAT_INTERVAL=10s")
	st.startWorker()
	arn := st.start("slow", `{}`)
	d := st.waitExecution(arn, 3*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	require.JSONEq(t, `{"slow": {"slept": true}}`, aws.ToString(d.Output))
	b, err := os.ReadFile(rig.starts)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(b), "start"), "the command started exactly once")
}

// TestE2EExecStopsOnShutdown: SIGTERM while a command runs stops its process group
// and the worker exits 0 within the shutdown timeout; after a restart the task
// succeeds.
func TestE2EExecStopsOnShutdown(t *testing.T) {
	rig := newKindsRig(t)
	st := newStack(t, "WORKER_TOPOLOGY="+rig.topology(), "WORKER_SHUTDOWN_TIMEOUT=10s", "SLOW_SECONDS=613")
	w := st.startWorker()
	arn := st.start("slow", `{}`)
	eventually(t, time.Minute, "the command started", func() bool {
		b, _ := os.ReadFile(rig.starts)
		return strings.Contains(string(b), "start")
	})
	pids := append(commandPIDs(t, "slow.sh"), commandPIDs(t, "sleep\x00613")...)
	require.NotEmpty(t, pids)
	began := time.Now()
	w.signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not exit after SIGTERM")
	}
	require.NoError(t, w.waitErr, "exit 0")
	require.Less(t, time.Since(began), 12*time.Second, "within the shutdown timeout")
	for _, pid := range pids {
		require.False(t, processRunning(pid), "process %d is gone (or a zombie left to init)", pid)
	}

	// The next worker runs it again (the message comes back after its visibility
	// timeout, 20 s), this time briefly.
	st.env = append(st.env, "SLOW_SECONDS=1")
	st.startWorker()
	d := st.waitExecution(arn, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
}

// processRunning reports whether pid is a live process: neither gone nor a zombie
// (a killed grandchild is reparented to init, which reaps it in its own time).
func processRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// commandPIDs lists the processes whose command line mentions name.
func commandPIDs(t *testing.T, name string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.Contains(string(b), name) {
			pids = append(pids, pid)
		}
	}
	return pids
}

package main_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/telemetry/promtest"
)

// dlqStep is a callback step with a long timeout and no heartbeat: an execution
// that waits on it is still waiting when its message is redriven.
func dlqStep(detailType string) string {
	return `{"StartAt": "s", "States": {"s": {"Type": "Task", "Resource": "arn:${partition}:states:::events:putEvents.waitForTaskToken",
	  "Parameters": {"Entries": [{"EventBusName": "${event_bus_name}", "Source": "dlq.test", "DetailType": "` + detailType + `",
	    "Detail": {"TaskToken.$": "$$.Task.Token", "executionArn.$": "$$.Execution.Id", "input.$": "$"}}]},
	  "TimeoutSeconds": 900, "End": true}}}`
}

func dlqTopology(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"work.asl.json":  dlqStep("work"),
		"flaky.asl.json": dlqStep("flaky"),
		"topology.json": `{"source": "dlq.worker", "queues": [
		    {"name": "work", "detailTypes": ["work"], "exec": {"command": ["cat"]}, "maxReceiveCount": 2, "visibilityTimeoutSeconds": 5},
		    {"name": "flaky", "detailTypes": ["flaky"], "exec": {"command": ["sh", "-c", "cat > /dev/null; exit 75"]}, "maxReceiveCount": 2, "visibilityTimeoutSeconds": 5}],
		  "stateMachines": [{"name": "work", "definition": "work.asl.json"}, {"name": "flaky", "definition": "flaky.asl.json"}]}`,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return filepath.Join(dir, "topology.json")
}

// exitCode runs a worker subcommand and returns its exit code and stdout.
func (st *stackEnv) exitCode(args ...string) (int, string) {
	st.t.Helper()
	cmd := exec.Command(st.bin, args...)
	cmd.Env = st.env
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	require.NoError(st.t, err)
	return 0, string(out)
}

// TestE2EDeadLettersInspectedAndRedriven: bad input and tasks whose outcome could
// not be reported land in the DLQ; `dlq list` groups them by reason; once Step
// Functions is reachable again, a redrive completes the executions that still wait,
// a redrive killed mid-way loses nothing, a closed task's message is skipped; status
// says 1 while a DLQ holds messages, 0 after the purge.
func TestE2EDeadLettersInspectedAndRedriven(t *testing.T) {
	st := newStack(t, "WORKER_TOPOLOGY="+dlqTopology(t))
	require.Equal(t, 0, func() int { c, _ := st.exitCode("status"); return c }(), "no dead letters yet")

	// 1. A worker that cannot reach Step Functions (a missing permission, a network
	// rule): it runs the jobs but cannot report; SQS's redrive takes the messages
	// after two receives. Bad input goes to the DLQ at once, with the worker's reason.
	broken := st.startWorker("AWS_ENDPOINT_URL_SFN=http://127.0.0.1:1")
	var waiting []string
	for range 3 {
		waiting = append(waiting, st.start("work", `{"n": 1}`))
	}
	st.sendRaw("work", "not JSON at all")
	st.sendRaw("work", envelope("nope", map[string]any{"x": 1}))
	st.sendRaw("work", envelope("work", map[string]any{"x": 1}))
	eventually(t, 3*time.Minute, "six dead letters", func() bool { return st.queueDepth(st.out.DLQs["work"]) == 6 })
	broken.signal(15)
	<-broken.done

	code, text := st.exitCode("status")
	require.Equal(t, 1, code, "status fails while a DLQ holds messages")
	t.Logf("worker status:\n%s", text)
	text = st.cli("dlq", "list")
	t.Logf("worker dlq list:\n%s", text)
	require.Contains(t, text, "3 × maxReceiveCount exceeded")
	var listed struct {
		Queues []struct {
			Queue  string
			Depth  int
			Groups []struct {
				Reason   string
				Count    int
				Messages []struct {
					ExecutionARN string `json:"executionArn"`
					ReceiveCount int    `json:"receiveCount"`
				}
			}
		}
	}
	out := st.cli("dlq", "list", "--queue", "work", "--output", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Len(t, listed.Queues, 1)
	require.Equal(t, 6, listed.Queues[0].Depth)
	reasons := map[string]int{}
	for _, g := range listed.Queues[0].Groups {
		reasons[g.Reason] = g.Count
		if g.Reason == "maxReceiveCount exceeded" {
			for _, m := range g.Messages {
				require.Contains(t, waiting, m.ExecutionARN)
				require.GreaterOrEqual(t, m.ReceiveCount, 2)
			}
		}
	}
	require.Len(t, reasons, 4, "%v", reasons)
	require.Equal(t, 3, reasons["maxReceiveCount exceeded"], "%v", reasons)
	for reason := range reasons {
		switch {
		case reason == "maxReceiveCount exceeded", strings.Contains(reason, "malformed"),
			strings.Contains(reason, `detail-type "nope"`), strings.Contains(reason, "MissingToken") || strings.Contains(reason, "token"):
		default:
			t.Errorf("unexpected reason %q", reason)
		}
	}

	// 2. A redrive killed mid-way (SIGKILL after its first move) loses nothing.
	redrive := exec.Command(st.bin, "dlq", "redrive", "--queue", "work", "--reason", "maxReceiveCount", "--rate", "0.5")
	redrive.Env = st.env
	stdout, err := redrive.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, redrive.Start())
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "moved ") {
			break
		}
	}
	require.NoError(t, redrive.Process.Kill())
	_ = redrive.Wait()
	inQueue := st.queueDepth(st.out.Queues["work"])
	require.GreaterOrEqual(t, inQueue, 1, "the moved message is in its queue")
	require.GreaterOrEqual(t, inQueue+st.queueDepth(st.out.DLQs["work"]), 6, "every message is in the DLQ or the queue")

	// 3. Step Functions reachable again: redrive completes every waiting execution.
	st.startWorker()
	eventually(t, 3*time.Minute, "every waiting execution succeeds after redrives", func() bool {
		st.cli("dlq", "redrive", "--queue", "work", "--reason", "maxReceiveCount", "--rate", "10", "--output", "json")
		for _, arn := range waiting {
			if st.waitExecution(arn, time.Minute).Status == sfntypes.ExecutionStatusRunning {
				return false
			}
		}
		return true
	})
	for _, arn := range waiting {
		d := st.waitExecution(arn, time.Minute)
		require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s %s", arn, aws.ToString(d.Error), aws.ToString(d.Cause))
	}

	// 4. A job that fails on its last receive: the worker fails the task, then
	// dead-letters the message; its redrive is skipped, the message stays.
	failed := st.start("flaky", `{}`)
	require.Equal(t, sfntypes.ExecutionStatusFailed, st.waitExecution(failed, 2*time.Minute).Status)
	eventually(t, time.Minute, "the flaky message is dead-lettered", func() bool { return st.queueDepth(st.out.DLQs["flaky"]) == 1 })
	var sum struct{ Moved, Skipped, Left int }
	out = st.cli("dlq", "redrive", "--queue", "flaky", "--output", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &sum), out)
	require.Equal(t, struct{ Moved, Skipped, Left int }{0, 1, 0}, sum, out)
	shown := st.cli("dlq", "show", "--queue", "flaky")
	require.Regexp(t, `"TaskToken": ?"<redacted token [0-9a-f]+>"`, shown)
	require.Contains(t, shown, "exited 75", shown)

	// 5. What is left cannot succeed: purge (only with --yes), and status is 0.
	code, _ = st.exitCode("dlq", "purge", "--queue", "work")
	require.Equal(t, 2, code, "purge refuses without --yes")
	st.cli("dlq", "purge", "--queue", "work", "--yes")
	st.cli("dlq", "purge", "--queue", "flaky", "--yes")
	eventually(t, time.Minute, "status says all clear", func() bool { c, _ := st.exitCode("status"); return c == 0 })
	_, status := st.exitCode("status", "--output", "json")
	require.Contains(t, status, `"running": 0`, status)
}

// TestE2EDashboardKindPanelsWithoutSuchQueues: with the cookies topology (no exec,
// http or startExecution queue) the job-kind panels read one 0 series that says
// there is no such queue, not "No data".
func TestE2EDashboardKindPanelsWithoutSuchQueues(t *testing.T) {
	promtest.Binary(t, "prometheus")
	st := newStack(t)
	w := st.startWorker()
	prom := promtest.Start(t, w.addr)
	prom.WaitForScrape(30 * time.Second)
	queries, err := promtest.Queries("../../deploy/observability/grafana/dashboards/taskbridge.json", "")
	require.NoError(t, err)
	kinds := 0
	for _, r := range prom.EvalAll(queries) {
		if !strings.Contains(r.Expr, "worker_exec_") && !strings.Contains(r.Expr, "worker_http_") && !strings.Contains(r.Expr, "worker_start_executions") {
			continue
		}
		kinds++
		require.NoError(t, r.Err, "%s evaluates", r.Source)
		require.Equal(t, 1, r.Series, "%s reads one series: %s", r.Source, r.Expr)
	}
	require.Equal(t, 7, kinds, "the job-kind panels' queries")
}

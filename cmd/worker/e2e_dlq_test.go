package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
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

// runningOf counts the executions of arns that are still RUNNING, without waiting.
func (st *stackEnv) runningOf(arns []string) int {
	st.t.Helper()
	n := 0
	for _, arn := range arns {
		d, err := st.sfn.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		require.NoError(st.t, err)
		if d.Status == sfntypes.ExecutionStatusRunning {
			n++
		}
	}
	return n
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
	// A message the killed redrive had received is hidden until its visibility ends
	// (a killed process cannot give it back): redrive again until each execution ended.
	// The check must not block: a one-minute wait per execution here once failed the
	// test while that message was still hidden (a blocking wait of the harness
	// fails, it does not return RUNNING).
	st.startWorker()
	eventually(t, 3*time.Minute, "every waiting execution succeeds after redrives", func() bool {
		st.cli("dlq", "redrive", "--queue", "work", "--reason", "maxReceiveCount", "--rate", "10", "--output", "json")
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && st.runningOf(waiting) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		return st.runningOf(waiting) == 0
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

// run runs a worker subcommand and returns its exit code, stdout and stderr.
func (st *stackEnv) run(args ...string) (code int, stdout, stderr string) {
	st.t.Helper()
	return st.runWith(nil, args...)
}

// TestE2EStartWaitShowsTheCauseAndTheDLQStaysVisible: what a user runs after a
// failed `worker start --wait` on moto, which keeps no failure causes. The cause of
// a job that exited 3 (its message deleted) comes from the worker's failure note;
// the cause of one that dead-lettered comes from the DLQ, and that read leaves the
// message visible: list, show, redrive and status, run right after, all see it.
func TestE2EStartWaitShowsTheCauseAndTheDLQStaysVisible(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"broken.asl.json": dlqStep("broken"),
		"flaky.asl.json":  dlqStep("flaky"),
		"topology.json": `{"source": "dlq.worker", "queues": [
		    {"name": "broken", "detailTypes": ["broken"], "exec": {"command": ["sh", "-c", "cat > /dev/null; echo 'disk full on /data' >&2; exit 3"]}, "maxReceiveCount": 2, "visibilityTimeoutSeconds": 5},
		    {"name": "flaky", "detailTypes": ["flaky"], "exec": {"command": ["sh", "-c", "cat > /dev/null; echo 'upstream 503' >&2; exit 75"]}, "maxReceiveCount": 2, "visibilityTimeoutSeconds": 5}],
		  "stateMachines": [{"name": "broken", "definition": "broken.asl.json"}, {"name": "flaky", "definition": "flaky.asl.json"}]}`,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	st := newStack(t, "WORKER_TOPOLOGY="+filepath.Join(dir, "topology.json"))
	st.startWorker()

	code, _, stderr := st.run("start", "--state-machine", "broken", "--input", "{}", "--wait", "--timeout", "2m")
	t.Logf("start --wait (broken):\n%s", stderr)
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "broken.Exit3")
	require.Contains(t, stderr, "disk full on /data", "the cause, from the worker's failure note")
	require.Contains(t, stderr, "taskbridge-last-failure.json")
	require.Zero(t, st.queueDepth(st.out.DLQs["broken"]), "a final failure is deleted, not dead-lettered")

	code, _, stderr = st.run("start", "--state-machine", "flaky", "--input", "{}", "--wait", "--timeout", "2m")
	t.Logf("start --wait (flaky):\n%s", stderr)
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "upstream 503")
	require.Contains(t, stderr, "from DLQ flaky")
	require.Contains(t, stderr, "worker dlq redrive --queue flaky --executions --dry-run", "start says how to redrive it")

	// Right after: every command sees the dead letter (visible, not in flight).
	var listed struct {
		Queues []struct{ Depth, Read int }
	}
	out := st.cli("dlq", "list", "--queue", "flaky", "--output", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Equal(t, []struct{ Depth, Read int }{{1, 1}}, listed.Queues, out)
	shown := st.cli("dlq", "show", "--queue", "flaky", "--limit", "5")
	require.Contains(t, shown, "upstream 503", shown)
	require.Contains(t, shown, "dead since", "the worker's copy says when it was dead-lettered")
	var sum struct{ Moved, Skipped, Left int }
	out = st.cli("dlq", "redrive", "--queue", "flaky", "--dry-run", "--output", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &sum), out)
	require.Equal(t, 1, sum.Moved+sum.Skipped+sum.Left, "the redrive sees it: %s", out)
	out = st.cli("dlq", "redrive", "--queue", "flaky", "--dry-run") // as operations.md shows it
	require.Regexp(t, `flaky: would move \d+, skipped \d+ \(task closed, or dead-lettered during this redrive\), left \d+`, out)
	code, out, _ = st.run("status", "--output", "json")
	require.Equal(t, 1, code)
	require.Regexp(t, `"queue": "flaky",[^}]*"visible": 0,[^}]*"dlq": 1`, out)
	out = st.cli("dlq", "list", "--queue", "flaky", "--output", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Equal(t, []struct{ Depth, Read int }{{1, 1}}, listed.Queues, "still visible after all those reads: %s", out)

	// The worker failed that execution (RetriesExhausted on the last receive): status
	// lists it as redrivable, and `dlq redrive --executions` would redrive it. moto
	// has no RedriveExecution: the command says so plainly, fails, and deletes nothing.
	flaky := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(stderr, "\n", 2)[0], "started ")) // start's first line
	require.True(t, strings.HasPrefix(flaky, "arn:"), stderr)
	_, text, _ := st.run("status")
	t.Logf("worker status:\n%s", text)
	require.Contains(t, text, "redrivable executions")
	require.Contains(t, text, flaky)
	out = st.cli("dlq", "redrive", "--queue", "flaky", "--executions", "--dry-run")
	t.Logf("dlq redrive --executions --dry-run:\n%s", out)
	require.Contains(t, out, "would_redrive_execution")
	require.Contains(t, out, "executions would redrive 1 (1 dead letters), skipped 0, left 0")
	code, out, stderr = st.run("dlq", "redrive", "--queue", "flaky", "--executions")
	t.Logf("dlq redrive --executions:\n%s%s", out, stderr)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "does not implement Step Functions RedriveExecution")
	require.Equal(t, 1, st.queueDepth(st.out.DLQs["flaky"]), "nothing deleted")
}

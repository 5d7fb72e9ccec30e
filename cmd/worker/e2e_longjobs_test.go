package main_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/cli"
)

// testCap is SQS's 12 h visibility cap scaled down (WORKER_TEST_VISIBILITY_CAP);
// the long job runs three times as long.
const (
	testCap  = 30 * time.Second
	longRun  = 3 * testCap
	longStep = `"long": {"Type": "Task", "Resource": "arn:${partition}:states:::events:putEvents.waitForTaskToken",
	  "Parameters": {"Entries": [{"EventBusName": "${event_bus_name}", "Source": "long.test", "DetailType": "long",
	    "Detail": {"TaskToken.$": "$$.Task.Token", "executionArn.$": "$$.Execution.Id"}}]},
	  "TimeoutSeconds": 600, "HeartbeatSeconds": 60, "End": true}`
)

// longRig is a topology with one exec queue whose command runs longRun and notes
// each start (its process group id) in a file.
type longRig struct {
	dir, starts string
}

func newLongRig(t *testing.T) *longRig {
	t.Helper()
	rig := &longRig{dir: t.TempDir()}
	rig.starts = filepath.Join(rig.dir, "starts.log")
	write := func(name, body string, mode os.FileMode) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(rig.dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(rig.dir, name), []byte(body), mode))
	}
	write("bin/train.sh", "#!/bin/sh\ncat > /dev/null\necho \"$$\" >> "+rig.starts+"\nsleep "+strconv.Itoa(int(longRun/time.Second))+"\necho '{\"trained\": true}'\n", 0o755)
	write("asl/long.asl.json", `{"StartAt": "long", "States": {`+longStep+`}}`, 0o644)
	write("topology.json", `{
	  "source": "long.worker",
	  "queues": [{"name": "train", "detailTypes": ["long"], "sources": ["long.test"], "exec": {"command": ["bin/train.sh"], "timeout": "5m"}, "visibilityTimeoutSeconds": 10}],
	  "stateMachines": [{"name": "long", "definition": "asl/long.asl.json"}]
	}`, 0o644)
	// A killed worker leaves its command running: stop every one at the end.
	t.Cleanup(func() {
		for _, pid := range rig.startedPIDs() {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	})
	return rig
}

func (rig *longRig) startedPIDs() []int {
	b, _ := os.ReadFile(rig.starts)
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (rig *longRig) env() []string {
	return []string{"WORKER_TOPOLOGY=" + filepath.Join(rig.dir, "topology.json"), "WORKER_TEST_VISIBILITY_CAP=" + testCap.String(), "WORKER_HEARTBEAT_INTERVAL=10s"}
}

// TestE2ELongJobOutlivesTheVisibilityCap: a job three times SQS's visibility cap
// (scaled down to 30 s) is handed on before the cap under a lease, runs once (one
// process started), and its task succeeds; its continuation is hidden while the
// lease lives and dropped once the job is done.
func TestE2ELongJobOutlivesTheVisibilityCap(t *testing.T) {
	rig := newLongRig(t)
	st := newStack(t, rig.env()...)
	w := st.startWorker()
	arn := st.start("long", `{}`)
	d := st.waitExecution(arn, longRun+2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	require.JSONEq(t, `{"trained": true}`, aws.ToString(d.Output))
	require.Len(t, rig.startedPIDs(), 1, "the command started exactly once")
	logs := w.Logs()
	require.Contains(t, logs, "long job handed on before SQS's visibility cap")
	require.Contains(t, logs, "continuation hidden: its lease is alive", "a continuation received while the lease lived was hidden")
	st.requireQueuesDrain(time.Minute) // the continuation is dropped once the job is done
	require.Contains(t, w.Logs(), "continuation of a finished job dropped")
	require.NotContains(t, logs, "taken over")
}

// TestE2ELongJobTakenOverAfterItsWorkerIsKilled: the worker running a handed-on
// job is SIGKILLed; another worker takes the job over within the lease's TTL +
// 30 s, and the task succeeds once.
func TestE2ELongJobTakenOverAfterItsWorkerIsKilled(t *testing.T) {
	rig := newLongRig(t)
	st := newStack(t, rig.env()...)
	first := st.startWorker()
	arn := st.start("long", `{}`)
	eventually(t, testCap+30*time.Second, "the job is handed on", func() bool {
		return strings.Contains(first.Logs(), "long job handed on before SQS's visibility cap")
	})
	first.signal(syscall.SIGKILL)
	killed := time.Now()
	<-first.done
	second := st.startWorker()
	ttl := cli.LeaseTTL(testCap)
	eventually(t, ttl+30*time.Second, "another worker takes the job over", func() bool {
		return strings.Contains(second.Logs(), "long job taken over from a dead or released lease")
	})
	took := time.Since(killed)
	t.Logf("taken over %s after the SIGKILL (lease TTL %s)", took.Round(100*time.Millisecond), ttl)
	require.Less(t, took, ttl+30*time.Second)

	d := st.waitExecution(arn, longRun+2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	require.JSONEq(t, `{"trained": true}`, aws.ToString(d.Output))
	require.Len(t, rig.startedPIDs(), 2, "the killed worker's run and the taker's")
	st.requireQueuesDrain(time.Minute)
	require.Equal(t, 1, strings.Count(second.Logs(), "long job taken over"), "one taker")
}

// TestE2ELongJobReleasedAtShutdownRunsOnElsewhere: SIGTERM after the hand-over
// stops the command and releases the lease (the worker exits 0); the next worker
// takes the job over without waiting out the lease, and the task succeeds once.
func TestE2ELongJobReleasedAtShutdownRunsOnElsewhere(t *testing.T) {
	rig := newLongRig(t)
	st := newStack(t, append(rig.env(), "WORKER_SHUTDOWN_TIMEOUT=10s")...)
	first := st.startWorker()
	arn := st.start("long", `{}`)
	eventually(t, testCap+30*time.Second, "the job is handed on", func() bool {
		return strings.Contains(first.Logs(), "long job handed on before SQS's visibility cap")
	})
	first.signal(syscall.SIGTERM)
	<-first.done
	require.NoError(t, first.waitErr, "exit 0")
	require.Contains(t, first.Logs(), `"done":false`, "the lease released")
	second := st.startWorker()
	eventually(t, cli.LeaseTTL(testCap)+30*time.Second, "another worker takes the job over", func() bool {
		return strings.Contains(second.Logs(), "long job taken over from a dead or released lease")
	})
	d := st.waitExecution(arn, longRun+2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	require.Len(t, rig.startedPIDs(), 2, "the stopped run and the taker's")
	st.requireQueuesDrain(time.Minute)
}

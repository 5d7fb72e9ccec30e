package main_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"
)

// cookiesWithVisibility is the cookies topology with every queue's visibility
// timeout set to seconds: with an hour, a stranded message cannot pass for a slow one.
func cookiesWithVisibility(t *testing.T, seconds int) string {
	t.Helper()
	return cookiesTopology(t, func(topo map[string]any) {
		for _, q := range topo["queues"].([]any) {
			q.(map[string]any)["visibilityTimeoutSeconds"] = seconds
		}
	})
}

// TestE2EShortShutdownRestartStrandsNoExecution is issue 28 item 3: a worker restarted
// with WORKER_SHUTDOWN_TIMEOUT=10s and the default 20 s poll, while executions start.
// A long poll the stop cut could still take messages on the server, invisible for a
// visibility timeout (an hour here). The poll wait is capped to what the stop lets a
// receive finish in, and what the last receives bring is released: every execution
// completes long before an hour.
func TestE2EShortShutdownRestartStrandsNoExecution(t *testing.T) {
	st := newStack(t, "WORKER_TOPOLOGY="+cookiesWithVisibility(t, 3600), "WORKER_POLL_WAIT=20s", "WORKER_SHUTDOWN_TIMEOUT=10s", "WORKER_ROLES=jobs")
	a := st.startWorker()
	a.waitReady(15 * time.Second)
	logs := a.Logs()
	require.Contains(t, logs, "poll wait capped to fit the shutdown timeout", "the cap is said once at start")
	require.Contains(t, logs, `"capped_to":5`, "10 s shutdown: a 6 s drain, a 5 s poll")

	// Executions start, one every 300 ms, from before the SIGTERM until the next
	// worker runs: some land on the stopping worker's last long polls.
	var (
		mu      sync.Mutex
		arns    []string
		startMu sync.WaitGroup
	)
	stop := make(chan struct{})
	machine := st.out.StateMachines["cookies"]
	startMu.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			out, err := st.sfn.StartExecution(context.Background(), &sfn.StartExecutionInput{
				StateMachineArn: aws.String(machine), Name: aws.String(fmt.Sprintf("restart-%d-%d", time.Now().UnixNano(), i)), Input: aws.String(`{"count": 2}`),
			})
			if err != nil {
				t.Errorf("start execution: %v", err)
				return
			}
			mu.Lock()
			arns = append(arns, aws.ToString(out.ExecutionArn))
			mu.Unlock()
		}
	})
	time.Sleep(2 * time.Second)
	a.signal(syscall.SIGTERM)
	require.Zero(t, a.waitExit(30*time.Second), "exit 0 within the shutdown timeout")
	// The next worker comes while the stopped worker's longest uncapped poll (20 s)
	// would still run on the server.
	time.Sleep(5 * time.Second)
	st.startWorker()
	time.Sleep(3 * time.Second)
	close(stop)
	startMu.Wait()

	mu.Lock()
	started := append([]string(nil), arns...)
	mu.Unlock()
	require.NotEmpty(t, started)
	for _, arn := range started {
		d := st.waitExecution(arn, 5*time.Minute) // an hour if a message was stranded
		require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s %s; its last events:\n%s", arn, aws.ToString(d.Error), aws.ToString(d.Cause), st.lastEvents(arn, 12))
	}
	t.Logf("%d executions started across the restart; all succeeded; the stopped worker released %d messages at shutdown",
		len(started), strings.Count(a.Logs(), "released at shutdown"))
}

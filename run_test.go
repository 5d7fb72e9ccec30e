package taskbridge_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge"
	"github.com/taskbridge/taskbridge/internal/awstest"
)

// embedded is one worker of the process: its stack, its jobs, its logs and spans.
type embedded struct {
	name    string
	env     []string
	jobs    *taskbridge.Registry
	logs    bytes.Buffer
	spans   string // its console exporter's file
	greeter string // its state machine's ARN
	done    chan error
}

// Two workers run in one process, each on its own stack (the tutorial's topology)
// with its own settings, log output and tracer: each completes the tasks of its own stack only,
// and both stop cleanly, with nothing left running, when their context ends.
func TestTwoRunsInOneProcess(t *testing.T) {
	for _, kv := range awstest.Env(t) { // the AWS SDK's settings are the process's
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	topology, err := filepath.Abs("examples/greeter/topology.json") // the tutorial's
	require.NoError(t, err)
	var workers []*embedded
	for _, name := range []string{"a", "b"} {
		w := &embedded{name: name, jobs: taskbridge.NewRegistry(), spans: filepath.Join(t.TempDir(), "spans.jsonl"), done: make(chan error, 1)}
		w.env = []string{
			"WORKER_STACK=emb-" + name + "-" + hex.EncodeToString(suffix),
			"WORKER_TOPOLOGY=" + topology,
			"WORKER_METRICS_ADDR=127.0.0.1:0", "WORKER_POLL_WAIT=1s", "WORKER_ROLES=jobs",
			"OTEL_TRACES_EXPORTER=console", "WORKER_TRACE_FILE=" + w.spans,
		}
		w.jobs.Handle("greet", func(_ context.Context, task *taskbridge.Task) (any, error) {
			var in struct{ Name string }
			if err := task.Decode(&in); err != nil {
				return nil, err
			}
			return map[string]string{"greeting": "Hello, " + in.Name, "worker": name}, nil
		})
		out, err := taskbridge.Bootstrap(ctx, w.jobs, w.env)
		require.NoError(t, err)
		var stack struct{ StateMachines map[string]string }
		require.NoError(t, json.Unmarshal(out, &stack), "%s", out)
		w.greeter = stack.StateMachines["greeter"]
		require.NotEmpty(t, w.greeter, "%s", out)
		workers = append(workers, w)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	for _, w := range workers {
		go func() { w.done <- taskbridge.Run(runCtx, w.jobs, taskbridge.Options{Env: w.env, Logs: &w.logs}) }()
	}

	client := sfn.NewFromConfig(awstest.Config(t))
	executions := map[string]string{}
	for _, w := range workers {
		started, err := client.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(w.greeter), Input: aws.String(`{"name": "Ada"}`)})
		require.NoError(t, err)
		executions[w.name] = aws.ToString(started.ExecutionArn)
	}
	for _, w := range workers {
		out := waitOutput(ctx, t, client, executions[w.name])
		require.JSONEq(t, `{"greeting": "Hello, Ada", "worker": "`+w.name+`"}`, out, "the task of stack %s is completed by its own worker", w.name)
	}

	stop()
	for _, w := range workers {
		select {
		case err := <-w.done:
			require.NoError(t, err, "worker %s stops cleanly\n%s", w.name, w.logs.String())
		case <-ctx.Done():
			t.Fatalf("worker %s did not stop", w.name)
		}
	}
	for _, w := range workers {
		other := workers[0]
		if other == w {
			other = workers[1]
		}
		logs := w.logs.String()
		require.Contains(t, logs, `"stack":"`+stackOf(w)+`"`, "its own logs")
		require.NotContains(t, logs, stackOf(other), "none of the other worker's lines")
		require.Contains(t, logs, `"msg":"stopped"`)
		spans, err := os.ReadFile(w.spans)
		require.NoError(t, err)
		require.Contains(t, string(spans), executions[w.name], "its tracer traced its own task")
		require.NotContains(t, string(spans), executions[other.name], "and not the other worker's")
	}
}

func stackOf(w *embedded) string { return strings.TrimPrefix(w.env[0], "WORKER_STACK=") }

// waitOutput waits for an execution to succeed and returns its output.
func waitOutput(ctx context.Context, t *testing.T, client *sfn.Client, arn string) string {
	t.Helper()
	for {
		d, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		require.NoError(t, err)
		switch d.Status {
		case sfntypes.ExecutionStatusSucceeded:
			return aws.ToString(d.Output)
		case sfntypes.ExecutionStatusRunning:
		default:
			t.Fatalf("execution %s: %s", arn, d.Status)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("execution %s: %v", arn, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

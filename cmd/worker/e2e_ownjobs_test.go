package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"
)

// greeterMain is a user's program: its own module, its own job, the worker's command
// line from taskbridge.Main.
const greeterMain = `package main

import (
	"context"
	"time"

	"github.com/taskbridge/taskbridge"
)

func main() {
	jobs := taskbridge.NewRegistry()
	jobs.Handle("greet", func(ctx context.Context, t *taskbridge.Task) (any, error) {
		var in struct {
			Name string ` + "`json:\"name\"`" + `
		}
		if err := t.Decode(&in); err != nil {
			return nil, err
		}
		if in.Name == "slow" {
			time.Sleep(time.Hour) // outlives any job timeout, and ignores ctx
		}
		return map[string]string{"greeting": "Hello, " + in.Name}, nil
	})
	taskbridge.Main(jobs)
}
`

const greeterTopology = `{
  "source": "greeter.worker",
  "queues": [
    {"name": "greet", "job": "greet", "detailTypes": ["greet"], "concurrency": 2, "visibilityTimeoutSeconds": 10, "maxReceiveCount": 2}
  ],
  "stateMachines": [{"name": "greeter", "definition": "asl/greeter.asl.json"}]
}`

// buildGreeter builds the user's program with its topology and the ASL of
// examples/greeter.
func buildGreeter(t *testing.T) (bin, topologyPath string) {
	t.Helper()
	asl, err := os.ReadFile("../../examples/greeter/asl/greeter.asl.json")
	require.NoError(t, err)
	dir, bin := buildProgram(t, "example.com/greeter", map[string]string{
		"main.go": greeterMain, "topology.json": greeterTopology, "asl/greeter.asl.json": string(asl),
	})
	return bin, filepath.Join(dir, "topology.json")
}

// TestE2EOwnJobsProgram: a program outside the repository, with its own topology
// file and ASL, serves a state machine's putEvents.waitForTaskToken step on moto;
// bad input, a missing token and a job that outlives its deadline each get their
// defined fate, and the worker keeps running.
func TestE2EOwnJobsProgram(t *testing.T) {
	bin, topo := buildGreeter(t)
	st := newStackWith(t, bin, "WORKER_TOPOLOGY="+topo, "WORKER_JOB_TIMEOUT=3s")
	require.Contains(t, st.out.StateMachines, "greeter", "bootstrap lists the file's state machines")
	require.Contains(t, st.out.Queues, "greet")
	require.Contains(t, st.out.DLQs, "greet")
	require.Contains(t, st.cli("validate"), "1 queues, 1 state machines: ok")
	w := st.startWorker()

	start := func(input string) string {
		return strings.TrimSpace(st.cli("start", "--state-machine", "greeter", "--input", input))
	}
	ok := start(`{"name": "Ada <&>"}`)
	badInput := start(`{"name": 42}`)
	slow := start(`{"name": "slow"}`)

	d := st.waitExecution(ok, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	require.JSONEq(t, `{"greeting":"Hello, Ada <&>"}`, aws.ToString(d.Output))

	d = st.waitExecution(badInput, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Equal(t, "greet.InvalidInput", aws.ToString(d.Error))

	// Two receives of 3 s each, a backoff between: well under the step's 300 s.
	began := time.Now()
	d = st.waitExecution(slow, 90*time.Second)
	require.Equal(t, sfntypes.ExecutionStatusFailed, d.Status)
	require.Equal(t, "greet.Timeout", aws.ToString(d.Error))
	t.Logf("the slow job's execution failed %s after the others", time.Since(began).Round(time.Second))

	// An event without a token for a job that completes one: the DLQ on its first
	// receive, with the reason.
	st.sendRaw("greet", envelope("greet", map[string]any{"name": "nobody"}))
	reason := st.dlqReason(t, "greet", "MissingToken")
	require.Contains(t, reason, "TaskToken")

	require.Contains(t, w.Logs(), `"job":"greet"`)
	require.NotContains(t, w.Logs(), "panic")
}

// dlqReason waits for a message in queue's DLQ whose reason attribute contains want.
func (st *stackEnv) dlqReason(t *testing.T, queue, want string) string {
	t.Helper()
	var reason string
	eventually(t, time.Minute, queue+" DLQ has a message with reason "+want, func() bool {
		out, err := st.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(st.out.DLQs[queue]), WaitTimeSeconds: 1, MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{"ApproximateReceiveCount"},
		})
		require.NoError(t, err)
		for _, m := range out.Messages {
			if a, ok := m.MessageAttributes["taskbridge-error"]; ok && strings.Contains(aws.ToString(a.StringValue), want) {
				reason = aws.ToString(a.StringValue)
				return true
			}
		}
		return false
	})
	return reason
}

// TestE2EValidateNamesEveryProblemAndRunRefuses: a broken topology is reported whole
// by `validate`, and `run` refuses it with the same messages.
func TestE2EValidateNamesEveryProblemAndRunRefuses(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.asl.json"), []byte("{\"StartAt\": \"A\",\n \"States\": {\n}"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "topology.json"), []byte(`{
	  "source": "x",
	  "queues": [
	    {"name": "a", "job": "nobodyRegisteredThis", "detailTypes": ["a"]},
	    {"name": "a", "job": "finisher", "detailTypes": ["b"]},
	    {"name": "c", "exec": {"command": ["./nope.sh"]}}
	  ],
	  "stateMachines": [{"name": "broken", "definition": "bad.asl.json"}, {"name": "gone", "definition": "gone.asl.json"}]
	}`), 0o644))
	env := append(os.Environ(), awstestEnv(t)...)
	env = append(env, "WORKER_TOPOLOGY="+filepath.Join(dir, "topology.json"), "WORKER_METRICS_ADDR=")
	var outputs []string
	for _, args := range [][]string{{"validate"}, {"run"}} {
		cmd := exec.Command(workerBin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "worker %s must fail: %s", args[0], out)
		require.Equal(t, 1, exit.ExitCode())
		for _, want := range []string{`queue "a": job "nobodyRegisteredThis" is not registered`, `queue "a": duplicate queue name`,
			`queue "c": nothing routes to it`, `queue "c": exec.command ./nope.sh`, `state machine "broken"`, "line 3, column", `state machine "gone": read definition`} {
			require.Contains(t, string(out), want, "worker %s", args[0])
		}
		outputs = append(outputs, string(out))
	}
	require.Equal(t, outputs[0], outputs[1], "run refuses with validate's messages")
}

func awstestEnv(t *testing.T) []string {
	t.Helper()
	return []string{"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_ENDPOINT_URL=http://127.0.0.1:1"}
}

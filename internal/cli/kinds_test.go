package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/batch"
	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// TestValidateReportsWhatRunRefuses holds `validate` to `run`'s contract: every
// queue setting that the kinds' constructors refuse when `run` builds the queue
// (execjob.New, httpjob.New, startjob.New, batch.New), `validate` reports under its
// queue; a good queue of each kind passes both.
func TestValidateReportsWhatRunRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		queue string // the queue "q", without its name and detail types
		// problem is in validate's line of queue "q" and in run's refusal; runProblem,
		// when set, is run's words for it.
		problem, runProblem string
	}{
		{"exec ok", `"exec": {"command": ["./ok.sh"], "timeout": "1m", "env": {"A": "b"}}`, "", ""},
		{"exec bare name ok", `"exec": {"command": ["sh", "-c", "true"]}`, "", ""},
		{"exec command empty", `"exec": {"command": []}`, "command is empty", ""},
		{"exec program name empty", `"exec": {"command": [""]}`, "program name is empty", ""},
		{"exec program missing", `"exec": {"command": ["./missing.sh"]}`, "command ./missing.sh: no such file", ""},
		{"exec program absolute and missing", `"exec": {"command": ["/nonexistent/taskbridge.sh"]}`, "no such file", ""},
		{"exec program not executable", `"exec": {"command": ["./plain.txt"]}`, "not executable", ""},
		{"exec program a directory", `"exec": {"command": ["./sub"]}`, "is a directory", ""},
		{"exec bare name not in PATH", `"exec": {"command": ["no-such-command-taskbridge"]}`, "executable file not found", ""},
		{"exec negative timeout", `"exec": {"command": ["./ok.sh"], "timeout": "-1s"}`, "timeout -1s is negative", ""},
		{"exec 20 h: past SQS's cap, handed on", `"exec": {"command": ["./ok.sh"], "timeout": "20h"}`, "", ""},
		{"exec 200 days: handed on", `"exec": {"command": ["./ok.sh"], "timeout": "4800h"}`, "", ""},
		{"exec longer than an execution", `"exec": {"command": ["./ok.sh"], "timeout": "8761h"}`, "timeout 8761h0m0s cannot be honoured: a Step Functions Standard execution runs at most a year", ""},
		{"exec env sets the worker's variable", `"exec": {"command": ["./ok.sh"], "env": {"TASKBRIDGE_TOKEN": "x"}}`, "env TASKBRIDGE_TOKEN: TASKBRIDGE_* variables are the worker's", ""},
		{"exec env without a name", `"exec": {"command": ["./ok.sh"], "env": {"": "x"}}`, "is not KEY=VALUE", ""},
		{"http ok", `"http": {"url": "http://127.0.0.1:1/x", "timeout": "5s", "headers": {"Authorization": "Bearer x"}}`, "", ""},
		{"http url empty", `"http": {"url": ""}`, "url is empty", ""},
		{"http url does not parse", `"http": {"url": "http://[::1"}`, "does not parse", ""},
		{"http url not http", `"http": {"url": "ftp://x/y"}`, "scheme must be http or https", ""},
		{"http url without host", `"http": {"url": "http:///x"}`, "has no host", ""},
		{"http negative timeout", `"http": {"url": "http://x", "timeout": "-1s"}`, "timeout -1s is negative", ""},
		{"http longer than an execution", `"http": {"url": "http://x", "timeout": "9000h"}`, "cannot be honoured", ""},
		{"http header Content-Type", `"http": {"url": "http://x", "headers": {"content-type": "text/plain"}}`, "header Content-Type is the worker's", ""},
		{"http header X-Taskbridge-", `"http": {"url": "http://x", "headers": {"X-Taskbridge-Job": "x"}}`, "header X-Taskbridge-Job is the worker's", ""},
		{"http header name invalid", `"http": {"url": "http://x", "headers": {"Bad Name": "x"}}`, `header "Bad Name" is not a valid name`, ""},
		{"http header value with a line break", `"http": {"url": "http://x", "headers": {"X-Api": "a\r\nb"}}`, "value has a line break", ""},
		{"startExecution ok", `"startExecution": {"stateMachine": "sm"}`, "", ""},
		{"startExecution stateMachine empty", `"startExecution": {"stateMachine": ""}`, "stateMachine is empty", ""},
		{"startExecution stateMachine unknown", `"startExecution": {"stateMachine": "nope"}`, `"nope" is not a state machine of the topology`, `stateMachineArn of "nope" is not resolved`},
		{"s3Batch ok", `"s3Batch": {"maxFiles": 10, "window": "1m"}`, "", ""},
		{"s3Batch maxFiles too large", `"s3Batch": {"maxFiles": 20000}`, "maxFiles must be 1..10000, got 20000", ""},
		{"s3Batch window too short", `"s3Batch": {"window": "500ms"}`, "window must be 1s..12h, got 500ms", ""},
		{"s3Batch window too long", `"s3Batch": {"window": "13h"}`, "window must be 1s..12h, got 13h0m0s", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := kindsTopology(t, tc.queue)

			var out bytes.Buffer
			verr := Main(context.Background(), Jobs{}, []string{"validate", path}, &out, &out)
			rerr := buildAsRun(t, path)
			if tc.problem == "" {
				require.NoError(t, verr)
				require.NoError(t, rerr)
				return
			}
			require.Error(t, verr, "validate passes what run refuses: %v", rerr)
			require.True(t, slices.ContainsFunc(strings.Split(verr.Error(), "\n"), func(line string) bool {
				return strings.HasPrefix(line, `queue "q": `) && strings.Contains(line, tc.problem)
			}), "validate names the problem under its queue: want %q in\n%v", tc.problem, verr)
			want := tc.problem
			if tc.runProblem != "" {
				want = tc.runProblem
			}
			require.ErrorContains(t, rerr, want, "run's construction refuses it")
		})
	}
}

// kindsTopology writes a topology of one queue "q" running kind, a state machine
// "sm", and the files the exec cases name.
func kindsTopology(t *testing.T, kind string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), mode))
	}
	write("ok.sh", "#!/bin/sh\n", 0o755)
	write("plain.txt", "", 0o644)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	write("sm.asl.json", `{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}`, 0o644)
	detailTypes := `"detailTypes": ["d"], `
	if strings.HasPrefix(kind, `"s3Batch"`) {
		detailTypes = ""
	}
	write("topology.json", `{"source": "s", "queues": [{"name": "q", `+detailTypes+kind+`}],
	  "stateMachines": [{"name": "sm", "definition": "sm.asl.json"}]}`, 0o644)
	return filepath.Join(dir, "topology.json")
}

// buildAsRun builds the topology's queue "q" the way `run` does once the topology
// is loaded, short of AWS: the kind's constructor on run's Config.
func buildAsRun(t *testing.T, path string) error {
	t.Helper()
	topo, err := topology.Load(path)
	require.NoError(t, err)
	stack := bootstrap.Output{DataBucket: "t-data", LandingBucket: "t-landing", GlueJob: "t-etl", StateMachines: map[string]string{}}
	for _, sm := range topo.StateMachines {
		stack.StateMachines[sm.Name] = topology.StateMachineARN("aws", "us-east-1", "123456789012", "t-"+sm.Name)
	}
	w := wiring{
		setup: setup{topo: topo, cfg: config.Config{BatchMaxFiles: 100, BatchWindow: 15 * time.Minute, GluePollInterval: 10 * time.Second, ReportTimeout: time.Minute}},
		stack: stack, log: zaptest.NewLogger(t), reg: prometheus.NewRegistry(),
		sfn: sfn.New(sfn.Options{Region: "us-east-1"}), // never called: nothing runs
	}
	q := topo.Queues[0]
	if q.S3Batch != nil {
		_, err := batch.New(w.batchConfig(q), nil, nil, nil, w.log, nil)
		return err
	}
	_, _, err = newKindBuilder(w, nil).build(q)
	return err
}

// The worker's line sampling defaults (WORKER_LOG_SAMPLE_*) are the router's
// documented ones, jobs.DefaultLineSampling, which the benchmarks run with.
func TestLineSamplingDefaultsAreTheRoutersDefaults(t *testing.T) {
	c, err := config.LoadFrom(config.Layered(nil))
	require.NoError(t, err)
	require.Equal(t, jobs.DefaultLineSampling, jobs.LineSampling{First: c.LogSampleFirst, Thereafter: c.LogSampleThereafter})
}

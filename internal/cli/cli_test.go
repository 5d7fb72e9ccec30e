package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/topology"
)

func cookiesJobs() Jobs {
	var js []jobs.Job
	for _, name := range []string{"getMultiple", "processSingle", "postProcessSingle", "sideEffect", "postProcessAll"} {
		js = append(js, jobs.Job{Name: name, Run: func(context.Context, *jobs.Task) (any, error) { return nil, nil }})
	}
	return Jobs{Jobs: js}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	err := Main(context.Background(), Jobs{}, []string{"frobnicate"}, &out, &errOut)
	require.Equal(t, 2, ExitCode(err))
	require.Contains(t, errOut.String(), "usage: worker")
	require.Equal(t, 0, ExitCode(flag.ErrHelp), "help was asked for")
	require.Equal(t, 1, ExitCode(errors.New("x")))
	require.Equal(t, 0, ExitCode(nil))
}

// The program's name is the invocation's, not a package variable: two command
// lines of one process name their programs each its own way.
func TestUsageNamesTheProgram(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		program string
		args    []string
		want    string
	}{
		{"greeter", []string{"help"}, "usage: greeter [command]"},
		{"greeter", []string{"start", "--help"}, "usage: greeter start [flags]"},
		{"billing", []string{"dlq", "--help"}, "usage: billing dlq"},
		{"billing", []string{"status", "--help"}, "usage: billing status"},
		{"billing", []string{"validate", "--help"}, "usage: billing validate"},
		{"", []string{"help"}, "usage: worker [command]"},
	} {
		var out bytes.Buffer
		err := Main(context.Background(), Jobs{Program: tc.program}, tc.args, &out, &out)
		require.Equal(t, 0, ExitCode(err), "%v: %v", tc.args, err)
		require.Contains(t, out.String(), tc.want, "%s %v", tc.program, tc.args)
	}
}

// Settings given in Env win over the process environment's, for every command
// that reads the configuration.
func TestEnvIsReadBeforeTheProcessEnvironment(t *testing.T) {
	t.Setenv("WORKER_TOPOLOGY", filepath.Join(t.TempDir(), "missing.json"))
	var out bytes.Buffer
	require.Error(t, Main(context.Background(), cookiesJobs(), []string{"validate"}, &out, &out), "the process's topology does not exist")
	out.Reset()
	embedded := cookiesJobs()
	embedded.Env = []string{"WORKER_TOPOLOGY="}
	require.NoError(t, Main(context.Background(), embedded, []string{"validate"}, &out, &out))
	require.Contains(t, out.String(), "checking the embedded topology")
}

func TestValidateTheEmbeddedTopology(t *testing.T) {
	t.Setenv("WORKER_TOPOLOGY", "")
	var out bytes.Buffer
	require.NoError(t, Main(context.Background(), cookiesJobs(), []string{"validate"}, &out, &out))
	require.Contains(t, out.String(), "WORKER_TOPOLOGY is not set: checking the embedded topology")
	require.Contains(t, out.String(), "embedded topology: 7 queues, 1 state machines: ok")

	// Without the cookies jobs registered, every queue that names one is a problem.
	err := Main(context.Background(), Jobs{}, []string{"validate"}, &out, &out)
	require.Error(t, err)
	for _, job := range []string{"getMultiple", "processSingle", "postProcessSingle", "sideEffect", "postProcessAll"} {
		require.Contains(t, err.Error(), `job "`+job+`" is not registered`)
	}
	require.NotContains(t, err.Error(), `"finisher" is not registered`, "the finisher is built in")
}

func TestValidateAFileGivenAsArgument(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "t.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"source":"s","queues":[{"name":"q","detailTypes":["d"],"http":{"url":"http://127.0.0.1:1/x"}}]}`), 0o644))
	var out bytes.Buffer
	require.NoError(t, Main(context.Background(), Jobs{}, []string{"validate", p}, &out, &out))
	require.Contains(t, out.String(), p+": 1 queues, 0 state machines: ok")
	err := Main(context.Background(), Jobs{}, []string{"validate", p, "extra"}, &out, &out)
	require.Equal(t, 2, ExitCode(err))
}

func TestPickStateMachine(t *testing.T) {
	t.Parallel()
	cookies, err := topology.Load("")
	require.NoError(t, err)
	name, err := pickStateMachine(cookies, "")
	require.NoError(t, err)
	require.Equal(t, "cookies", name)
	_, err = pickStateMachine(cookies, "nope")
	require.ErrorContains(t, err, `"nope" is not a state machine of the topology (cookies)`)

	two := &topology.Topology{StateMachines: []topology.StateMachine{{Name: "a"}, {Name: "b"}}}
	_, err = pickStateMachine(two, "")
	require.ErrorContains(t, err, "--state-machine (a, b)")
	one := &topology.Topology{StateMachines: []topology.StateMachine{{Name: "only"}}}
	name, err = pickStateMachine(one, "")
	require.NoError(t, err)
	require.Equal(t, "only", name)
}

func TestExecutionInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		count        int
		names, input string
		want         string
		bad          bool
	}{
		{count: -1, want: "{}"},
		{count: 3, want: `{"count":3}`},
		{count: -1, names: "a,b", want: `{"names":["a","b"]}`},
		{count: -1, input: `{"x":1}`, want: `{"x":1}`},
		{count: -1, input: `{`, bad: true},
		{count: 2, names: "a", bad: true},
	} {
		got, err := executionInput(tc.count, tc.names, tc.input)
		if tc.bad {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err)
		require.JSONEq(t, tc.want, got)
	}
}

func TestEnvList(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"A=1", "B=two"}, envList(map[string]string{"B": "two", "A": "1"}))
}

// Help and the version, asked the usual ways, go to stdout and exit 0; flags are
// shown as --name.
func TestHelpAndVersionExitZero(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"}, {"--version"}, {"version"},
		{"validate", "--help"}, {"healthcheck", "--help"}, {"config", "-h"}, {"run", "--help"},
		{"start", "--help"}, {"bootstrap", "-h"},
		{"dlq", "--help"}, {"dlq", "redrive", "--help"}, {"status", "--help"},
	} {
		var out, errOut bytes.Buffer
		err := Main(context.Background(), Jobs{}, args, &out, &errOut)
		require.Equal(t, 0, ExitCode(err), "%v: %v", args, err)
		require.NotEmpty(t, out.String(), "%v prints on stdout", args)
		require.Empty(t, errOut.String(), "%v", args)
		if args[0] == "start" {
			require.Contains(t, out.String(), "  --state-machine string")
			require.NotContains(t, out.String(), "  -state-machine")
		}
	}
	var out bytes.Buffer
	require.NoError(t, Main(context.Background(), Jobs{}, []string{"--version"}, &out, &out))
	require.Equal(t, Version+"\n", out.String())
}

func TestValidateWarnsAndStillPasses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sm.json"), []byte(`{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"arn:aws:states:::events:putEvents.waitForTaskToken",
		"Parameters":{"Entries":[{"DetailType":"d","Source":"s","Detail":{"TaskToken.$":"$$.Task.Token"}}]},"End":true}}}`), 0o644))
	p := filepath.Join(dir, "t.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"source":"s","queues":[{"name":"q","detailTypes":["d"],"http":{"url":"http://127.0.0.1:1/x"}}],"stateMachines":[{"name":"sm","definition":"sm.json"}]}`), 0o644))
	var out bytes.Buffer
	require.NoError(t, Main(context.Background(), Jobs{}, []string{"validate", p}, &out, &out))
	require.Contains(t, out.String(), `warning: state machine "sm": step A waits for a task token with neither TimeoutSeconds nor HeartbeatSeconds`)
	require.Contains(t, out.String(), p+": 1 queues, 1 state machines: ok")
}

func TestDLQAndStatusUsageErrors(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"no dlq command":       {"dlq"},
		"unknown dlq command":  {"dlq", "frob"},
		"purge without --yes":  {"dlq", "purge", "--queue", "q"},
		"show without queue":   {"dlq", "show"},
		"bad rate":             {"dlq", "redrive", "--queue", "q", "--rate", "0"},
		"bad --to":             {"dlq", "redrive", "--queue", "eventbridge", "--to", "lambda"},
		"--to queue elsewhere": {"dlq", "redrive", "--queue", "q", "--to", "queue"},
		"bad output":           {"status", "--output", "yaml"},
		"status argument":      {"status", "x"},
		"console argument":     {"console", "x"},
		"console on every interface without auth": {"console", "--addr", ":8080"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := Main(context.Background(), Jobs{}, args, &out, &errOut)
			require.Equal(t, 2, ExitCode(err), "%v", err)
			if name == "purge without --yes" {
				require.ErrorContains(t, err, "add --yes")
			}
			if name == "console on every interface without auth" {
				require.ErrorContains(t, err, "reachable from other hosts and no auth is set: set WORKER_CONSOLE_TOKEN")
			}
		})
	}
}

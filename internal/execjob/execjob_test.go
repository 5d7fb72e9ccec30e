package execjob_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/execjob"
	"github.com/taskbridge/taskbridge/internal/jobs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "AAAAKgAAAAIAAAAAAAAAAVerySecretTaskToken"

func task() *jobs.Task {
	return &jobs.Task{
		Queue: "resize-queue", Job: "resize", MessageID: "m-1", EventID: "ev-1", DetailType: "resize",
		ExecutionArn: "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
		Token:        token,
		Detail:       json.RawMessage(`{"TaskToken":"` + token + `","name":"<a & b>","n":1}`),
		ReceiveCount: 2, MaxReceiveCount: 5,
	}
}

type bundle struct {
	dir string
	reg *prometheus.Registry
	m   *execjob.Metrics
}

func setup(t *testing.T) *bundle {
	t.Helper()
	reg := prometheus.NewRegistry()
	return &bundle{dir: t.TempDir(), reg: reg, m: execjob.NewMetrics(reg)}
}

// script writes an sh script into the bundle's folder and returns its name.
func (b *bundle) script(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(b.dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	return name
}

func (b *bundle) job(t *testing.T, cfg execjob.Config) *execjob.Job {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = b.dir
	}
	j, err := execjob.New("resize", cfg, zaptest.NewLogger(t), b.m)
	require.NoError(t, err)
	return j
}

func TestRunOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		body     string
		cfg      execjob.Config
		want     string // output, when it succeeds
		kind     string // jobs.KindOf, when it fails for good
		retry    bool   // a plain error
		contains string // in the error
		code     string // worker_exec_exits_total's code
	}{
		{name: "json out", body: `cat >/dev/null; echo '{"ok": true, "html": "<&>"}'`, want: `{"ok": true, "html": "<&>"}`, code: "0"},
		{name: "empty out", body: `cat >/dev/null`, want: `{}`, code: "0"},
		{name: "whitespace out", body: `printf '  \n\t\n'`, want: `{}`, code: "0"},
		{name: "array out", body: `echo '[1,2]'`, want: `[1,2]`, code: "0"},
		{name: "exit 3 with stderr", body: `echo 'first line' >&2; echo 'disk full' >&2; exit 3`, kind: "Exit3", contains: "first line\ndisk full", code: "3"},
		{name: "exit 1 without stderr", body: `exit 1`, kind: "Exit1", contains: "(no stderr)", code: "1"},
		{name: "exit 75 retries", body: `echo 'busy, later' >&2; exit 75`, retry: true, contains: "busy, later", code: "75"},
		{name: "invalid json out", body: `echo 'hello world'`, kind: "InvalidOutput", contains: "not JSON", code: "0"},
		{name: "stdout over the cap", body: `head -c 5000 /dev/zero | tr '\0' 'x'`, cfg: execjob.Config{MaxStdout: 1000}, kind: "OutputTooLarge", code: "0"},
		{name: "killed by a signal retries", body: `kill -9 $$`, retry: true, contains: "killed", code: "signal"},
		{
			name: "stderr keeps its tail", body: `head -c 100000 /dev/zero | tr '\0' 'e' >&2; echo THE-END >&2; exit 4`,
			cfg: execjob.Config{MaxStderr: 100}, kind: "Exit4", contains: "eeeeTHE-END", code: "4",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			tt.cfg.Command = []string{"./" + b.script(t, "job.sh", tt.body)}
			out, err := b.job(t, tt.cfg).Run(context.Background(), task())
			require.Equal(t, 1.0, testutil.ToFloat64(b.m.Exits("resize", tt.code)), "exits{code=%q}", tt.code)
			if tt.want != "" {
				require.NoError(t, err)
				require.IsType(t, json.RawMessage{}, out)
				require.JSONEq(t, tt.want, string(out.(json.RawMessage)))
				return
			}
			require.Error(t, err)
			require.NotContains(t, err.Error(), token)
			require.Contains(t, err.Error(), tt.contains)
			kind, badInput, final := jobs.KindOf(err)
			require.Equal(t, !tt.retry, final, "final: %v", err)
			require.False(t, badInput)
			require.Equal(t, tt.kind, kind)
		})
	}
}

func TestStderrTailBoundsTheCause(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cmd := b.script(t, "job.sh", `head -c 100000 /dev/zero | tr '\0' 'e' >&2; exit 9`)
	_, err := b.job(t, execjob.Config{Command: []string{"./" + cmd}, MaxStderr: 100}).Run(context.Background(), task())
	require.Error(t, err)
	require.LessOrEqual(t, len(err.Error()), 120)
}

func TestStdinAndEnvironmentCarryNoToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cmd := b.script(t, "job.sh", `cat > "$OUT/stdin"; env > "$OUT/env"; echo '{}'`)
	j := b.job(t, execjob.Config{Command: []string{"./" + cmd}, Env: []string{"OUT=" + b.dir, "EXTRA=yes"}})
	_, err := j.Run(context.Background(), task())
	require.NoError(t, err)

	stdin, err := os.ReadFile(filepath.Join(b.dir, "stdin"))
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"<a & b>","n":1}`, string(stdin))
	require.Contains(t, string(stdin), "<a & b>", "not HTML-escaped")

	env, err := os.ReadFile(filepath.Join(b.dir, "env"))
	require.NoError(t, err)
	require.NotContains(t, string(env), token)
	lines := strings.Split(string(env), "\n")
	for _, want := range []string{
		"TASKBRIDGE_JOB=resize", "TASKBRIDGE_DETAIL_TYPE=resize", "TASKBRIDGE_RECEIVE_COUNT=2",
		"TASKBRIDGE_EXECUTION_ARN=arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
		"TASKBRIDGE_MESSAGE_ID=m-1", "TASKBRIDGE_EVENT_ID=ev-1", "TASKBRIDGE_QUEUE=resize-queue", "EXTRA=yes",
	} {
		require.Contains(t, lines, want)
	}
	if path := os.Getenv("PATH"); path != "" {
		require.Contains(t, lines, "PATH="+path, "the worker's environment is passed on")
	}
}

func TestRelativeCommandResolvesFromDir(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.script(t, "scripts/x.sh", `echo "{\"pwd\": \"$(pwd)\"}"`)
	out, err := b.job(t, execjob.Config{Command: []string{"scripts/x.sh"}}).Run(context.Background(), task())
	require.NoError(t, err)
	want, err := filepath.EvalSymlinks(b.dir)
	require.NoError(t, err)
	var got struct{ Pwd string }
	require.NoError(t, json.Unmarshal(out.(json.RawMessage), &got))
	gotDir, err := filepath.EvalSymlinks(got.Pwd)
	require.NoError(t, err)
	require.Equal(t, want, gotDir, "the command runs in Dir")

	// testdata's script, named relative to testdata, with arguments and a bare name.
	j, err := execjob.New("echo", execjob.Config{Command: []string{"./echo-input.sh"}, Dir: "testdata"}, zaptest.NewLogger(t), b.m)
	require.NoError(t, err)
	out, err = j.Run(context.Background(), task())
	require.NoError(t, err)
	require.JSONEq(t, `{"input": {"name":"<a & b>","n":1}, "job": "echo"}`, string(out.(json.RawMessage)))

	j, err = execjob.New("bare", execjob.Config{Command: []string{"sh", "-c", `echo '{"bare": true}'`}}, zaptest.NewLogger(t), b.m)
	require.NoError(t, err)
	out, err = j.Run(context.Background(), task())
	require.NoError(t, err)
	require.JSONEq(t, `{"bare": true}`, string(out.(json.RawMessage)))
}

// readPid waits for the script to write a pid into name.
func readPid(t *testing.T, dir, name string) int {
	t.Helper()
	path := filepath.Join(dir, name)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			require.NoError(t, err)
			return pid
		}
		require.True(t, time.Now().Before(deadline), "the script never wrote %s", name)
		time.Sleep(10 * time.Millisecond) // polling a file the child writes; there is no signal to wait on
	}
}

// requireGone checks that no process of the group, and not pid, is still running
// (a killed grandchild may stay a zombie until init reaps it).
func requireGone(t *testing.T, pgid, pid int) {
	t.Helper()
	require.False(t, execjob.GroupAlive(pgid), "process group %d is gone", pgid)
	require.False(t, running(pid), "grandchild %d is gone", pid)
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(string(stat[i+1:])), "Z")
}

// groupScript starts a grandchild, records both pids, and sleeps.
const groupScript = `sleep 100 & echo $! > "$OUT/child.tmp"; mv "$OUT/child.tmp" "$OUT/child"; echo $$ > "$OUT/pgid.tmp"; mv "$OUT/pgid.tmp" "$OUT/pgid"; sleep 100`

func TestTimeoutStopsTheWholeGroup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cmd := b.script(t, "job.sh", groupScript)
	j := b.job(t, execjob.Config{Command: []string{"./" + cmd}, Env: []string{"OUT=" + b.dir}, Timeout: 500 * time.Millisecond, Grace: 500 * time.Millisecond})
	started := time.Now()
	_, err := j.Run(context.Background(), task())
	require.Error(t, err)
	require.Contains(t, err.Error(), "timed out after 500ms")
	_, _, final := jobs.KindOf(err)
	require.False(t, final, "a timeout is a retry")
	require.Less(t, time.Since(started), 5*time.Second)
	requireGone(t, readPid(t, b.dir, "pgid"), readPid(t, b.dir, "child"))
	require.Equal(t, 1.0, testutil.ToFloat64(b.m.Killed("resize", "timeout")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.m.Exits("resize", "timeout")))
}

func TestTermIgnoredGetsKilledAfterTheGrace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cmd := b.script(t, "job.sh", `trap '' TERM; echo $$ > "$OUT/pgid.tmp"; mv "$OUT/pgid.tmp" "$OUT/pgid"; while :; do sleep 0.05; done`)
	j := b.job(t, execjob.Config{Command: []string{"./" + cmd}, Env: []string{"OUT=" + b.dir}, Timeout: 300 * time.Millisecond, Grace: 300 * time.Millisecond})
	_, err := j.Run(context.Background(), task())
	require.ErrorContains(t, err, "timed out")
	pgid := readPid(t, b.dir, "pgid")
	requireGone(t, pgid, pgid)
}

func TestCancelStopsTheWholeGroup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cmd := b.script(t, "job.sh", groupScript)
	j := b.job(t, execjob.Config{Command: []string{"./" + cmd}, Env: []string{"OUT=" + b.dir}, Grace: 500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := j.Run(ctx, task()); done <- err }()
	pgid := readPid(t, b.dir, "pgid") // the group is up
	cancel()
	err := <-done
	require.ErrorIs(t, err, context.Canceled)
	_, _, final := jobs.KindOf(err)
	require.False(t, final)
	requireGone(t, pgid, readPid(t, b.dir, "child"))
	require.Equal(t, 1.0, testutil.ToFloat64(b.m.Killed("resize", "shutdown")))
}

func TestLeftoverChildHoldingStdoutDoesNotHoldRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The background sleep inherits stdout and outlives the script.
	cmd := b.script(t, "job.sh", `sleep 100 & echo $! > "$OUT/child.tmp"; mv "$OUT/child.tmp" "$OUT/child"; echo '{"done": 1}'`)
	j := b.job(t, execjob.Config{Command: []string{"./" + cmd}, Env: []string{"OUT=" + b.dir}, Grace: 5 * time.Second})
	started := time.Now()
	out, err := j.Run(context.Background(), task())
	require.NoError(t, err)
	require.JSONEq(t, `{"done": 1}`, string(out.(json.RawMessage)))
	require.Less(t, time.Since(started), 4*time.Second, "Run does not wait for the leftover child")
	child := readPid(t, b.dir, "child")
	require.False(t, running(child), "the leftover child is killed")
}

func TestCommandThatCannotStart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, os.WriteFile(filepath.Join(b.dir, "gone.sh"), []byte("#!/bin/sh\n"), 0o755))
	j := b.job(t, execjob.Config{Command: []string{"./gone.sh"}})
	require.NoError(t, os.Remove(filepath.Join(b.dir, "gone.sh")))
	_, err := j.Run(context.Background(), task())
	kind, _, final := jobs.KindOf(err)
	require.True(t, final, "%v", err)
	require.Equal(t, "StartFailed", kind)
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plain.txt"), nil, 0o644))
	err := execjob.Config{
		Command: []string{"./plain.txt"}, Dir: dir, Timeout: -time.Second, Grace: -1,
		MaxStdout: -1, MaxStderr: -1, Env: []string{"NOEQUALS", "=x", "TASKBRIDGE_JOB=x"},
	}.Validate()
	require.Error(t, err)
	for _, want := range []string{"not executable", "timeout -1s", "grace", "maxStdout", "maxStderr", `"NOEQUALS"`, `"=x"`, "TASKBRIDGE_JOB"} {
		require.Contains(t, err.Error(), want)
	}
	require.ErrorContains(t, execjob.Config{}.Validate(), "command is empty")
	require.ErrorContains(t, execjob.Config{Command: []string{"scripts/missing.sh"}, Dir: dir}.Validate(), "no such file")
	require.NoError(t, execjob.Config{Command: []string{"sh", "x.sh"}}.Validate(), "a bare name found in PATH")
	require.ErrorContains(t, execjob.Config{Command: []string{"no-such-command-taskbridge"}}.Validate(), "no-such-command-taskbridge",
		"a bare name is looked up as New will: validate refuses what run would")

	_, err = execjob.New("j", execjob.Config{Command: []string{"no-such-command-taskbridge"}}, zaptest.NewLogger(t), nil)
	require.ErrorContains(t, err, "no-such-command-taskbridge")
}

func TestHandlerTimeoutLeavesRoomToStop(t *testing.T) {
	t.Parallel()
	require.Equal(t, 30*time.Minute+11*time.Second, execjob.Config{}.HandlerTimeout())
	require.Equal(t, 10*time.Second+8*time.Second, execjob.Config{Timeout: 10 * time.Second, Grace: time.Second}.HandlerTimeout())
}

func TestNewMetricsTwiceOnOneRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a, b := execjob.NewMetrics(reg), execjob.NewMetrics(reg)
	a.Exits("j", "0").Inc()
	require.Equal(t, 1.0, testutil.ToFloat64(b.Exits("j", "0")))
}

func TestSeriesExistBeforeTheFirstRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.job(t, execjob.Config{Command: []string{"sh"}})
	require.Equal(t, 3, testutil.CollectAndCount(b.reg, "worker_exec_killed_total"), "timeout, shutdown, task_closed")
	require.Equal(t, 1, testutil.CollectAndCount(b.reg, "worker_exec_exits_total"))
	require.Equal(t, 1, testutil.CollectAndCount(b.reg, "worker_exec_duration_seconds"))
}

func TestLargeDetailNotReadByTheCommand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cmd := b.script(t, "job.sh", `echo '{"ignored": "stdin"}'`)
	tk := task()
	tk.Detail = json.RawMessage(`{"blob":"` + strings.Repeat("x", 300<<10) + `"}`)
	out, err := b.job(t, execjob.Config{Command: []string{"./" + cmd}}).Run(context.Background(), tk)
	require.NoError(t, err)
	require.JSONEq(t, `{"ignored": "stdin"}`, string(out.(json.RawMessage)))
}

func TestLargeDetailReadWhole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cmd := b.script(t, "job.sh", `printf '{"bytes": %s}' "$(wc -c | tr -d ' ')"`)
	tk := task()
	tk.Detail = json.RawMessage(`{"blob":"` + strings.Repeat("x", 300<<10) + `"}`)
	out, err := b.job(t, execjob.Config{Command: []string{"./" + cmd}}).Run(context.Background(), tk)
	require.NoError(t, err)
	require.JSONEq(t, `{"bytes": `+strconv.Itoa(len(`{"blob":""}`)+300<<10)+`}`, string(out.(json.RawMessage)))
}

package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestE2ETutorialGreeter follows README "Your own jobs" literally with the files of
// examples/greeter: a new module in an empty folder, the replace steps, build,
// validate, bootstrap, run, `start --wait`. A failed execution's `start --wait`
// names the program and the failure's cause, though moto drops causes.
func TestE2ETutorialGreeter(t *testing.T) {
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir := t.TempDir()
	for _, name := range []string{"main.go", "topology.json", "asl/greeter.asl.json"} {
		b, err := os.ReadFile(filepath.Join(repo, "examples", "greeter", name))
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
	for _, args := range [][]string{
		{"mod", "init", "example.com/greeter"},
		{"mod", "edit", "-replace", "github.com/taskbridge/taskbridge=" + repo},
		{"mod", "tidy"},
		{"build", "-o", "greeter", "."},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s: %s", strings.Join(args, " "), out)
	}
	bin := filepath.Join(dir, "greeter")
	st := newStackWith(t, bin, "WORKER_TOPOLOGY="+filepath.Join(dir, "topology.json"))
	require.Contains(t, st.cli("validate"), "1 queues, 1 state machines: ok")
	st.startWorker()

	out := st.cli("start", "--state-machine", "greeter", "--input", `{"name":"Ada"}`, "--wait")
	require.JSONEq(t, `{"greeting":"Hello, Ada"}`, strings.TrimSpace(out))

	cmd := exec.Command(bin, "start", "--state-machine", "greeter", "--input", `{"name":42}`, "--wait")
	cmd.Env = st.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.Error(t, cmd.Run(), "a failed execution fails start --wait")
	line := stderr.String()[strings.LastIndex(strings.TrimSpace(stderr.String()), "\n")+1:]
	require.True(t, strings.HasPrefix(line, "greeter: execution "), "the error names the program: %s", line)
	_, cause, ok := strings.Cut(line, "greet.InvalidInput: ")
	require.True(t, ok, "the failure's code: %s", line)
	require.NotEmpty(t, strings.TrimSpace(cause), "a cause, or why there is none: %s", line)
	t.Logf("start --wait: %s", strings.TrimSpace(line))
}

package main_test

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// buildProgram builds a user's program the way the tutorial has one made: its own
// module (module path module) in a folder outside the repository, which requires
// this checkout through a replace directive. files are the module's files by path
// (main.go, topology.json, asl/…); a .sh file is made executable. It runs `go mod
// tidy`, then `go build` with buildFlags, and returns the folder and the binary
// (named after the module's last element).
func buildProgram(t *testing.T, module string, files map[string]string, buildFlags ...string) (dir, bin string) {
	t.Helper()
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir = t.TempDir()
	write := func(name, body string) {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), mode))
	}
	write("go.mod", "module "+module+"\n\ngo 1.26\n\nrequire github.com/taskbridge/taskbridge v0.0.0\n\nreplace github.com/taskbridge/taskbridge => "+repo+"\n")
	for name, body := range files {
		write(name, body)
	}
	goCommand(t, dir, "mod", "tidy")
	bin = filepath.Join(dir, path.Base(module))
	goCommand(t, dir, append(append([]string{"build"}, buildFlags...), "-o", bin, ".")...)
	return dir, bin
}

// goCommand runs the go command with args in dir; a failure fails the test with
// the command's output.
func goCommand(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %s: %s", strings.Join(args, " "), out)
}

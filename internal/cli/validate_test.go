package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// validate refuses a bad configuration as run does, with a file given too; two files
// are a usage error.
func TestValidateRefusesWhatRunRefusesWithAFileToo(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "t.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"source":"s","queues":[{"name":"q","detailTypes":["d"],"http":{"url":"http://127.0.0.1:1/x"}}]}`), 0o644))
	var out bytes.Buffer
	require.NoError(t, Main(context.Background(), Jobs{}, []string{"validate", p}, &out, &out))
	require.Contains(t, out.String(), p+": 1 queues, 0 state machines: ok")
	bad := Jobs{Env: []string{"WORKER_SHUTDOWN_TIMEOUT=soon"}}
	for _, args := range [][]string{{"validate"}, {"validate", p}, {"validate", "--stack", p}} {
		err := Main(context.Background(), bad, args, &out, &out)
		require.ErrorContains(t, err, "WORKER_SHUTDOWN_TIMEOUT", "%v", args)
	}
	err := Main(context.Background(), Jobs{}, []string{"validate", "--stack", p, "extra"}, &out, &out)
	require.Equal(t, 2, ExitCode(err), "two files: %v", err)
}

// validate --stack on a stack it cannot read fails, naming the stack, instead of
// passing for a check it did not make.
func TestValidateStackFailsWhenTheStackCannotBeRead(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := closed.Addr().String()
	require.NoError(t, closed.Close())
	t.Setenv("AWS_ENDPOINT_URL", "http://"+addr)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
	p := filepath.Join(t.TempDir(), "t.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"source":"s","queues":[{"name":"q","detailTypes":["d"],"http":{"url":"http://127.0.0.1:1/x"}}]}`), 0o644))
	var out bytes.Buffer
	err = Main(context.Background(), Jobs{Env: []string{"WORKER_STACK=nowhere"}}, []string{"validate", "--stack", p}, &out, &out)
	require.ErrorContains(t, err, "read the stack nowhere")
	require.NotContains(t, out.String(), ": ok", "no ok for a check not made")
}

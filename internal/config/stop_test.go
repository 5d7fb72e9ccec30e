package config

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStopBudgetSpendsTheShutdownTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		shutdown, drain, flush time.Duration
	}{
		{25 * time.Second, 21 * time.Second, 3 * time.Second}, // the default: all but the 4 s reserve
		{10 * time.Second, 6 * time.Second, 3 * time.Second},
		{6 * time.Second, 3 * time.Second, 2250 * time.Millisecond}, // at least half drains
		{time.Second, 500 * time.Millisecond, 375 * time.Millisecond},
		{115 * time.Second, 111 * time.Second, 3 * time.Second},
	} {
		t.Run(tc.shutdown.String(), func(t *testing.T) {
			t.Parallel()
			b := NewStopBudget(tc.shutdown)
			require.Equal(t, tc.drain, b.Drain)
			require.Equal(t, tc.flush, b.Flush)
			require.LessOrEqual(t, b.Drain+b.Flush, b.Shutdown, "the pollers' stop fits before the last guard")
			for name, part := range map[string]time.Duration{"protection drop": b.ProtectionDrop, "batch flush": b.BatchFlush, "server stop": b.ServerStop} {
				require.LessOrEqual(t, part, b.Shutdown, "the %s, beside the drain, fits before the last guard", name)
			}
			require.Equal(t, b.Shutdown+b.TracingFlush, b.Exit())
			require.Less(t, b.Exit(), b.ECSStopTimeout(), "the tracing flush and the exit fit before ECS's SIGKILL")
			require.Equal(t, b.Shutdown+ECSStopMargin, b.ECSStopTimeout())
		})
	}
}

func TestShutdownTimeoutFitsECSStopTimeout(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{{"1s", true}, {"115s", true}, {"116s", false}, {"0s", false}, {"-1s", false}} {
		t.Run(tc.value, func(t *testing.T) {
			t.Setenv("WORKER_SHUTDOWN_TIMEOUT", tc.value)
			c, err := Load()
			if tc.ok {
				require.NoError(t, err)
				require.LessOrEqual(t, c.Stop().ECSStopTimeout(), ECSStopTimeoutMax)
				return
			}
			require.ErrorContains(t, err, "WORKER_SHUTDOWN_TIMEOUT: must be above 0s and at most 1m55s")
		})
	}
}

// DefaultShutdownTimeout is what Load gives when the variable is unset (deploy
// checks terraform's default against it).
func TestDefaultShutdownTimeout(t *testing.T) {
	t.Setenv("WORKER_SHUTDOWN_TIMEOUT", "")
	require.NoError(t, os.Unsetenv("WORKER_SHUTDOWN_TIMEOUT"))
	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, DefaultShutdownTimeout(), c.ShutdownTimeout)
	require.Equal(t, 25*time.Second, DefaultShutdownTimeout())
}

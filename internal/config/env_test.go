package config

import (
	"testing"

	"github.com/kelseyhightower/envconfig"
	"github.com/stretchr/testify/require"
)

// Load reads the tags as envconfig.Process reads them: the same Config from the
// same environment, defaults, pointers, lists and base prefixes included.
func TestProcessMatchesEnvconfig(t *testing.T) {
	for _, env := range []map[string]string{
		{},
		{"WORKER_STACK": "s1", "WORKER_ROLES": " Jobs ,batch", "WORKER_CONCURRENCY": "0x10", "WORKER_S3_PATH_STYLE": "false",
			"WORKER_POLL_WAIT": "1.5s", "WORKER_SFN_CALLBACK_RATE": "1e3", "WORKER_METRICS_ADDR": "", "WORKER_BATCH_MAX_FILES": "010"},
		{"WORKER_ROLES": "", "WORKER_TASK_PROTECTION_MINUTES": "-1"},
	} {
		for k, v := range env {
			t.Setenv(k, v)
		}
		var want, got Config
		require.NoError(t, envconfig.Process(Prefix, &want))
		require.NoError(t, process(&got, Layered(nil)))
		require.Equal(t, want, got, "%v", env)
	}
	t.Setenv("WORKER_BATCH_WINDOW", "soon")
	var c Config
	err := process(&c, Layered(nil))
	var pe *envconfig.ParseError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "WORKER_BATCH_WINDOW", pe.KeyName)
}

// Layered settings win over the process environment's; what they do not set is
// the process environment's; the process environment is not changed.
func TestLoadFromLayered(t *testing.T) {
	t.Setenv("WORKER_STACK", "process")
	t.Setenv("WORKER_LOG_LEVEL", "warn")
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	c, err := LoadFrom(Layered([]string{"WORKER_STACK=first", "WORKER_STACK=embedded", "OTEL_TRACES_EXPORTER=none", "WORKER_METRICS_ADDR=", "not a pair"}))
	require.NoError(t, err)
	require.Equal(t, "embedded", c.Stack, "the last of a key wins")
	require.Equal(t, "embedded-data", c.DataBucket)
	require.Equal(t, "warn", c.LogLevel, "unset in the layer: the process environment's")
	require.Empty(t, c.Tracing.Exporters, "standard variables are layered too")
	require.Empty(t, c.MetricsAddr, "set to empty is set")

	p, err := Load()
	require.NoError(t, err)
	require.Equal(t, "process", p.Stack)
	require.Equal(t, []string{"console"}, p.Tracing.Exporters)
}

// The name without the prefix is another program's variable, not the worker's
// setting (envconfig would read STACK for WORKER_STACK).
func TestLoadReadsOnlyPrefixedNames(t *testing.T) {
	t.Setenv("STACK", "not-mine")
	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, "taskbridge", c.Stack)
}

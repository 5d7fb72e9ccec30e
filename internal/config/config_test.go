package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadDefaults(t *testing.T) {
	t.Setenv("WORKER_STACK", "demo")
	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, "demo", c.EventBus)
	require.Equal(t, "demo-data", c.DataBucket)
	require.Equal(t, "demo-landing", c.LandingBucket)
	require.Equal(t, "demo-etl", c.GlueJob)
	require.True(t, c.HasRole(RoleJobs) && c.HasRole(RoleBatch), "both roles by default")
	require.Nil(t, c.Concurrency, "concurrency comes from the topology unless set")
	require.Equal(t, "127.0.0.1:8080", c.ConsoleAddr, "the console listens on loopback by default")
	require.False(t, c.ConsoleActions, "the console's actions are off by default")
}

func TestLoadReportsEveryWrongValue(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want []string // each must appear in the error
	}{
		{"stack not a resource name", map[string]string{"WORKER_STACK": "My Stack"}, []string{`WORKER_STACK: must be 2-31 lowercase letters, digits or dashes, starting with a letter or digit, got "My Stack"`}},
		{"zero concurrency", map[string]string{"WORKER_CONCURRENCY": "0"}, []string{"WORKER_CONCURRENCY: must be >= 1, got 0"}},
		{"negative duration", map[string]string{"WORKER_HEARTBEAT_INTERVAL": "-1s"}, []string{"WORKER_HEARTBEAT_INTERVAL: must not be negative"}},
		{"unknown log level", map[string]string{"WORKER_LOG_LEVEL": "loud"}, []string{`WORKER_LOG_LEVEL: unknown level "loud"`}},
		{"unknown role", map[string]string{"WORKER_ROLES": "jobs,cron"}, []string{`WORKER_ROLES: unknown role "cron"`}},
		{"batch too large", map[string]string{"WORKER_BATCH_MAX_FILES": "10001"}, []string{"WORKER_BATCH_MAX_FILES: must be between 1 and 10000"}},
		{"window too short", map[string]string{"WORKER_BATCH_WINDOW": "500ms"}, []string{"WORKER_BATCH_WINDOW: must be between 1s and 12h"}},
		{"callback rate not a positive number", map[string]string{"WORKER_SFN_CALLBACK_RATE": "NaN", "WORKER_SFN_START_RATE": "0"}, []string{"WORKER_SFN_CALLBACK_RATE: must be positive", "WORKER_SFN_START_RATE: must be positive"}},
		{"report timeout too short", map[string]string{"WORKER_REPORT_TIMEOUT": "10ms"}, []string{"WORKER_REPORT_TIMEOUT: must be at least 1s"}},
		{"poll wait over SQS max", map[string]string{"WORKER_POLL_WAIT": "30s"}, []string{"WORKER_POLL_WAIT: must be between 1s and 20s"}},
		{"shutdown past ECS max", map[string]string{"WORKER_SHUTDOWN_TIMEOUT": "5m"}, []string{"WORKER_SHUTDOWN_TIMEOUT"}},
		{"not a duration", map[string]string{"WORKER_JOB_TIMEOUT": "soon"}, []string{`WORKER_JOB_TIMEOUT: "soon" is not a duration`}},
		{"not a number", map[string]string{"WORKER_BATCH_MAX_FILES": "many"}, []string{`WORKER_BATCH_MAX_FILES: "many" is not a whole number`}},
		{"not a number for a pointer", map[string]string{"WORKER_CONCURRENCY": "abc"}, []string{`WORKER_CONCURRENCY: "abc" is not a whole number`}},
		{"console basic auth without a password", map[string]string{"WORKER_CONSOLE_BASIC_AUTH": "ops"}, []string{"WORKER_CONSOLE_BASIC_AUTH: must be user:password"}},
		{"console cache negative", map[string]string{"WORKER_CONSOLE_CACHE_TTL": "-1s"}, []string{"WORKER_CONSOLE_CACHE_TTL: must not be negative"}},
		{"several at once", map[string]string{"WORKER_LOG_FORMAT": "xml", "WORKER_CONCURRENCY": "-3"}, []string{"WORKER_LOG_FORMAT", "WORKER_CONCURRENCY"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := Load()
			require.Error(t, err)
			require.NotContains(t, err.Error(), "envconfig", "no library internals")
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	require.NoError(t, Usage(&b))
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := Prefix + "_" + f.Tag.Get("envconfig")
		require.Contains(t, b.String(), name)
		require.NotEmpty(t, f.Tag.Get("desc"), "%s has a meaning for `worker config`", name)
	}
	for _, sdk := range []string{"AWS_REGION", "AWS_ENDPOINT_URL"} {
		require.True(t, strings.Contains(b.String(), sdk), "usage mentions %s", sdk)
	}
}

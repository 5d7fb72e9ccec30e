package config

import (
	"bytes"
	"os"
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
		{"protection minutes above the agent's range", map[string]string{"WORKER_TASK_PROTECTION_MINUTES": "2881"}, []string{"WORKER_TASK_PROTECTION_MINUTES: must be between 0 (off) and 2880"}},
		{"negative protection minutes", map[string]string{"WORKER_TASK_PROTECTION_MINUTES": "-1"}, []string{"WORKER_TASK_PROTECTION_MINUTES: must be between 0 (off) and 2880"}},
		{"job timeout past an execution's year", map[string]string{"WORKER_JOB_TIMEOUT": "9000h"}, []string{"WORKER_JOB_TIMEOUT: 9000h0m0s cannot be honoured: a Step Functions Standard execution runs at most a year"}},
		{"visibility cap past SQS's", map[string]string{"WORKER_TEST_VISIBILITY_CAP": "13h"}, []string{"WORKER_TEST_VISIBILITY_CAP: must be between 4s and 12h"}},
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
		if f.Tag.Get("ignored") == "true" {
			continue // a standard variable: below
		}
		name := Prefix + "_" + f.Tag.Get("envconfig")
		require.Contains(t, b.String(), name)
		require.NotEmpty(t, f.Tag.Get("desc"), "%s has a meaning for `worker config`", name)
	}
	for _, std := range []string{"AWS_REGION", "AWS_ENDPOINT_URL", "ECS_AGENT_URI", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME"} {
		require.True(t, strings.Contains(b.String(), "\n"+std), "usage lists %s", std)
	}
	std, own := strings.Index(b.String(), "# standard variables"), strings.Index(b.String(), "# the worker's own")
	require.True(t, std >= 0 && own > std, "the standard variables are marked as such, before the worker's own:\n%s", b.String())
	require.Less(t, strings.Index(b.String(), "OTEL_TRACES_EXPORTER"), own)
}

// The standard variables the worker reads itself are read here, under their own
// names, and nowhere else (internal/tracing and cli take them from Config).
func TestLoadReadsTheStandardVariables(t *testing.T) {
	t.Setenv("ECS_AGENT_URI", "http://169.254.170.2/api/task-1")
	t.Setenv("OTEL_TRACES_EXPORTER", " OTLP, none ,console")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
	t.Setenv("WORKER_ECS_AGENT_URI", "http://not.read/") // no WORKER_ twin
	c, err := Load()
	require.NoError(t, err)
	require.Equal(t, "http://169.254.170.2/api/task-1", c.ECSAgentURI)
	require.Equal(t, Tracing{Exporters: []string{"otlp", "console"}, OTLPProtocol: "grpc"}, c.Tracing, "the traces protocol wins")

	t.Setenv("OTEL_SDK_DISABLED", "TRUE")
	c, err = Load()
	require.NoError(t, err)
	require.Empty(t, c.Tracing.Exporters, "OTEL_SDK_DISABLED wins")
}

func TestLoadDefaultsOfTheStandardVariables(t *testing.T) {
	for _, k := range []string{"ECS_AGENT_URI", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		t.Setenv(k, "") // set for the test's end, then unset for Load
		require.NoError(t, os.Unsetenv(k))
	}
	c, err := Load()
	require.NoError(t, err)
	require.Empty(t, c.ECSAgentURI)
	require.Equal(t, Tracing{OTLPProtocol: "http/protobuf"}, c.Tracing, "tracing off by default")
}

func TestLoadRefusesBadStandardValues(t *testing.T) {
	t.Setenv("ECS_AGENT_URI", "169.254.170.2/api/x")
	t.Setenv("OTEL_TRACES_EXPORTER", "jaeger,otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	_, err := Load()
	require.Error(t, err)
	for _, w := range []string{`ECS_AGENT_URI: must be an http URL`, `OTEL_TRACES_EXPORTER: unknown exporter "jaeger"`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol "http/json"`} {
		require.Contains(t, err.Error(), w)
	}
}

func TestEveryCheckNamesAVariable(t *testing.T) {
	t.Parallel()
	vars := map[string]bool{}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		vars[typ.Field(i).Tag.Get("envconfig")] = true
	}
	checks := Config{Roles: []string{"cron"}}.checks()
	require.NotEmpty(t, checks)
	for _, chk := range checks {
		require.True(t, vars[chk.name], "check %q names no WORKER_ variable", chk.name)
		require.NotEmpty(t, chk.problem, chk.name)
	}
}

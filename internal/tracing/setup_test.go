package tracing

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

func TestSetupOffByDefault(t *testing.T) {
	for _, v := range []string{"", "none", " none "} {
		t.Setenv("OTEL_TRACES_EXPORTER", v)
		stop, err := Setup(context.Background(), Config{}, zaptest.NewLogger(t))
		require.NoError(t, err)
		require.False(t, Enabled(), "OTEL_TRACES_EXPORTER=%q", v)
		stop()
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	stop, err := Setup(context.Background(), Config{}, zaptest.NewLogger(t))
	require.NoError(t, err)
	require.False(t, Enabled(), "OTEL_SDK_DISABLED wins")
	stop()
}

// A collector that is down fails every batch: one line, not one per batch.
func TestExportErrorsAreRateLimited(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	report := rateLimited(zap.New(core), time.Hour)
	for range 5 {
		report(errors.New("connection refused"))
	}
	require.Equal(t, 1, logs.Len())
}

func TestSetupRefusesUnknownExporters(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "jaeger")
	_, err := Setup(context.Background(), Config{}, zaptest.NewLogger(t))
	require.ErrorContains(t, err, "want none, otlp or console")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	_, err = Setup(context.Background(), Config{}, zaptest.NewLogger(t))
	require.ErrorContains(t, err, "want http/protobuf or grpc")
	require.False(t, Enabled())
}

// The console exporter appends to WORKER_TRACE_FILE; stop flushes what the batcher
// holds and turns tracing off.
func TestSetupConsoleToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spans.jsonl")
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_SERVICE_NAME", "svc-from-env")
	stop, err := Setup(context.Background(), Config{ConsolePath: path, Version: "v1"}, zaptest.NewLogger(t))
	require.NoError(t, err)
	require.True(t, Enabled())
	_, span := Start(Extract(context.Background(), Incoming{ExecutionArn: "arn:x"}), "handle q", "", trace.SpanKindConsumer)
	span.End()
	stop()
	require.False(t, Enabled())

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var got struct {
		Name        string
		SpanContext struct{ TraceID string }
		Resource    []struct {
			Key   string
			Value struct{ Value any }
		}
	}
	require.NoError(t, json.Unmarshal(b, &got), "%s", b)
	require.Equal(t, "handle q", got.Name)
	require.Equal(t, executionTraceID("arn:x").String(), got.SpanContext.TraceID)
	res := map[string]any{}
	for _, kv := range got.Resource {
		res[kv.Key] = kv.Value.Value
	}
	require.Equal(t, "svc-from-env", res["service.name"], "the environment's name wins")
	require.Equal(t, "v1", res["service.version"])
}

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

// flush is a bound for the flush at the stop, as config.StopBudget gives it.
const flush = 2 * time.Second

func TestSetupOffWithoutExporters(t *testing.T) {
	stop, err := Setup(context.Background(), Config{FlushTimeout: flush}, zaptest.NewLogger(t))
	require.NoError(t, err)
	require.False(t, Enabled(), "no exporter (OTEL_TRACES_EXPORTER unset, none, or OTEL_SDK_DISABLED=true; internal/config reads them)")
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
	_, err := Setup(context.Background(), Config{Exporters: []string{"jaeger"}, FlushTimeout: flush}, zaptest.NewLogger(t))
	require.ErrorContains(t, err, "want none, otlp or console")
	_, err = Setup(context.Background(), Config{Exporters: []string{"otlp"}, OTLPProtocol: "http/json", FlushTimeout: flush}, zaptest.NewLogger(t))
	require.ErrorContains(t, err, "want http/protobuf or grpc")
	_, err = Setup(context.Background(), Config{Exporters: []string{"console"}}, zaptest.NewLogger(t))
	require.ErrorContains(t, err, "FlushTimeout must be positive", "the stop's budget gives the flush its bound")
	require.False(t, Enabled())
}

// The console exporter appends to WORKER_TRACE_FILE; stop flushes what the batcher
// holds and turns tracing off.
func TestSetupConsoleToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spans.jsonl")
	t.Setenv("OTEL_SERVICE_NAME", "svc-from-env") // the SDK's to read
	stop, err := Setup(context.Background(), Config{Exporters: []string{"console"}, ConsolePath: path, Version: "v1", FlushTimeout: flush}, zaptest.NewLogger(t))
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

package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/tracing"
)

// Not parallel: it turns tracing on for the process while it runs (the parallel
// tests start after it).
func TestRouterSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	restore := tracing.Use(tp)
	defer restore()
	r, _, _ := routerWith(t, Job{Name: "job", Run: ok})
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	body := envelope("work", map[string]any{"TaskToken": "secret-token", "executionArn": execARN, "traceparent": parent})
	require.NoError(t, r.Handle(context.Background(), consumer.Message{ID: "m1", Queue: "q", Body: body, ReceiveCount: 2}))

	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	job, msg := spans[0], spans[1] // ended in this order
	require.Equal(t, "handle q", msg.Name)
	require.Equal(t, "job job", job.Name)
	require.Equal(t, msg.SpanContext.SpanID(), job.Parent.SpanID(), "the job is the message's child")
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", msg.SpanContext.TraceID().String(), "the detail's traceparent is the parent")
	require.Equal(t, "b7ad6b7169203331", msg.Parent.SpanID().String())
	attrs := map[string]string{}
	for _, a := range msg.Attributes {
		attrs[string(a.Key)] = a.Value.String()
		require.NotContains(t, a.Value.String(), "secret-token", "no attribute carries the token")
	}
	for k, want := range map[string]string{"messaging.destination.name": "q", "taskbridge.job": "job", "taskbridge.outcome": "success",
		"taskbridge.receive_count": "2", "taskbridge.execution_arn": execARN, "messaging.message.id": "m1"} {
		require.Equal(t, want, attrs[k], k)
	}
	for _, a := range job.Attributes {
		require.False(t, strings.Contains(a.Value.String(), "secret-token"))
	}
}

// BenchmarkRouterTracing is BenchmarkRouterHandle (decode, route, no-op job,
// report) with tracing off (what ships by default: an atomic load per span site),
// with every span site running against a no-op tracer, and on (every span sampled
// and handed to a batcher whose exporter drops them).
func BenchmarkRouterTracing(b *testing.B) {
	for _, mode := range []string{"off", "noop", "on"} {
		b.Run(mode, func(b *testing.B) {
			switch mode {
			case "noop":
				defer tracing.Use(noop.NewTracerProvider())()
			case "on":
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
				defer func() { _ = tp.Shutdown(context.Background()) }()
				defer tracing.Use(tp)()
			}
			r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "job", DetailTypes: []string{"work"}}}},
				[]Job{{Name: "job", Run: ok}}, newFakeReporter(), noBeats{}, nil, zap.NewNop(), NewMetrics(prometheus.NewRegistry()))
			if err != nil {
				b.Fatal(err)
			}
			msg := consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN}), ReceiveCount: 1}
			b.ReportAllocs()
			began := cpuTime()
			for b.Loop() {
				if err := r.Handle(context.Background(), msg); err != nil {
					b.Fatal(err)
				}
			}
			// CPU rather than wall time: on a shared machine the wall time of a
			// message mostly measures the neighbours.
			b.ReportMetric(float64(cpuTime()-began)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user and system CPU time so far (GC included).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// Not parallel (tracing on). A job's error that quotes its task token reaches the
// DLQ's reason (the error the consumer gets), the spans' status and the failure
// cause with the token replaced by its hash, and still unwraps to what it was.
func TestAnErrorQuotingItsTokenIsRedacted(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	restore := tracing.Use(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	defer restore()
	const token = "AQB4AAAAsecret-token-of-a-task/+=="
	sentinel := errors.New("upstream refused")
	r, rep, _ := routerWith(t, Job{Name: "job", Run: fails(fmt.Errorf("call with %s: %w", token, sentinel))})
	body := envelope("work", map[string]any{"TaskToken": token})
	err := r.Handle(context.Background(), consumer.Message{ID: "m1", Queue: "q", Body: body, ReceiveCount: 3, MaxReceiveCount: 3})
	require.True(t, consumer.IsDeadLetter(err), "%v", err)
	require.ErrorIs(t, err, sentinel)
	require.NotContains(t, err.Error(), token)
	require.Contains(t, err.Error(), telemetry.RedactedToken(token))
	require.Equal(t, "job.RetriesExhausted", rep.failed[token])
	require.NotContains(t, rep.causes[token], "secret-token")
	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	for _, s := range spans {
		require.NotEmpty(t, s.Status.Description, s.Name)
		require.NotContains(t, s.Status.Description, "secret-token", s.Name)
	}
}

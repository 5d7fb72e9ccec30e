package event

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/tracing"
)

const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestWithTraceparent(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ in, want string }{
		"empty object":        {in: `{}`, want: `{"traceparent":"` + tp + `"}`},
		"spaced empty object": {in: `{ }`, want: `{"traceparent":"` + tp + `"}`},
		"members":             {in: `{"name":"a","n":1}`, want: `{"traceparent":"` + tp + `","name":"a","n":1}`},
		"replaced":            {in: `{"name":"a","traceparent":"00-old"}`, want: `{"name":"a","traceparent":"` + tp + `"}`},
		"replaced any case":   {in: `{"TraceParent":5,"x":"<&>"}`, want: `{"traceparent":"` + tp + `","x":"<&>"}`},
		"escaped key":         {in: `{"\u0074raceparent":"00-old"}`, want: `{"traceparent":"` + tp + `"}`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := withTraceparent([]byte(tc.in), tp)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(got))
			require.True(t, json.Valid(got))
			if name != "replaced" && name != "replaced any case" && name != "escaped key" {
				require.Equal(t, tc.want, string(got), "the short way keeps the bytes")
			}
		})
	}
}

// With tracing on, each entry carries the publish span: TraceHeader (X-Ray) and a
// traceparent in the detail; off, the entry is as it was.
func TestPublishCarriesTheTrace(t *testing.T) {
	bus := &fakeBus{}
	p := NewPublisher(PublisherConfig{EventBus: "bus", Source: "src"}, bus, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, p.Publish(context.Background(), "off", map[string]any{"a": 1}))

	tpr := sdktrace.NewTracerProvider()
	defer func() { _ = tpr.Shutdown(context.Background()) }()
	traced, release := tracing.With(context.Background(), tpr)
	defer release()
	ctx, span := tracing.Start(traced, "job", "", trace.SpanKindInternal)
	require.NoError(t, p.Publish(ctx, "on", map[string]any{"a": 1}))
	span.End()

	require.Len(t, bus.calls, 2)
	off := bus.calls[0][0]
	require.Nil(t, off.TraceHeader)
	require.Equal(t, `{"a":1}`, aws.ToString(off.Detail))

	on := bus.calls[1][0]
	var detail struct{ Traceparent string }
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(on.Detail)), &detail))
	parent, ok := tracing.ParseXRay(aws.ToString(on.TraceHeader))
	require.True(t, ok, "TraceHeader %q", aws.ToString(on.TraceHeader))
	require.Equal(t, span.SpanContext().TraceID(), parent.TraceID())
	require.NotEqual(t, span.SpanContext().SpanID(), parent.SpanID(), "the parent is the publish span, a child of the job's")
	require.Equal(t, "00-"+parent.TraceID().String()+"-"+parent.SpanID().String()+"-01", detail.Traceparent)
}

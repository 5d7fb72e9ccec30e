package tracing

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Observe records v on o, with the trace id of ctx's span as an exemplar when that
// span is sampled, so that a latency bucket on a dashboard links to a trace. The
// exemplars are served in the OpenMetrics format only.
func Observe(ctx context.Context, o prometheus.Observer, v float64) {
	if Enabled(ctx) {
		if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
			if eo, ok := o.(prometheus.ExemplarObserver); ok {
				eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
				return
			}
		}
	}
	o.Observe(v)
}

// Package tracing follows one execution across the worker's hops with OpenTelemetry:
// it sets tracing up from the standard OTEL_* variables (off unless
// OTEL_TRACES_EXPORTER names an exporter), reads the context a message arrives
// with (the X-Ray AWSTraceHeader, else a W3C traceparent in the event detail),
// writes it into the events the worker puts on the bus, starts the spans of the
// other packages and puts trace ids on duration histograms as exemplars.
//
// Off, it costs an atomic load per span site: no span, no context value, no
// exporter, no network.
package tracing

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// instrumentation names the worker's tracer.
const instrumentation = "github.com/taskbridge/taskbridge"

// tracer is the tracer in use; nil while tracing is off. Setup and Use set it.
var tracer atomic.Pointer[trace.Tracer]

// Enabled reports whether spans are made.
func Enabled() bool { return tracer.Load() != nil }

// Use makes spans with tp (nil: tracing off) and returns what restores the tracer
// before. Setup calls it; tests and benchmarks call it with their own provider.
func Use(tp trace.TracerProvider) (restore func()) {
	var next *trace.Tracer
	if tp != nil {
		t := tp.Tracer(instrumentation)
		next = &t
	}
	before := tracer.Swap(next)
	return func() { tracer.Store(before) }
}

// noSpan is what Start returns while tracing is off.
var noSpan trace.Span = noop.Span{}

// Start starts a span under ctx's span, named name, or "name subject" when subject
// is not empty (joined here so that a span that is off costs no concatenation).
// Off, it returns ctx itself and a span that does nothing. Callers set attributes
// only when span.IsRecording(), so that an attribute list is not built for nothing.
func Start(ctx context.Context, name, subject string, kind trace.SpanKind) (context.Context, trace.Span) {
	t := tracer.Load()
	if t == nil {
		return ctx, noSpan
	}
	if subject != "" {
		name += " " + subject
	}
	return (*t).Start(ctx, name, trace.WithSpanKind(kind))
}

// End ends span, marking it failed with err when err is not nil.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

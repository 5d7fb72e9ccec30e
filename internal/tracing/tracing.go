// Package tracing follows one execution across the worker's hops with OpenTelemetry:
// it sets tracing up from the standard OTEL_* variables (off unless
// OTEL_TRACES_EXPORTER names an exporter), reads the context a message arrives
// with (the X-Ray AWSTraceHeader, else a W3C traceparent in the event detail),
// writes it into the events the worker puts on the bus, starts the spans of the
// other packages and puts trace ids on duration histograms as exemplars.
//
// Off, it costs an atomic load per span site: no span, no context lookup, no
// exporter, no network. A run's tracer lives in its context (With).
package tracing

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// instrumentation names the worker's tracer.
const instrumentation = "github.com/taskbridge/taskbridge"

// A run's tracer travels in its context (With), not in a package variable: two
// workers embedded in one process each own their tracer, and every span site
// already takes the run's context (the AWS SDK's middleware included).
type tracerKey struct{}

// runsTracing counts the contexts With has given a tracer that are still in use:
// while it is zero (tracing off, the default), a span site costs this atomic load
// and no context lookup.
var runsTracing atomic.Int32

// With returns ctx whose spans are made with tp (nil: tracing off under ctx), and
// release, to call when the run that uses ctx is over. Setup calls it; tests and
// benchmarks call it with their own provider.
func With(ctx context.Context, tp trace.TracerProvider) (_ context.Context, release func()) {
	if tp == nil {
		return context.WithValue(ctx, tracerKey{}, nil), func() {}
	}
	runsTracing.Add(1)
	var once sync.Once
	return context.WithValue(ctx, tracerKey{}, tp.Tracer(instrumentation)), func() { once.Do(func() { runsTracing.Add(-1) }) }
}

// tracerOf is ctx's tracer; nil while tracing is off under ctx.
func tracerOf(ctx context.Context) trace.Tracer {
	if runsTracing.Load() == 0 {
		return nil
	}
	t, _ := ctx.Value(tracerKey{}).(trace.Tracer)
	return t
}

// Enabled reports whether spans are made under ctx.
func Enabled(ctx context.Context) bool { return tracerOf(ctx) != nil }

// noSpan is what Start returns while tracing is off.
var noSpan trace.Span = noop.Span{}

// Start starts a span under ctx's span, named name, or "name subject" when subject
// is not empty (joined here so that a span that is off costs no concatenation).
// Off, it returns ctx itself and a span that does nothing. Callers set attributes
// only when span.IsRecording(), so that an attribute list is not built for nothing.
func Start(ctx context.Context, name, subject string, kind trace.SpanKind) (context.Context, trace.Span) {
	t := tracerOf(ctx)
	if t == nil {
		return ctx, noSpan
	}
	if subject != "" {
		name += " " + subject
	}
	return t.Start(ctx, name, trace.WithSpanKind(kind))
}

// End ends span, marking it failed with err when err is not nil.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

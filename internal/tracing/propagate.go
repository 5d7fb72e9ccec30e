package tracing

import (
	"context"
	"crypto/sha256"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// w3c reads and writes the W3C traceparent.
var w3c = propagation.TraceContext{}

// Incoming is what a message tells of the trace it belongs to.
type Incoming struct {
	AWSTraceHeader string // the SQS system attribute: X-Ray on upstream (EventBridge, Step Functions)
	Traceparent    string // the event detail's "traceparent": put there by a taskbridge worker
	ExecutionArn   string // the event detail's "executionArn"
}

// Extract returns ctx with the remote parent of a message's span: the
// AWSTraceHeader when it parses (X-Ray on upstream sees the whole path), else the
// detail's traceparent. With neither, a span started under the returned ctx is a
// root whose trace id is derived from the execution ARN (see executionTraceID), so
// the jobs of one execution share a trace even when the state machine's events
// carry no trace context. Off, it returns ctx.
func Extract(ctx context.Context, in Incoming) context.Context {
	if !Enabled(ctx) {
		return ctx
	}
	if sc, ok := ParseXRay(in.AWSTraceHeader); ok {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	if in.Traceparent != "" {
		if sc := trace.SpanContextFromContext(w3c.Extract(ctx, traceparentCarrier(in.Traceparent))); sc.IsValid() {
			return trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	if in.ExecutionArn != "" {
		return context.WithValue(ctx, executionKey{}, in.ExecutionArn)
	}
	return ctx
}

// Outgoing is the trace context an event put on the bus carries.
type Outgoing struct {
	XRay        string // PutEvents entry TraceHeader
	Traceparent string // the detail's "traceparent"
}

// Inject returns the trace context of ctx's span for an event; empty when tracing
// is off or ctx has no span.
func Inject(ctx context.Context) Outgoing {
	if !Enabled(ctx) {
		return Outgoing{}
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return Outgoing{}
	}
	c := propagation.MapCarrier{}
	w3c.Inject(ctx, c)
	return Outgoing{XRay: FormatXRay(sc), Traceparent: c.Get("traceparent")}
}

// traceparentCarrier is a carrier holding only a traceparent.
type traceparentCarrier string

func (c traceparentCarrier) Get(key string) string {
	if key == "traceparent" {
		return string(c)
	}
	return ""
}
func (traceparentCarrier) Set(string, string) {}
func (traceparentCarrier) Keys() []string     { return []string{"traceparent"} }

// executionKey holds, in a context, the execution ARN a root span's trace id is
// derived from.
type executionKey struct{}

// executionTraceID is the trace id of an execution whose events carry no trace
// context: the first 16 bytes of the SHA-256 of its ARN. Every worker derives the
// same id, so every job of the execution lands in one trace; and a ratio sampler,
// which decides on the trace id, keeps or drops the execution whole. It is not an
// X-Ray id (no time in its first 4 bytes): turn X-Ray tracing on in the state
// machine to join X-Ray's trace instead (the AWSTraceHeader then wins).
func executionTraceID(arn string) trace.TraceID {
	sum := sha256.Sum256([]byte(arn))
	var id trace.TraceID
	copy(id[:], sum[:16])
	return id
}

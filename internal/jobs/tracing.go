package jobs

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/tracing"
)

// startMessageSpan starts the span of one handled message, under the trace the
// message arrived with (tracing.Extract): its AWSTraceHeader, else the detail's
// traceparent, as msg (the body read once by Handle) gives it.
func startMessageSpan(ctx context.Context, m consumer.Message, job string, msg event.Message) (context.Context, trace.Span) {
	if !tracing.Enabled(ctx) {
		return ctx, trace.SpanFromContext(context.Background())
	}
	in := tracing.Incoming{AWSTraceHeader: m.TraceHeader, Traceparent: msg.Traceparent, ExecutionArn: msg.ExecutionArn}
	ctx, span := tracing.Start(tracing.Extract(ctx, in), "handle", m.Queue, trace.SpanKindConsumer)
	if span.IsRecording() {
		// Never the task token: it is a credential.
		span.SetAttributes(
			attribute.String("messaging.system", "aws_sqs"), attribute.String("messaging.destination.name", m.Queue),
			attribute.String("messaging.message.id", m.ID), attribute.Int("taskbridge.receive_count", m.ReceiveCount),
			attribute.String("taskbridge.job", job),
		)
		if in.ExecutionArn != "" {
			span.SetAttributes(attribute.String("taskbridge.execution_arn", in.ExecutionArn))
		}
	}
	return ctx, span
}

// endMessageSpan ends it with the message's outcome.
func endMessageSpan(span trace.Span, out *outcome) {
	if span.IsRecording() {
		span.SetAttributes(attribute.String("taskbridge.outcome", out.name))
	}
	switch out.name {
	case "success", "forwarded", "task_closed":
		tracing.End(span, nil)
	default:
		tracing.End(span, out.reason)
	}
}

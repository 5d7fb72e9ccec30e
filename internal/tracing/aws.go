package tracing

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// InstrumentAWS adds to cfg a middleware that makes a client span of each AWS call
// made under a recording span (a message's, a batch's): the SDK's attempts,
// retries and throttle waits included. Calls under no span (the pollers'
// ReceiveMessage, the batched deletes) make none, so an idle worker traces
// nothing. Written here rather than taken from contrib's otelaws, whose module is
// deprecated.
func InstrumentAWS(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, func(s *middleware.Stack) error {
		// After the operation's RegisterServiceMetadata, which puts the region in
		// the context: first in Initialize, the span saw none (cloud.region "").
		if _, ok := s.Initialize.Get(serviceMetadataID); ok {
			return s.Initialize.Insert(awsSpan{}, serviceMetadataID, middleware.After)
		}
		return s.Initialize.Add(awsSpan{}, middleware.Before)
	})
}

// serviceMetadataID is the SDK's middleware that sets an operation's service and
// region in its context (awsmiddleware.RegisterServiceMetadata).
const serviceMetadataID = "RegisterServiceMetadata"

type awsSpan struct{}

func (awsSpan) ID() string { return "TaskbridgeTracing" }

func (awsSpan) HandleInitialize(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return next.HandleInitialize(ctx, in)
	}
	service, op := middleware.GetServiceID(ctx), middleware.GetOperationName(ctx)
	ctx, span := Start(ctx, service+"."+op, "", trace.SpanKindClient)
	span.SetAttributes(
		attribute.String("rpc.system", "aws-api"), attribute.String("rpc.service", service),
		attribute.String("rpc.method", op), attribute.String("cloud.region", awsmiddleware.GetRegion(ctx)),
	)
	out, md, err := next.HandleInitialize(ctx, in)
	if id, ok := awsmiddleware.GetRequestIDMetadata(md); ok {
		span.SetAttributes(attribute.String("aws.request_id", id))
	}
	End(span, err)
	return out, md, err
}

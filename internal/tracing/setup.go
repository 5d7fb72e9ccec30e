package tracing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"
)

// Config is what Setup takes: the standard OTEL_* variables the worker reads
// (internal/config reads them: OTEL_TRACES_EXPORTER, OTEL_SDK_DISABLED,
// OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL) and the worker's own settings. The SDK
// reads the other OTEL_* variables itself.
type Config struct {
	// Exporters are the exporters to use, "otlp" or "console"; none: tracing off.
	Exporters []string
	// OTLPProtocol is the otlp exporter's transport, http/protobuf (also when
	// empty) or grpc.
	OTLPProtocol string
	// FlushTimeout bounds the flush of the spans still buffered at the stop, which
	// comes after the drain (the stop's budget owns it: config.StopBudget).
	FlushTimeout time.Duration
	// ConsolePath is the file the console exporter appends spans to, one JSON
	// object a line; "" writes them to stdout.
	ConsolePath string
	Version     string // service.version
}

// errorEvery is how often a failing exporter is logged: once, then at most this often.
const errorEvery = time.Minute

// Setup turns tracing on with cfg.Exporters: none (tracing off, nothing exported,
// no network), "otlp" (over cfg.OTLPProtocol; endpoint and headers from the
// exporter's own OTEL_EXPORTER_OTLP_* variables), "console", or both.
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the resource,
// OTEL_TRACES_SAMPLER[_ARG] and OTEL_BSP_* tune sampling and batching as the SDK
// reads them. The returned stop flushes buffered spans (within cfg.FlushTimeout)
// and turns tracing off; it is safe to call when Setup turned nothing on.
func Setup(ctx context.Context, cfg Config, log *zap.Logger) (stop func(), err error) {
	names := cfg.Exporters
	if len(names) == 0 {
		return func() {}, nil
	}
	if cfg.FlushTimeout <= 0 {
		return nil, fmt.Errorf("tracing: FlushTimeout must be positive, got %s", cfg.FlushTimeout)
	}
	var opts []sdktrace.TracerProviderOption
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}
	for _, name := range names {
		exp, closer, err := newExporter(ctx, name, cfg)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("tracing: %w", err)
		}
		if closer != nil {
			closers = append(closers, closer)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "taskbridge-worker"), attribute.String("service.version", cfg.Version)),
		resource.WithTelemetrySDK(), resource.WithFromEnv(), // the environment's names win
	)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(append(opts, sdktrace.WithResource(res), sdktrace.WithIDGenerator(executionIDs{}))...)
	// Export failures are the SDK's to report; they must not reach stderr as
	// plain text among the JSON logs, nor repeat every batch while a collector is down.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(rateLimited(log, errorEvery)))
	restore := Use(tp)
	log.Info("tracing on", zap.Strings("exporters", names), zap.String("service_name", serviceName(res)))
	return func() {
		restore()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.FlushTimeout)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("tracing shutdown: spans may be lost", zap.Error(err))
		}
		closeAll()
	}, nil
}

func newExporter(ctx context.Context, name string, cfg Config) (sdktrace.SpanExporter, io.Closer, error) {
	switch name {
	case "console":
		if cfg.ConsolePath == "" {
			exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
			return exp, nil, err
		}
		f, err := os.OpenFile(cfg.ConsolePath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("console exporter: %w", err)
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(f))
		if err != nil {
			_ = f.Close()
			return nil, nil, err
		}
		return exp, f, nil
	case "otlp":
		switch p := cmp.Or(cfg.OTLPProtocol, "http/protobuf"); p {
		case "http/protobuf":
			exp, err := otlptracehttp.New(ctx)
			return exp, nil, err
		case "grpc":
			exp, err := otlptracegrpc.New(ctx)
			return exp, nil, err
		default:
			return nil, nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", p)
		}
	default:
		return nil, nil, errors.New("OTEL_TRACES_EXPORTER " + name + ": want none, otlp or console")
	}
}

func serviceName(res *resource.Resource) string {
	v, _ := res.Set().Value("service.name")
	return v.AsString()
}

// rateLimited logs an export error at once, then at most one every interval with
// the count of those it left out.
func rateLimited(log *zap.Logger, every time.Duration) func(error) {
	var mu sync.Mutex
	var last time.Time
	skipped := 0
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); last.IsZero() || now.Sub(last) >= every {
			log.Warn("tracing export failed; spans dropped", zap.Error(err), zap.Int("errors_not_logged", skipped))
			last, skipped = now, 0
			return
		}
		skipped++
	}
}

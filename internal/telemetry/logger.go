package telemetry

import (
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger builds the process's one logger on stderr, at level (debug, info, warn,
// error). format "json" writes one JSON object per line with snake_case keys (ts in
// ISO 8601, level, msg, caller, plus the fields); "console" is the human-readable
// form for a terminal. Every line carries version. The logger itself samples
// nothing; the router thins a busy queue's success lines (jobs.LineSampling).
//
// Lines are buffered and written at least every logFlushInterval, and at once for
// DPanic and above; closeLog writes what is left and stops the flusher. Call it
// before the process exits.
func NewLogger(level, format, version string) (log *zap.Logger, closeLog func(), err error) {
	return NewLoggerTo(os.Stderr, level, format, version)
}

// NewLoggerTo is NewLogger writing to out: an embedded worker's own log output.
func NewLoggerTo(out io.Writer, level, format, version string) (log *zap.Logger, closeLog func(), err error) {
	return newBufferedLogger(level, format, version, zapcore.AddSync(out))
}

// logFlushInterval bounds how long a line waits in the buffer. A write per line
// (one syscall each) was 6 % of the worker's CPU at a few thousand messages a second.
const logFlushInterval = 200 * time.Millisecond

func newBufferedLogger(level, format, version string, out zapcore.WriteSyncer) (*zap.Logger, func(), error) {
	buffered := &zapcore.BufferedWriteSyncer{WS: out, FlushInterval: logFlushInterval}
	log, err := newLogger(level, format, version, buffered)
	if err != nil {
		return nil, nil, err
	}
	return log, func() { _ = buffered.Stop() }, nil
}

func newLogger(level, format, version string, out zapcore.WriteSyncer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	var enc zapcore.Encoder
	switch format {
	case "json", "":
		ec := zap.NewProductionEncoderConfig()
		ec.TimeKey = "ts"
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		ec.EncodeDuration = zapcore.SecondsDurationEncoder // seconds, like the metrics
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("log format %q: want json or console", format)
	}
	core := zapcore.NewCore(enc, out, zap.NewAtomicLevelAt(lvl))
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zapcore.ErrorLevel), zap.ErrorOutput(out)).
		With(zap.String("version", version)), nil
}

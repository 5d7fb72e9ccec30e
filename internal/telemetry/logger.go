package telemetry

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger builds the process's one logger on stderr, at level (debug, info, warn,
// error). format "json" writes one JSON object per line with snake_case keys (ts in
// ISO 8601, level, msg, caller, plus the fields); "console" is the human-readable
// form for a terminal. Every line carries version. There is no sampling: every
// handled message gets its line.
func NewLogger(level, format, version string) (*zap.Logger, error) {
	return newLogger(level, format, version, zapcore.Lock(os.Stderr))
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

package taskbridge

import (
	"context"
	"io"

	"github.com/taskbridge/taskbridge/internal/cli"
)

// Options are the settings of one embedded worker (Run).
type Options struct {
	// Env holds KEY=VALUE settings read before the process environment: the worker's
	// WORKER_* variables and the standard ones it reads (OTEL_*, ECS_AGENT_URI).
	// Two workers in one process differ here (WORKER_STACK, WORKER_TOPOLOGY,
	// WORKER_METRICS_ADDR, ...).
	Env []string
	// Logs receives the worker's log lines; nil is standard error.
	Logs io.Writer
}

// Run runs the worker (what `worker run` does) with r's jobs until ctx ends, then
// stops it as a SIGTERM would and returns: nil after a clean stop, else the error.
// It never exits the process; Main is the command line over it.
//
// A run owns what it starts: its AWS clients, its metrics registry and server
// (WORKER_METRICS_ADDR; empty turns it off), its tracer provider. It sets no
// process-wide state and never changes the process environment, so several runs
// can share a process, each on its own stack. The AWS SDK's variables (AWS_REGION,
// AWS_ENDPOINT_URL, credentials) and the OTel SDK's own (OTEL_EXPORTER_OTLP_*,
// OTEL_SERVICE_NAME, ...) are read from the process environment.
func Run(ctx context.Context, r *Registry, opts Options) error {
	return cli.Run(ctx, r.cliJobs(cli.Jobs{Env: opts.Env, Logs: opts.Logs}))
}

package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/console"
	"github.com/taskbridge/taskbridge/internal/dlq"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/topology"
)

const consoleHelp = `A web console of the topology's stack (WORKER_TOPOLOGY, WORKER_STACK): queues and
state machines, executions and their timelines, dead letters. It reads AWS APIs only
(and the workers' /readyz with --metrics). Redrive and purge need --actions.
An address other than loopback needs WORKER_CONSOLE_TOKEN or WORKER_CONSOLE_BASIC_AUTH.`

// runConsole is `worker console`: serve the console until ctx ends.
func runConsole(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	// The variables are the flags' defaults; a wrong one is reported after --help.
	env, envErr := config.LoadFrom(registered.lookup())
	fs := newFlagSet(registered.program(), "console", stdout, stderr)
	addr := fs.String("addr", env.ConsoleAddr, "listen address, host:port (WORKER_CONSOLE_ADDR)")
	actions := fs.Bool("actions", env.ConsoleActions, "allow redrive and purge of dead letters (WORKER_CONSOLE_ACTIONS)")
	metrics := fs.String("metrics", strings.Join(env.ConsoleMetrics, ","), "workers' metrics addresses, host:port,... (WORKER_CONSOLE_METRICS)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError{fmt.Errorf("console takes no arguments, got %v", fs.Args())}
	}
	if envErr != nil {
		return fmt.Errorf("configuration:\n%w", envErr)
	}
	cfg := console.Config{
		Addr: *addr, Token: env.ConsoleToken, BasicAuth: env.ConsoleBasicAuth, Actions: *actions,
		CacheTTL: env.ConsoleCacheTTL,
	}
	for m := range strings.SplitSeq(*metrics, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Metrics = append(cfg.Metrics, m)
		}
	}
	if err := cfg.Validate(); err != nil {
		return UsageError{err}
	}
	s, err := newSetup(ctx, registered)
	if err != nil {
		return err
	}
	log, closeLog, err := telemetry.NewLogger(s.cfg.LogLevel, s.cfg.LogFormat, Version)
	if err != nil {
		return err
	}
	defer closeLog()
	resolved, err := s.bootstrapper().Resolve(ctx)
	if err != nil {
		return err
	}
	stack := console.Stack{Name: s.cfg.Stack, DataBucket: s.cfg.DataBucket}
	for _, q := range s.topo.Queues {
		stack.Queues = append(stack.Queues, console.Queue{
			Name: q.Name, Kind: q.Kind(), Job: runs(q), DetailTypes: q.DetailTypes,
			URL: resolved.Queues[q.Name], DLQURL: resolved.DLQs[q.Name],
		})
	}
	for _, m := range s.topo.StateMachines {
		stack.StateMachines = append(stack.StateMachines, console.StateMachine{Name: m.Name, ARN: resolved.StateMachines[m.Name]})
	}
	srv, err := console.New(cfg, stack, console.Deps{
		SFN: s.clients.SFN, S3: s.clients.S3, DeadLetters: dlq.New(s.clients.SQS, s.clients.SFN),
	}, log)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

// runs is what a queue runs, in a word or two.
func runs(q topology.Queue) string {
	switch {
	case q.Job != "":
		return q.Job
	case q.Exec != nil:
		return strings.Join(q.Exec.Command, " ")
	case q.HTTP != nil:
		return q.HTTP.URL
	case q.StartExecution != nil:
		return "start " + q.StartExecution.StateMachine
	case q.S3Batch != nil:
		return "batch to Glue"
	}
	return ""
}

// Package cli is the worker's command line: run, bootstrap, start, validate, status,
// dlq, console, config, healthcheck. It wires the mechanisms (consumer, jobs, callback, batch, the job
// kinds) from the configuration and the topology; the public package hands it the
// registered Go jobs.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/registry"
)

// Version is set at build time with -ldflags "-X ...cli.Version=…".
var Version = "dev"

// Jobs is what a program registered: its Go jobs and what must run before they do.
type Jobs struct {
	Jobs []jobs.Job
	// OnStart runs once in `worker run`, after the stack is resolved and before any
	// message is polled; an error stops the worker.
	OnStart []func(ctx context.Context, env registry.Env) error
}

// names lists the registered jobs and the built-in ones a registry did not replace.
func (j Jobs) withBuiltins() Jobs {
	if !slices.ContainsFunc(j.Jobs, func(job jobs.Job) bool { return job.Name == jobs.FinisherJob }) {
		j.Jobs = append(slices.Clip(j.Jobs), jobs.Finisher())
	}
	return j
}

func (j Jobs) names() []string {
	names := make([]string, 0, len(j.Jobs))
	for _, job := range j.Jobs {
		names = append(names, job.Name)
	}
	slices.Sort(names)
	return names
}

// UsageError is a wrong command line: exit code 2.
type UsageError struct{ error }

func (u UsageError) Unwrap() error { return u.error }

// ExitCode is the process exit code for err.
func ExitCode(err error) int {
	var u UsageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp): // help was asked for, and printed
		return 0
	case errors.As(err, &u):
		return 2
	default:
		return 1
	}
}

const usage = `usage: %[1]s [command] [flags]

commands:
  run          run the consumers until SIGTERM (default)
  bootstrap    create the stack on AWS_ENDPOINT_URL; --output json|text
  start        start an execution; --state-machine NAME (default cookies), --input JSON | --count N | --names a,b, --wait
  validate     check the topology (WORKER_TOPOLOGY) and its ASL files; reports every problem
  status       per queue its depth, in flight and DLQ depth; running executions; exit 1 if a DLQ is not empty
  dlq          dead letters: list, show, redrive, purge (%[1]s dlq --help)
  console      web console of the stack: queues, executions, dead letters; --addr, --actions, --metrics
  config       print every WORKER_* variable with its default and meaning
  healthcheck  exit 0 when the worker's /healthz answers, 1 otherwise
  version      print the version (also --version)
  help         print this text (also --help, -h)

%[1]s COMMAND --help prints a command's flags.
`

// Main runs one command line (args without the program name).
func Main(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	registered = registered.withBuiltins()
	if len(args) > 0 && slices.Contains(helpFlags, args[0]) {
		args = append([]string{"help"}, args[1:]...)
	} else if len(args) > 0 && slices.Contains(versionFlags, args[0]) {
		args = append([]string{"version"}, args[1:]...)
	}
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if askedForHelp(args) && printCommandHelp(stdout, cmd) {
		return flag.ErrHelp
	}
	switch cmd {
	case "run":
		return runWorker(ctx, registered, args)
	case "bootstrap":
		return runBootstrap(ctx, registered, args, stdout, stderr)
	case "start":
		return runStart(ctx, registered, args, stdout, stderr)
	case "validate":
		return runValidate(registered, args, stdout)
	case "status":
		return runStatus(ctx, registered, args, stdout, stderr)
	case "dlq":
		return runDLQ(ctx, registered, args, stdout, stderr)
	case "console":
		return runConsole(ctx, registered, args, stdout, stderr)
	case "config":
		return runConfig(stdout)
	case "healthcheck":
		return runHealthcheck(ctx)
	case "version":
		_, err := fmt.Fprintln(stdout, Version)
		return err
	case "help", "-h", "--help":
		_, err := fmt.Fprintf(stdout, usage, Program)
		return err
	default:
		fmt.Fprintf(stderr, usage, Program)
		return UsageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

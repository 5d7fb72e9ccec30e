// Package cli is the worker's command line, its commands listed once in
// commandTable (commands.go). It wires the mechanisms (consumer, jobs, callback, batch, the job
// kinds) from the configuration and the topology; the public package hands it the
// registered Go jobs.
package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/registry"
)

// Version is set at build time with -ldflags "-X ...cli.Version=…".
var Version = "dev"

// Jobs is what a program hands the command line: its Go jobs, what must run
// before they do, and the settings of this invocation (its name, environment and
// log output), so that two workers of one process differ in nothing global.
type Jobs struct {
	Jobs []jobs.Job
	// OnStart runs once in `worker run`, after the stack is resolved and before any
	// message is polled; an error stops the worker.
	OnStart []func(ctx context.Context, env registry.Env) error
	// Program names the program in usage texts and errors (a team's `greeter`);
	// "" is "worker".
	Program string
	// Env holds KEY=VALUE settings read before the process environment
	// (config.Layered); the process environment is never changed.
	Env []string
	// Logs receives `run`'s log lines; nil is standard error.
	Logs io.Writer
}

// program is the name usage texts and errors give the program.
func (j Jobs) program() string { return cmp.Or(j.Program, "worker") }

// lookup reads the invocation's configuration: Env over the process environment.
func (j Jobs) lookup() config.Lookup { return config.Layered(j.Env) }

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

// Main runs one command line (args without the program name); registered names
// the program and gives its settings.
func Main(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	cmd, args := commandOf(args)
	if askedForHelp(args) && printCommandHelp(stdout, registered.program(), cmd) {
		return flag.ErrHelp
	}
	c, ok := lookupCommand(cmd)
	if !ok {
		_ = writeUsage(stderr, registered.program())
		return UsageError{fmt.Errorf("unknown command %q", cmd)}
	}
	return c.run(ctx, registered.withBuiltins(), args, stdout, stderr)
}

// commandOf splits a command line into its command, run when it names none, and
// the command's arguments. A command's alias in first place (--help, --version)
// names it.
func commandOf(args []string) (cmd string, rest []string) {
	if len(args) == 0 {
		return "run", args
	}
	if args[0] != "" && args[0][0] != '-' {
		return args[0], args[1:]
	}
	for _, c := range commandTable() {
		if slices.Contains(c.Aliases, args[0]) {
			return c.Name, args[1:]
		}
	}
	return "run", args
}

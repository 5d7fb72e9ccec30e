package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Command is one command of the command line. Its table (commandTable) is the one
// list of commands: Main dispatches from it, `help` prints it, `COMMAND --help`
// reads its help text, and tests hold the root package's doc comment and the
// guide's table of commands to it.
type Command struct {
	// Name is the command as typed: `worker NAME`.
	Name string
	// Synopsis is its line in `worker help`; PROGRAM stands for the program's name.
	Synopsis string
	// Help is what `NAME --help` prints. A command with flags prints it above them;
	// one without prints "usage: PROGRAM NAME ARGS" and the rest, where ARGS is the
	// text's first line when it has more than one. "" for status and dlq, whose
	// usage texts (statusUsage, dlqUsage) describe their subcommands and flags at
	// length.
	Help string
	// Aliases name the command in first place on a command line (--version).
	Aliases []string
	// Flags is true for a command that parses flags: it prints its own --help,
	// with them.
	Flags bool
	run   command
}

// command runs one command with the rest of its command line.
type command func(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error

// Commands lists the commands in the order `worker help` prints them.
func Commands() []Command { return commandTable() }

// commandTable is built by a function, not held in a variable: `help` prints the
// table, and a variable whose entries read it would be an initialization cycle.
func commandTable() []Command { //nolint:funlen // a data table, one entry per command: splitting it would scatter the list
	return []Command{
		{
			Name:     "run",
			Synopsis: "run the consumers until SIGTERM (default)",
			Help:     "run the consumers until SIGTERM; configured by WORKER_* variables (see `PROGRAM config`)",
			run: func(ctx context.Context, registered Jobs, args []string, _, _ io.Writer) error {
				return runWorker(ctx, registered, args)
			},
		},
		{
			Name:     "bootstrap",
			Synopsis: "create the stack on AWS_ENDPOINT_URL; --output json|text",
			Help:     "create the stack on AWS_ENDPOINT_URL (or AWS): bus, queues and DLQs, rules, buckets, state machines; running it again updates what changed",
			Flags:    true,
			run:      runBootstrap,
		},
		{
			Name:     "start",
			Synopsis: "start an execution; --state-machine NAME (default cookies), --input JSON | --count N | --names a,b, --wait",
			Help:     "start an execution of a state machine of the topology",
			Flags:    true,
			run:      runStart,
		},
		{
			Name:     "validate",
			Synopsis: "check the topology (WORKER_TOPOLOGY) and its ASL files; reports every problem; --stack: its queues' size too",
			Help:     "check a topology (the file given after the flags; default WORKER_TOPOLOGY, else the embedded one) and its ASL files; reports every problem.\nWith --stack, also read the stack's queues (WORKER_STACK on AWS_ENDPOINT_URL or AWS) and warn about each one whose MaximumMessageSize is under SQS's 1 MiB",
			Flags:    true,
			run:      runValidate,
		},
		{
			Name:     "status",
			Synopsis: "per queue its depth, in flight and DLQ depth; running executions; exit 1 if a DLQ is not empty",
			Flags:    true,
			run:      runStatus,
		},
		{
			Name:     "dlq",
			Synopsis: "dead letters: list, show, redrive, purge (PROGRAM dlq --help)",
			Flags:    true,
			run:      runDLQ,
		},
		{
			Name:     "console",
			Synopsis: "web console of the stack: queues, executions, dead letters; --addr, --actions, --metrics",
			Help:     consoleHelp,
			Flags:    true,
			run:      runConsole,
		},
		{
			Name:     "config",
			Synopsis: "print every WORKER_* variable with its default and meaning",
			Help:     "print every WORKER_* variable with its default and meaning",
			run: func(_ context.Context, _ Jobs, _ []string, stdout, _ io.Writer) error {
				return runConfig(stdout)
			},
		},
		{
			Name:     "healthcheck",
			Synopsis: "exit 0 when the worker's /healthz answers, 1 otherwise",
			Help:     "exit 0 when the worker's /healthz (WORKER_METRICS_ADDR) answers, 1 otherwise",
			run: func(ctx context.Context, registered Jobs, _ []string, _, _ io.Writer) error {
				return runHealthcheck(ctx, registered)
			},
		},
		{
			Name:     "version",
			Synopsis: "print the version (also --version)",
			Aliases:  []string{"-version", "--version"},
			Help:     "print the version",
			run: func(_ context.Context, _ Jobs, _ []string, stdout, _ io.Writer) error {
				_, err := fmt.Fprintln(stdout, Version)
				return err
			},
		},
		{
			Name:     "help",
			Synopsis: "print the commands (also --help, -h)",
			Aliases:  helpFlags,
			Help:     "print the commands",
			run: func(_ context.Context, registered Jobs, _ []string, stdout, _ io.Writer) error {
				return writeUsage(stdout, registered.program())
			},
		},
	}
}

// lookupCommand is the command named name.
func lookupCommand(name string) (Command, bool) {
	for _, c := range commandTable() {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

// helpOf is a command's help text with the program's name in it.
func helpOf(program, name string) string {
	c, _ := lookupCommand(name)
	return strings.ReplaceAll(c.Help, "PROGRAM", program)
}

// writeUsage writes `help`'s text: the commands with their synopses.
func writeUsage(w io.Writer, program string) error {
	table := commandTable()
	width := 0
	for _, c := range table {
		width = max(width, len(c.Name))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s [command] [flags]\n\ncommands:\n", program)
	for _, c := range table {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, c.Name, strings.ReplaceAll(c.Synopsis, "PROGRAM", program))
	}
	fmt.Fprintf(&b, "\n%s COMMAND --help prints a command's flags.\n", program)
	_, err := io.WriteString(w, b.String())
	return err
}

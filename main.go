package taskbridge

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/taskbridge/taskbridge/internal/cli"
)

// Main runs the worker's command line with r's jobs and exits; it does not return.
// A program that serves beside its own server calls Run instead. The commands
// (internal/cli's table; TestMainDocListsTheCommands holds this list to it):
//
//	worker run          run the consumers until SIGTERM (default)
//	worker bootstrap    create the stack on AWS_ENDPOINT_URL; --output json|text
//	worker start        start an execution; --state-machine NAME (default cookies), --input JSON | --count N | --names a,b, --wait
//	worker validate     check the topology (WORKER_TOPOLOGY) and its ASL files; reports every problem; --stack: its queues' size too
//	worker status       per queue its depth, in flight and DLQ depth; running executions; exit 1 if a DLQ is not empty
//	worker dlq          dead letters: list, show, redrive, purge (worker dlq --help)
//	worker console      web console of the stack: queues, executions, dead letters; --addr, --actions, --metrics
//	worker config       print every WORKER_* variable with its default and meaning
//	worker healthcheck  exit 0 when the worker's /healthz answers, 1 otherwise
//	worker version      print the version (also --version)
//	worker help         print the commands (also --help, -h)
//
// Configuration comes from the environment (`worker config` lists it);
// WORKER_TOPOLOGY names the topology file.
func Main(r *Registry) {
	// The first SIGTERM or SIGINT stops `run` within its shutdown timeout; a second
	// one stops it at once.
	ctx, stop := cli.NotifyStop(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	program := filepath.Base(os.Args[0])
	err := cli.Main(ctx, r.cliJobs(cli.Jobs{Program: program}), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, program+":", err)
	}
	os.Exit(cli.ExitCode(err))
}

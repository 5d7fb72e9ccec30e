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
//
//	worker [run]        serve the topology's queues until SIGTERM (the default)
//	worker bootstrap    create the topology's stack on AWS_ENDPOINT_URL (idempotent)
//	worker start        start an execution of one of its state machines
//	worker validate     report every problem of the topology and its ASL files
//	worker status       queue and DLQ depths, running executions; exit 1 on dead letters
//	worker dlq          list, show, redrive and purge dead letters
//	worker config       print every WORKER_* variable, its default and meaning
//	worker healthcheck  exit 0 when /healthz answers, 1 otherwise
//
// Configuration comes from the environment (`worker config` lists it);
// WORKER_TOPOLOGY names the topology file.
func Main(r *Registry) {
	// The first SIGTERM or SIGINT stops `run` within its shutdown timeout; a second
	// one stops it at once.
	ctx, stop := cli.NotifyStop(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	cli.Program = filepath.Base(os.Args[0])
	err := cli.Main(ctx, r.cliJobs(), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, cli.Program+":", err)
	}
	os.Exit(cli.ExitCode(err))
}

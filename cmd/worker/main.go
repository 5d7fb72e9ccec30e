// Command worker is the taskbridge worker: it runs the callback jobs and the S3 event
// batcher of event-driven Step Functions workflows, and has the subcommands to set up
// and drive a local stack.
//
//	worker [run]        run the consumers until SIGTERM (the default)
//	worker bootstrap    create the stack on AWS_ENDPOINT_URL (idempotent)
//	worker start        start a cookies execution
//	worker config       print every WORKER_* variable, its default and meaning
//	worker healthcheck  exit 0 when /healthz answers, 1 otherwise
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "worker:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError is a wrong command line: exit code 2.
type usageError struct{ error }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

const usage = `usage: worker [command] [flags]

commands:
  run          run the consumers until SIGTERM (default)
  bootstrap    create the stack on AWS_ENDPOINT_URL; --output json|text
  start        start a cookies execution; --count N | --names a,b | --input JSON, --wait
  config       print every WORKER_* variable with its default and meaning
  healthcheck  exit 0 when the worker's /healthz answers, 1 otherwise
  version      print the version
`

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runWorker(ctx, args, stderr)
	case "bootstrap":
		return runBootstrap(ctx, args, stdout, stderr)
	case "start":
		return runStart(ctx, args, stdout, stderr)
	case "config":
		return runConfig(stdout)
	case "healthcheck":
		return runHealthcheck(ctx)
	case "version":
		_, err := fmt.Fprintln(stdout, version)
		return err
	case "help", "-h", "--help":
		_, err := fmt.Fprint(stdout, usage)
		return err
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

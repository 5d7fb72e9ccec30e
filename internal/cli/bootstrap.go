package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/topology"
)

func runBootstrap(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(registered.program(), "bootstrap", stdout, stderr)
	output := fs.String("output", "text", "text or json")
	glueOptional := fs.Bool("glue-optional", false, "go on without the Glue job when the endpoint has no Glue (LocalStack community)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		return UsageError{fmt.Errorf("--output must be text or json, got %q", *output)}
	}
	s, err := newSetup(ctx, registered)
	if err != nil {
		return err
	}
	stack := stackOf(s.cfg)
	stack.GlueOptional = *glueOptional
	out, err := bootstrap.New(s.topo, stack, s.clients, s.aws.Region).Apply(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if out.GlueWarning != "" {
		fmt.Fprintln(stderr, "warning: no Glue job, the batcher cannot start runs:", out.GlueWarning)
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "event bus\t%s\n", out.EventBus)
	fmt.Fprintf(tw, "data bucket\t%s\n", out.DataBucket)
	fmt.Fprintf(tw, "landing bucket\t%s\n", out.LandingBucket)
	fmt.Fprintf(tw, "glue job\t%s\n", out.GlueJob)
	for name, arn := range out.StateMachines {
		fmt.Fprintf(tw, "state machine %s\t%s\n", name, arn)
	}
	for _, name := range out.QueueNames() {
		fmt.Fprintf(tw, "queue %s\t%s\n", name, out.Queues[name])
		fmt.Fprintf(tw, "dlq %s\t%s\n", name, out.DLQs[name])
	}
	if out.EventsDLQ != "" {
		fmt.Fprintf(tw, "events dlq (%s)\t%s\n", topology.EventsDLQName, out.EventsDLQ)
	}
	return tw.Flush()
}

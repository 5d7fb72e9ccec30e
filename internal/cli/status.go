package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/taskbridge/taskbridge/internal/dlq"
	"github.com/taskbridge/taskbridge/internal/topology"
)

const statusUsage = `usage: worker status [--output text|json]

The state of the topology's stack at a glance: per queue its depth (visible messages),
in flight (received, not yet deleted), delayed, and its DLQ's depth (SQS's approximate
counts, GetQueueAttributes); per state machine its RUNNING executions (ListExecutions,
counted up to 10000); the depth of the stack's events DLQ (what EventBridge could
not deliver to a queue; 'worker dlq list' shows it as queue eventbridge); the executions a worker failed that 'worker dlq redrive
--executions' can redrive (read from the first 100 dead letters of each DLQ, which stay
visible). The age of a queue's oldest message is not shown: SQS gives it
only as the CloudWatch metric ApproximateAgeOfOldestMessage, and reading a message to
find out would take it from the workers (see the worker_event_age_seconds metric, and
'worker dlq list' for the dead letters' ages).

Exit status: 0, or 1 when any DLQ (the events DLQ too) holds a message, or the
topology wants an events DLQ that the stack lacks (for scripts and alarms).
`

// maxRunningCounted bounds the ListExecutions pages status reads per state machine.
const maxRunningCounted = 10000

type queueStatus struct {
	Queue    string `json:"queue"`
	Visible  int    `json:"visible"`
	InFlight int    `json:"inFlight"`
	Delayed  int    `json:"delayed"`
	DLQ      int    `json:"dlq"`
}

// eventsStatus is the stack's events DLQ: what EventBridge could not deliver.
type eventsStatus struct {
	URL     string `json:"url,omitempty"`
	Depth   int    `json:"depth"`
	Missing string `json:"missing,omitempty"` // why there is none
}

type machineStatus struct {
	StateMachine string `json:"stateMachine"`
	Running      int    `json:"running"`
	AtLeast      bool   `json:"atLeast,omitempty"` // counting stopped at maxRunningCounted
}

func runStatus(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(fs.Output(), statusUsage) }
	output := fs.String("output", "text", "text or json")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError{fmt.Errorf("status takes no arguments, got %v", fs.Args())}
	}
	if *output != "text" && *output != "json" {
		return UsageError{fmt.Errorf("--output must be text or json, got %q", *output)}
	}
	s, err := newSetup(ctx, registered)
	if err != nil {
		return err
	}
	resolved, err := s.bootstrapper().Resolve(ctx)
	if err != nil {
		if s.topo.Path == "" { // a fallback nobody chose: say it
			return fmt.Errorf("%w\n(WORKER_TOPOLOGY is not set: the embedded cookies topology was used)", err)
		}
		return err
	}
	in := dlq.New(s.clients.SQS, s.clients.SFN)
	queues := []queueStatus{}
	var dead []string
	for _, name := range resolved.QueueNames() {
		a, err := in.Attributes(ctx, resolved.Queues[name])
		if err != nil {
			return err
		}
		d, err := in.Attributes(ctx, resolved.DLQs[name])
		if err != nil {
			return err
		}
		// A DLQ message being read (dlq list) is in flight, not gone.
		qs := queueStatus{Queue: name, Visible: a.Visible, InFlight: a.InFlight, Delayed: a.Delayed, DLQ: d.Visible + d.InFlight + d.Delayed}
		if qs.DLQ > 0 {
			dead = append(dead, fmt.Sprintf("%s (%d)", name, qs.DLQ))
		}
		queues = append(queues, qs)
	}
	events := eventsStatus{URL: resolved.EventsDLQ}
	switch {
	case resolved.EventsDLQ != "":
		d, err := in.Attributes(ctx, resolved.EventsDLQ)
		if err != nil {
			return err
		}
		events.Depth = d.Visible + d.InFlight + d.Delayed
		if events.Depth > 0 {
			dead = append(dead, fmt.Sprintf("%s (%d)", topology.EventsDLQName, events.Depth))
		}
	case s.topo.DeadLetters():
		events.Missing = "the stack has no events DLQ: events EventBridge cannot deliver are dropped; run `worker bootstrap` (or terraform apply)"
	default:
		events.Missing = "off (the topology's eventDelivery.deadLetter is false)"
	}
	machines := []machineStatus{}
	for _, name := range slices.Sorted(maps.Keys(resolved.StateMachines)) {
		n, more, err := countRunning(ctx, s.clients.SFN, resolved.StateMachines[name])
		if err != nil {
			return err
		}
		machines = append(machines, machineStatus{StateMachine: name, Running: n, AtLeast: more})
	}
	redrivable, err := redrivableExecutions(ctx, in, resolved.Queues, resolved.DLQs, queues)
	if err != nil {
		return err
	}
	if *output == "json" {
		err = writeJSON(stdout, map[string]any{"queues": queues, "eventsDlq": events, "stateMachines": machines, "redrivableExecutions": redrivable})
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "queue\tvisible\tin flight\tdelayed\tdlq\t")
		for _, q := range queues {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", q.Queue, q.Visible, q.InFlight, q.Delayed, q.DLQ)
		}
		if events.URL != "" {
			fmt.Fprintf(tw, "%s (events)\t\t\t\t%d\t\n", topology.EventsDLQName, events.Depth)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if events.Missing != "" {
			fmt.Fprintf(stdout, "events DLQ: %s\n", events.Missing)
		}
		fmt.Fprintln(stdout)
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "state machine\trunning\t")
		for _, m := range machines {
			more := ""
			if m.AtLeast {
				more = "≥"
			}
			fmt.Fprintf(tw, "%s\t%s%d\t\n", m.StateMachine, more, m.Running)
		}
		err = tw.Flush()
		if err == nil && len(redrivable) > 0 {
			fmt.Fprintln(stdout, "\nredrivable executions (a worker failed them; worker dlq redrive --queue Q --executions):")
			for _, r := range redrivable {
				fmt.Fprintf(stdout, "  %s  %s  %s\n", r.Queue, r.ExecutionARN, r.Why)
			}
		}
	}
	if err != nil {
		return err
	}
	if len(dead) > 0 {
		return errors.New("dead letters in " + strings.Join(dead, ", ") + " (worker dlq list)")
	}
	if resolved.EventsDLQ == "" && s.topo.DeadLetters() {
		return errors.New(events.Missing)
	}
	return nil
}

// redrivableRead bounds the dead letters status reads per DLQ to find redrivable
// executions.
const redrivableRead = 100

type redrivableExecution struct {
	Queue        string `json:"queue"`
	ExecutionARN string `json:"executionArn"`
	Why          string `json:"why"`
}

// redrivableExecutions lists the executions that `dlq redrive --executions` would
// redrive, from the first redrivableRead dead letters of each DLQ that has any (a
// dry run: it reads, and leaves every message visible).
func redrivableExecutions(ctx context.Context, in *dlq.Inspector, urls, dlqs map[string]string, counts []queueStatus) ([]redrivableExecution, error) {
	out := []redrivableExecution{}
	for _, c := range counts {
		name := c.Queue
		if c.DLQ == 0 || dlqs[name] == "" {
			continue
		}
		sum, err := in.RedriveExecutions(ctx, dlq.Queue{Name: name, URL: urls[name], DLQURL: dlqs[name]}, dlq.RedriveOptions{DryRun: true, Limit: redrivableRead, Rate: 1000})
		if err != nil {
			return nil, err
		}
		for _, o := range sum.Messages {
			if o.Action == dlq.ActionWouldRedrive && o.Why != dlq.WhyCountedAbove {
				out = append(out, redrivableExecution{Queue: name, ExecutionARN: o.ExecutionARN, Why: o.Why})
			}
		}
	}
	return out, nil
}

// countRunning counts the RUNNING executions of a state machine, up to
// maxRunningCounted (more reports true).
func countRunning(ctx context.Context, client *sfn.Client, arn string) (n int, more bool, err error) {
	p := sfn.NewListExecutionsPaginator(client, &sfn.ListExecutionsInput{
		StateMachineArn: aws.String(arn), StatusFilter: sfntypes.ExecutionStatusRunning, MaxResults: 1000,
	})
	for p.HasMorePages() {
		if n >= maxRunningCounted {
			return n, true, nil
		}
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, false, fmt.Errorf("list running executions of %s: %w", arn, err)
		}
		n += len(page.Executions)
	}
	return n, false, nil
}

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

	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/dlq"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/topology"
)

const statusUsage = `usage: worker status [--output text|json]

The state of the topology's stack at a glance: per queue its depth (visible messages),
in flight (received, not yet deleted), delayed, and its DLQ's depth (SQS's approximate
counts, GetQueueAttributes); per state machine its RUNNING executions (ListExecutions,
counted up to 10000); the depth of the stack's events DLQ (what EventBridge could
not deliver to a queue; 'worker dlq list' shows it as queue eventbridge); the executions a worker failed that 'worker dlq redrive
--executions' can redrive (read from the first 100 dead letters of each DLQ, which stay
visible); and a warning for every queue, DLQ or the events DLQ whose
MaximumMessageSize is under SQS's 1 MiB (events larger than it cannot reach it), with
how to raise it. The age of a queue's oldest message is not shown: SQS gives it
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
	// MaxMessageBytes and DLQMaxMessageBytes are the queue's and its DLQ's
	// MaximumMessageSize.
	MaxMessageBytes    int64 `json:"maxMessageBytes"`
	DLQMaxMessageBytes int64 `json:"dlqMaxMessageBytes"`
}

// eventsStatus is the stack's events DLQ: what EventBridge could not deliver.
type eventsStatus struct {
	URL             string `json:"url,omitempty"`
	Depth           int    `json:"depth"`
	MaxMessageBytes int64  `json:"maxMessageBytes,omitempty"`
	Missing         string `json:"missing,omitempty"` // why there is none
}

type machineStatus struct {
	StateMachine string `json:"stateMachine"`
	Running      int    `json:"running"`
	AtLeast      bool   `json:"atLeast,omitempty"` // counting stopped at maxRunningCounted
}

// statusReport is what `worker status` shows; its JSON keys in alphabetical order,
// as the output has always had them.
type statusReport struct {
	EventsDLQ     eventsStatus          `json:"eventsDlq"`
	Queues        []queueStatus         `json:"queues"`
	Redrivable    []redrivableExecution `json:"redrivableExecutions"`
	StateMachines []machineStatus       `json:"stateMachines"`
	// Warnings say what is wrong without being an alarm: a queue under SQS's size.
	Warnings []string `json:"warnings"`
}

func runStatus(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	output, err := parseStatus(registered.program(), args, stdout, stderr)
	if err != nil {
		return err
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
	r, err := readStatus(ctx, s, resolved)
	if err != nil {
		return err
	}
	if output == "json" {
		err = writeJSON(stdout, r)
	} else {
		err = r.print(stdout)
	}
	if err != nil {
		return err
	}
	return r.alarm()
}

// parseStatus reads the status command line: its --output.
func parseStatus(program string, args []string, stdout, stderr io.Writer) (output string, err error) {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(fs.Output(), program, statusUsage) }
	fs.StringVar(&output, "output", "text", "text or json")
	if err := parseFlags(fs, args, stdout); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", UsageError{fmt.Errorf("status takes no arguments, got %v", fs.Args())}
	}
	if output != "text" && output != "json" {
		return "", UsageError{fmt.Errorf("--output must be text or json, got %q", output)}
	}
	return output, nil
}

// readStatus reads every count the report shows.
func readStatus(ctx context.Context, s setup, resolved bootstrap.Output) (statusReport, error) {
	in := dlq.New(s.clients.SQS, s.clients.SFN)
	var r statusReport
	var err error
	if r.Queues, err = queueStatuses(ctx, in, resolved); err != nil {
		return statusReport{}, err
	}
	if r.EventsDLQ, err = eventsDLQStatus(ctx, in, resolved.EventsDLQ, s.topo.DeadLetters()); err != nil {
		return statusReport{}, err
	}
	if r.StateMachines, err = machineStatuses(ctx, s.clients.SFN, resolved.StateMachines); err != nil {
		return statusReport{}, err
	}
	if r.Redrivable, err = redrivableExecutions(ctx, in, resolved.Queues, resolved.DLQs, r.Queues); err != nil {
		return statusReport{}, err
	}
	r.Warnings = r.sizeWarnings(resolved)
	return r, nil
}

// sizeWarnings warns about each queue of the report (each queue, its DLQ, the events
// DLQ) whose size, read with its counts, is under SQS's limit.
func (r statusReport) sizeWarnings(resolved bootstrap.Output) []string {
	warnings := []string{}
	warn := func(url string, size int64) {
		if w := telemetry.SmallQueue(url, size); w != "" {
			warnings = append(warnings, w)
		}
	}
	for _, q := range r.Queues {
		warn(resolved.Queues[q.Queue], q.MaxMessageBytes)
		warn(resolved.DLQs[q.Queue], q.DLQMaxMessageBytes)
	}
	if r.EventsDLQ.URL != "" {
		warn(r.EventsDLQ.URL, r.EventsDLQ.MaxMessageBytes)
	}
	return warnings
}

// queueStatuses reads each topology queue's counts and its DLQ's depth.
func queueStatuses(ctx context.Context, in *dlq.Inspector, resolved bootstrap.Output) ([]queueStatus, error) {
	queues := []queueStatus{}
	for _, name := range resolved.QueueNames() {
		a, err := in.Attributes(ctx, resolved.Queues[name])
		if err != nil {
			return nil, err
		}
		d, err := in.Attributes(ctx, resolved.DLQs[name])
		if err != nil {
			return nil, err
		}
		// A DLQ message being read (dlq list) is in flight, not gone.
		queues = append(queues, queueStatus{Queue: name, Visible: a.Visible, InFlight: a.InFlight, Delayed: a.Delayed, DLQ: d.Visible + d.InFlight + d.Delayed,
			MaxMessageBytes: a.MaxMessageBytes, DLQMaxMessageBytes: d.MaxMessageBytes})
	}
	return queues, nil
}

// eventsDLQStatus reads the depth of the events DLQ at url, or says why there is
// none: the topology turned it off, or wants one the stack lacks.
func eventsDLQStatus(ctx context.Context, in *dlq.Inspector, url string, wanted bool) (eventsStatus, error) {
	switch {
	case url != "":
		d, err := in.Attributes(ctx, url)
		if err != nil {
			return eventsStatus{}, err
		}
		return eventsStatus{URL: url, Depth: d.Visible + d.InFlight + d.Delayed, MaxMessageBytes: d.MaxMessageBytes}, nil
	case wanted:
		return eventsStatus{Missing: eventsDLQMissing}, nil
	default:
		return eventsStatus{Missing: "off (the topology's eventDelivery.deadLetter is false)"}, nil
	}
}

// eventsDLQMissing is the status of a stack without the events DLQ its topology
// wants: an alarm, not a setting.
const eventsDLQMissing = "the stack has no events DLQ: events EventBridge cannot deliver are dropped; run `worker bootstrap` (or terraform apply)"

// machineStatuses counts the running executions of each state machine, by name.
func machineStatuses(ctx context.Context, client *sfn.Client, arns map[string]string) ([]machineStatus, error) {
	machines := []machineStatus{}
	for _, name := range slices.Sorted(maps.Keys(arns)) {
		n, more, err := countRunning(ctx, client, arns[name])
		if err != nil {
			return nil, err
		}
		machines = append(machines, machineStatus{StateMachine: name, Running: n, AtLeast: more})
	}
	return machines, nil
}

// print writes the report as tables.
func (r statusReport) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "queue\tvisible\tin flight\tdelayed\tdlq\t")
	for _, q := range r.Queues {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", q.Queue, q.Visible, q.InFlight, q.Delayed, q.DLQ)
	}
	if r.EventsDLQ.URL != "" {
		fmt.Fprintf(tw, "%s (events)\t\t\t\t%d\t\n", topology.EventsDLQName, r.EventsDLQ.Depth)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.EventsDLQ.Missing != "" {
		fmt.Fprintf(w, "events DLQ: %s\n", r.EventsDLQ.Missing)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "state machine\trunning\t")
	for _, m := range r.StateMachines {
		more := ""
		if m.AtLeast {
			more = "≥"
		}
		fmt.Fprintf(tw, "%s\t%s%d\t\n", m.StateMachine, more, m.Running)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, warning := range r.Warnings {
		fmt.Fprintln(w, "\nwarning:", warning)
	}
	if len(r.Redrivable) > 0 {
		fmt.Fprintln(w, "\nredrivable executions (a worker failed them; worker dlq redrive --queue Q --executions):")
		for _, e := range r.Redrivable {
			fmt.Fprintf(w, "  %s  %s  %s\n", e.Queue, e.ExecutionARN, e.Why)
		}
	}
	return nil
}

// alarm is status's exit: an error when a DLQ holds a message, or the stack lacks
// the events DLQ its topology wants.
func (r statusReport) alarm() error {
	var dead []string
	for _, q := range r.Queues {
		if q.DLQ > 0 {
			dead = append(dead, fmt.Sprintf("%s (%d)", q.Queue, q.DLQ))
		}
	}
	if r.EventsDLQ.Depth > 0 {
		dead = append(dead, fmt.Sprintf("%s (%d)", topology.EventsDLQName, r.EventsDLQ.Depth))
	}
	if len(dead) > 0 {
		return errors.New("dead letters in " + strings.Join(dead, ", ") + " (worker dlq list)")
	}
	if r.EventsDLQ.Missing == eventsDLQMissing {
		return errors.New(eventsDLQMissing)
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

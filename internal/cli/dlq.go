package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/taskbridge/taskbridge/internal/dlq"
	"github.com/taskbridge/taskbridge/internal/topology"
)

const dlqUsage = `usage: worker dlq <list|show|redrive|purge> [flags]

Dead letters of the topology's queues (WORKER_TOPOLOGY, WORKER_STACK), and of the
stack's events DLQ: --queue eventbridge names the events EventBridge could not
deliver to a rule's queue (its retry policy spent; topology "eventDelivery").

  list     [--queue Q] [--limit N] [--output text|json]
           per queue: the DLQ's depth and its messages grouped by reason (the worker's
           taskbridge-error attribute, or "maxReceiveCount exceeded" for a message SQS's
           redrive policy moved), oldest first, with receive counts, execution ARNs and
           when each was dead-lettered (SQS keeps no time of its own moves: for those,
           when the message was first sent)
  show     --queue Q [--limit N] [--output text|json]
           the messages themselves: body, reason, times; task tokens replaced by a hash
  redrive  --queue Q [--reason R] [--rate N] [--dry-run] [--to bus|queue] [--output text|json]
           moves the messages (those whose reason contains R) back to Q, at most N a
           second (default 1); each is deleted from the DLQ only after it is in Q, so an
           interrupted redrive duplicates a message, never loses one. A message whose
           task is closed is reported as skipped and stays in the DLQ: the check sends
           SendTaskHeartbeat with its token (it changes nothing of the task but its
           heartbeat timer), or, without a token, reads the status of the detail's
           executionArn. Ends with a summary of moved / skipped / left.
           --queue eventbridge: each event goes back on the bus of the rule that could
           not deliver it (PutEvents, with its own trace header: every rule of the
           bus sees it again), or, with --to queue or for an aws.* source (S3), into
           the queue of the rule that could not deliver it (the other rules' queues
           got it already); it is deleted from the events DLQ only once accepted.
  redrive  --queue Q --executions [--reason R] [--rate N] [--dry-run] [--output text|json]
           redrives the executions (Step Functions RedriveExecution: the execution goes
           on from its failed step) of the dead letters a worker failed: the message
           has the worker's reason, its task is closed, and its execution (the
           detail's executionArn) is FAILED, stopped less than 14 days ago and
           redrivable. Never an execution a person stopped (ABORTED), one that timed
           out, or one still running: those are skipped, saying why. Each execution
           once, at most N a second; its dead letters are then deleted (obsolete: the
           redriven step sends a new event). Ends with a summary. An endpoint without
           RedriveExecution (moto) is said so, and nothing is redriven.
  purge    --queue Q --yes
           deletes every message of Q's DLQ (SQS allows one purge a minute)

Reading a queue in SQS means receiving: list and show hide what they read only while
they read (a receive's visibility, 30 s at most, for a killed command), redrive for
about 15 s more than its pacing needs (--rate messages at a time; it waits out its
pacing before a receive, not while it holds messages), and each makes everything it
read visible again as soon as it is done, so list, show, redrive, status and
start --wait agree with each other. ApproximateReceiveCount of a message SQS moved
counts these reads too.
`

func runDLQ(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr, dlqUsage)
		return UsageError{errors.New("dlq needs a command: list, show, redrive or purge")}
	}
	if args[0] == "help" || askedForHelp(args[:1]) {
		printUsage(stdout, dlqUsage)
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("dlq "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(fs.Output(), dlqUsage) }
	queue := fs.String("queue", "", "topology queue whose DLQ to use")
	output := fs.String("output", "text", "text or json")
	var limit *int
	var reason *string
	var rate *float64
	var dryRun, yes, executions *bool
	var to *string
	switch cmd {
	case "list":
		limit = fs.Int("limit", 1000, "most messages read per DLQ")
	case "show":
		limit = fs.Int("limit", 10, "most messages shown")
	case "redrive":
		reason = fs.String("reason", "", "move only the messages whose reason contains this")
		rate = fs.Float64("rate", 1, "most messages moved per second")
		dryRun = fs.Bool("dry-run", false, "report what would move; move nothing")
		to = fs.String("to", "bus", "--queue "+topology.EventsDLQName+" only: put each event back on its rule's bus, or into the rule's queue")
		executions = fs.Bool("executions", false, "redrive the executions a worker failed (Step Functions RedriveExecution), not the messages")
	case "purge":
		yes = fs.Bool("yes", false, "really delete every message of the DLQ")
	default:
		printUsage(stderr, dlqUsage)
		return UsageError{fmt.Errorf("unknown dlq command %q", cmd)}
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return UsageError{fmt.Errorf("dlq %s takes no arguments, got %v", cmd, fs.Args())}
	case *output != "text" && *output != "json":
		return UsageError{fmt.Errorf("--output must be text or json, got %q", *output)}
	case *queue == "" && cmd != "list":
		return UsageError{fmt.Errorf("dlq %s needs --queue", cmd)}
	case limit != nil && *limit < 1:
		return UsageError{fmt.Errorf("--limit must be at least 1, got %d", *limit)}
	case rate != nil && (*rate <= 0 || *rate > 1000):
		return UsageError{fmt.Errorf("--rate must be in (0, 1000] messages a second, got %v", *rate)}
	case to != nil && *to != "bus" && *to != "queue":
		return UsageError{fmt.Errorf("--to must be bus or queue, got %q", *to)}
	case to != nil && *to == "queue" && *queue != topology.EventsDLQName:
		return UsageError{fmt.Errorf("--to queue is for --queue %s (a queue's own DLQ goes back to its queue anyway)", topology.EventsDLQName)}
	case yes != nil && !*yes:
		return UsageError{fmt.Errorf("dlq purge deletes every message of the DLQ of %s for good: add --yes to do it", *queue)}
	}
	s, err := newSetup(ctx, registered)
	if err != nil {
		return err
	}
	if *queue != "" && *queue != topology.EventsDLQName {
		if _, ok := s.topo.Queue(*queue); !ok {
			return UsageError{fmt.Errorf("--queue %q is not a queue of the topology (%s, or %s: the events DLQ)", *queue, queueNames(s), topology.EventsDLQName)}
		}
	}
	queues, err := resolveQueues(ctx, s, *queue)
	if err != nil {
		return err
	}
	if len(queues) == 0 {
		return fmt.Errorf("the stack has no events DLQ (%s): run `worker bootstrap` (or terraform apply) to make it, unless the topology's eventDelivery turns it off", topology.Names{Stack: s.cfg.Stack}.EventsDLQ())
	}
	in := dlq.New(s.clients.SQS, s.clients.SFN).WithEvents(s.clients.EventBridge, s.clients.SQS)
	switch cmd {
	case "list":
		return dlqList(ctx, in, queues, *limit, *output, stdout)
	case "show":
		return dlqShow(ctx, in, queues[0], *limit, *output, stdout)
	case "redrive":
		queues[0].ToTarget = *to == "queue"
		opt := dlq.RedriveOptions{Reason: *reason, Rate: *rate, DryRun: *dryRun}
		if *executions {
			return dlqRedriveExecutions(ctx, in, queues[0], opt, *output, stdout)
		}
		return dlqRedrive(ctx, in, queues[0], opt, *output, stdout)
	default:
		if err := in.Purge(ctx, queues[0]); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "purged the DLQ of %s\n", *queue)
		return err
	}
}

// resolveQueues finds the URLs of the named queue, or of every topology queue.
func resolveQueues(ctx context.Context, s setup, only string) ([]dlq.Queue, error) {
	out, err := s.bootstrapper().Resolve(ctx)
	if err != nil {
		return nil, err
	}
	var qs []dlq.Queue
	for _, name := range out.QueueNames() {
		if only == "" || name == only {
			qs = append(qs, dlq.Queue{Name: name, URL: out.Queues[name], DLQURL: out.DLQs[name]})
		}
	}
	if out.EventsDLQ != "" && (only == "" || only == topology.EventsDLQName) {
		qs = append(qs, dlq.Queue{Name: topology.EventsDLQName, DLQURL: out.EventsDLQ, Events: true})
	}
	return qs, nil
}

func queueNames(s setup) string {
	names := make([]string, 0, len(s.topo.Queues))
	for _, q := range s.topo.Queues {
		names = append(names, q.Name)
	}
	return strings.Join(names, ", ")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func dlqList(ctx context.Context, in *dlq.Inspector, queues []dlq.Queue, limit int, output string, w io.Writer) error {
	listings := make([]dlq.Listing, 0, len(queues))
	for _, q := range queues {
		l, err := in.List(ctx, q, limit)
		if err != nil {
			return err
		}
		listings = append(listings, l)
	}
	if output == "json" {
		return writeJSON(w, map[string]any{"queues": listings})
	}
	for _, l := range listings {
		fmt.Fprintf(w, "%s: DLQ depth %d", l.Queue, l.Depth)
		if l.Read != l.Depth {
			fmt.Fprintf(w, " (read %d)", l.Read)
		}
		fmt.Fprintln(w)
		for _, g := range l.Groups {
			fmt.Fprintf(w, "  %d × %s\n    oldest %s, newest %s\n", g.Count, g.Reason, stamp(g.Oldest), stamp(g.Newest))
			for _, m := range g.Messages {
				fmt.Fprintf(w, "    %s  receives %d  %s", m.ID, m.ReceiveCount, deadSince(m))
				if m.ExecutionARN != "" {
					fmt.Fprintf(w, "  %s", m.ExecutionARN)
				}
				if m.TargetARN != "" {
					fmt.Fprintf(w, "  → %s", m.TargetARN)
				}
				fmt.Fprintln(w)
			}
		}
	}
	return nil
}

func dlqShow(ctx context.Context, in *dlq.Inspector, q dlq.Queue, limit int, output string, w io.Writer) error {
	msgs, err := in.Show(ctx, q, limit)
	if err != nil {
		return err
	}
	if output == "json" {
		return writeJSON(w, map[string]any{"queue": q.Name, "messages": msgs})
	}
	if len(msgs) == 0 {
		_, err := fmt.Fprintf(w, "the DLQ of %s has no visible message\n", q.Name)
		return err
	}
	for _, m := range msgs {
		fmt.Fprintf(w, "message %s\n  reason:      %s\n  receives:    %d\n  dead:        %s\n", m.ID, m.Reason, m.ReceiveCount, deadSince(m))
		if !m.EventTime.IsZero() {
			fmt.Fprintf(w, "  event time:  %s\n  detail-type: %s\n", stamp(m.EventTime), m.DetailType)
		}
		if m.ExecutionARN != "" {
			fmt.Fprintf(w, "  execution:   %s\n", m.ExecutionARN)
		}
		if m.TokenHash != "" {
			fmt.Fprintf(w, "  token hash:  %s\n", m.TokenHash)
		}
		if m.RuleARN != "" {
			fmt.Fprintf(w, "  rule:        %s\n  target:      %s\n  error:       %s\n", m.RuleARN, m.TargetARN, m.ErrorMessage)
		}
		fmt.Fprintf(w, "  body:        %s\n", m.Body)
	}
	return nil
}

func dlqRedrive(ctx context.Context, in *dlq.Inspector, q dlq.Queue, opt dlq.RedriveOptions, output string, w io.Writer) error {
	if output == "text" {
		// One line per message as it is decided: an interrupted run still says what it did.
		opt.Progress = func(o dlq.Outcome) {
			line := o.Action + " " + o.MessageID + " (" + o.Reason + ")"
			if o.Why != "" {
				line += ": " + o.Why
			}
			fmt.Fprintln(w, line)
		}
	}
	sum, err := in.Redrive(ctx, q, opt)
	if output == "json" {
		if werr := writeJSON(w, sum); werr != nil && err == nil {
			err = werr
		}
	} else {
		moved := "moved"
		if sum.DryRun {
			moved = "would move"
		}
		fmt.Fprintf(w, "%s: %s %d, skipped %d (task closed), left %d\n", q.Name, moved, sum.Moved, sum.Skipped, sum.Left)
	}
	if err != nil {
		return fmt.Errorf("redrive %s: %w", q.Name, err)
	}
	return nil
}

// deadSince says when m was moved to the DLQ, or, for a message SQS's redrive
// policy moved (SQS keeps no time of the move), when it was first sent.
func deadSince(m dlq.Message) string {
	if m.DeadSince.IsZero() {
		return "moved by SQS at an unrecorded time; first sent " + stamp(m.FirstSent)
	}
	return "dead since " + stamp(m.DeadSince)
}

func dlqRedriveExecutions(ctx context.Context, in *dlq.Inspector, q dlq.Queue, opt dlq.RedriveOptions, output string, w io.Writer) error {
	if output == "text" {
		opt.Progress = func(o dlq.Outcome) {
			line := o.Action + " " + o.MessageID
			if o.ExecutionARN != "" {
				line += " " + o.ExecutionARN
			}
			if o.Why != "" {
				line += ": " + o.Why
			}
			fmt.Fprintln(w, line)
		}
	}
	sum, err := in.RedriveExecutions(ctx, q, opt)
	if output == "json" {
		if werr := writeJSON(w, sum); werr != nil && err == nil {
			err = werr
		}
	} else {
		verb := "redriven"
		if sum.DryRun {
			verb = "would redrive"
		}
		fmt.Fprintf(w, "%s: executions %s %d (%d dead letters), skipped %d, left %d\n", q.Name, verb, sum.Executions, sum.Moved, sum.Skipped, sum.Left)
	}
	if err != nil {
		return fmt.Errorf("redrive the executions of %s: %w", q.Name, err)
	}
	return nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.UTC().Format(time.RFC3339) + " (" + strconv.FormatFloat(time.Since(t).Truncate(time.Second).Seconds(), 'f', 0, 64) + " s ago)"
}

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
           executionArn. So is one dead-lettered during the redrive (the next run
           decides it). Ends with a summary of moved / skipped / left.
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

// dlqRequest is one parsed `worker dlq` command line. Each field is set only by
// the commands that take its flag (dlqFlags).
type dlqRequest struct {
	cmd, queue, output string
	limit              int
	reason, to         string
	rate               float64
	dryRun, executions bool
	yes                bool
}

// dlqFlags are the flags of each dlq command beyond --queue and --output.
var dlqFlags = map[string]func(fs *flag.FlagSet, r *dlqRequest){
	"list": func(fs *flag.FlagSet, r *dlqRequest) {
		fs.IntVar(&r.limit, "limit", 1000, "most messages read per DLQ")
	},
	"show": func(fs *flag.FlagSet, r *dlqRequest) {
		fs.IntVar(&r.limit, "limit", 10, "most messages shown")
	},
	"redrive": func(fs *flag.FlagSet, r *dlqRequest) {
		fs.StringVar(&r.reason, "reason", "", "move only the messages whose reason contains this")
		fs.Float64Var(&r.rate, "rate", 1, "most messages moved per second")
		fs.BoolVar(&r.dryRun, "dry-run", false, "report what would move; move nothing")
		fs.StringVar(&r.to, "to", "bus", "--queue "+topology.EventsDLQName+" only: put each event back on its rule's bus, or into the rule's queue")
		fs.BoolVar(&r.executions, "executions", false, "redrive the executions a worker failed (Step Functions RedriveExecution), not the messages")
	},
	"purge": func(fs *flag.FlagSet, r *dlqRequest) {
		fs.BoolVar(&r.yes, "yes", false, "really delete every message of the DLQ")
	},
}

func runDLQ(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	r, err := parseDLQ(registered.program(), args, stdout, stderr)
	if err != nil {
		return err
	}
	s, err := newSetup(ctx, registered)
	if err != nil {
		return err
	}
	queues, err := dlqQueues(ctx, s, r.queue)
	if err != nil {
		return err
	}
	in := dlq.New(s.clients.SQS, s.clients.SFN).WithEvents(s.clients.EventBridge, s.clients.SQS)
	return r.run(ctx, in, queues, stdout)
}

// parseDLQ reads a dlq command line; a wrong one is a UsageError, a help request
// flag.ErrHelp.
func parseDLQ(program string, args []string, stdout, stderr io.Writer) (dlqRequest, error) {
	if len(args) == 0 {
		printUsage(stderr, program, dlqUsage)
		return dlqRequest{}, UsageError{errors.New("dlq needs a command: list, show, redrive or purge")}
	}
	if args[0] == "help" || askedForHelp(args[:1]) {
		printUsage(stdout, program, dlqUsage)
		return dlqRequest{}, flag.ErrHelp
	}
	r := dlqRequest{cmd: args[0]}
	addFlags, ok := dlqFlags[r.cmd]
	if !ok {
		printUsage(stderr, program, dlqUsage)
		return dlqRequest{}, UsageError{fmt.Errorf("unknown dlq command %q", r.cmd)}
	}
	fs := flag.NewFlagSet("dlq "+r.cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(fs.Output(), program, dlqUsage) }
	fs.StringVar(&r.queue, "queue", "", "topology queue whose DLQ to use")
	fs.StringVar(&r.output, "output", "text", "text or json")
	addFlags(fs, &r)
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		return dlqRequest{}, err
	}
	if fs.NArg() > 0 {
		return dlqRequest{}, UsageError{fmt.Errorf("dlq %s takes no arguments, got %v", r.cmd, fs.Args())}
	}
	if err := r.problem(fs); err != nil {
		return dlqRequest{}, UsageError{err}
	}
	return r, nil
}

// problem is the first wrong value of r, whose flags fs defined; nil when none.
func (r dlqRequest) problem(fs *flag.FlagSet) error {
	has := func(name string) bool { return fs.Lookup(name) != nil }
	for _, c := range []struct {
		wrong bool
		err   error
	}{
		{r.output != "text" && r.output != "json", fmt.Errorf("--output must be text or json, got %q", r.output)},
		{r.queue == "" && r.cmd != "list", fmt.Errorf("dlq %s needs --queue", r.cmd)},
		{has("limit") && r.limit < 1, fmt.Errorf("--limit must be at least 1, got %d", r.limit)},
		{has("rate") && (r.rate <= 0 || r.rate > 1000), fmt.Errorf("--rate must be in (0, 1000] messages a second, got %v", r.rate)},
		{has("to") && r.to != "bus" && r.to != "queue", fmt.Errorf("--to must be bus or queue, got %q", r.to)},
		{r.to == "queue" && r.queue != topology.EventsDLQName, fmt.Errorf("--to queue is for --queue %s (a queue's own DLQ goes back to its queue anyway)", topology.EventsDLQName)},
		{has("yes") && !r.yes, fmt.Errorf("dlq purge deletes every message of the DLQ of %s for good: add --yes to do it", r.queue)},
	} {
		if c.wrong {
			return c.err
		}
	}
	return nil
}

// dlqQueues resolves the queue --queue names (a topology queue or the events DLQ),
// or every one of them when it is empty.
func dlqQueues(ctx context.Context, s setup, queue string) ([]dlq.Queue, error) {
	if queue != "" && queue != topology.EventsDLQName {
		if _, ok := s.topo.Queue(queue); !ok {
			return nil, UsageError{fmt.Errorf("--queue %q is not a queue of the topology (%s, or %s: the events DLQ)", queue, queueNames(s), topology.EventsDLQName)}
		}
	}
	queues, err := resolveQueues(ctx, s, queue)
	if err != nil {
		return nil, err
	}
	if len(queues) == 0 {
		return nil, fmt.Errorf("the stack has no events DLQ (%s): run `worker bootstrap` (or terraform apply) to make it, unless the topology's eventDelivery turns it off", topology.Names{Stack: s.cfg.Stack}.EventsDLQ())
	}
	return queues, nil
}

// run carries out r on queues (one, unless r lists every queue).
func (r dlqRequest) run(ctx context.Context, in *dlq.Inspector, queues []dlq.Queue, stdout io.Writer) error {
	switch r.cmd {
	case "list":
		return dlqList(ctx, in, queues, r.limit, r.output, stdout)
	case "show":
		return dlqShow(ctx, in, queues[0], r.limit, r.output, stdout)
	case "redrive":
		queues[0].ToTarget = r.to == "queue"
		opt := dlq.RedriveOptions{Reason: r.reason, Rate: r.rate, DryRun: r.dryRun}
		if r.executions {
			return dlqRedriveExecutions(ctx, in, queues[0], opt, r.output, stdout)
		}
		return dlqRedrive(ctx, in, queues[0], opt, r.output, stdout)
	default:
		if err := in.Purge(ctx, queues[0]); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "purged the DLQ of %s\n", r.queue)
		return err
	}
}

// resolveQueues finds the URLs of the named queue, or of every topology queue.
func resolveQueues(ctx context.Context, s setup, only string) ([]dlq.Queue, error) {
	if only == topology.EventsDLQName {
		// The events DLQ alone: readable while a rule's queue is missing.
		url, err := s.bootstrapper().ResolveEventsDLQ(ctx)
		if err != nil || url == "" {
			return nil, err
		}
		return []dlq.Queue{{Name: topology.EventsDLQName, DLQURL: url, Events: true}}, nil
	}
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
		fmt.Fprintf(w, "%s: %s %d, skipped %d (task closed, or dead-lettered during this redrive), left %d\n", q.Name, moved, sum.Moved, sum.Skipped, sum.Left)
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

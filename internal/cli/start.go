package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/taskbridge/taskbridge/internal/dlq"
	"github.com/taskbridge/taskbridge/internal/failnote"
	"github.com/taskbridge/taskbridge/internal/topology"
)

func runStart(ctx context.Context, registered Jobs, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(registered.program(), "start", stdout, stderr)
	machine := fs.String("state-machine", "", "state machine of the topology to start (default: cookies, or the topology's only one)")
	count := fs.Int("count", -1, "number of random names (0..10000)")
	names := fs.String("names", "", "comma-separated names (use --input for names with commas)")
	input := fs.String("input", "", `execution input (JSON), e.g. {"names":["a,b","c"]}`)
	name := fs.String("name", "", "execution name (default: a unique one)")
	wait := fs.Bool("wait", false, "wait for the end and print the output")
	timeout := fs.Duration("timeout", 15*time.Minute, "with --wait, how long to wait")
	report := fs.Bool("report", false, "with --wait, also print the report object and the totals")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	in, err := executionInput(*count, *names, *input)
	if err != nil {
		return UsageError{err}
	}
	s, err := newSetup(ctx, registered)
	if err != nil {
		return err
	}
	sm, err := pickStateMachine(s.topo, *machine)
	if err != nil {
		return UsageError{err}
	}
	if *name == "" {
		*name = uniqueExecutionName(sm)
	}
	arn, err := s.bootstrapper().StateMachineARN(ctx, sm)
	if err != nil {
		return err
	}
	// moto does not make names up, and AWS requires them unique per state machine.
	started, err := s.clients.SFN.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(arn), Name: aws.String(*name), Input: aws.String(in)})
	if err != nil {
		return fmt.Errorf("start execution: %w", err)
	}
	execARN := aws.ToString(started.ExecutionArn)
	fmt.Fprintln(stderr, "started", execARN)
	if !*wait {
		_, err := fmt.Fprintln(stdout, execARN)
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	out, err := waitExecution(waitCtx, s.clients.SFN, execARN)
	var failed *executionFailed
	if errors.As(err, &failed) && failed.cause == "" {
		var deadIn string
		failed.cause, deadIn = s.findCause(ctx, execARN)
		if deadIn != "" {
			fmt.Fprintf(stderr, "once the cause is fixed: worker dlq redrive --queue %s --executions --dry-run (then without --dry-run)\n", deadIn)
		}
	}
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(stdout, out); err != nil || !*report {
		return err
	}
	return printReport(ctx, s.clients.S3, out, stdout)
}

// printReport prints the report object that an execution's output points to, and
// the totals.
func printReport(ctx context.Context, client *s3.Client, output string, stdout io.Writer) error {
	var res struct {
		NumberOfPeople       int    `json:"numberOfPeople"`
		TotalCookiesConsumed int    `json:"totalCookiesConsumed"`
		Report               string `json:"report"`
	}
	if err := json.Unmarshal([]byte(output), &res); err != nil {
		return fmt.Errorf("read execution output: %w", err)
	}
	bucket, key, ok := strings.Cut(strings.TrimPrefix(res.Report, "s3://"), "/")
	if !ok || !strings.HasPrefix(res.Report, "s3://") {
		return fmt.Errorf("execution output has no report URI: %q", res.Report)
	}
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("get report %s: %w", res.Report, err)
	}
	defer obj.Body.Close()
	var doc any
	if err := json.NewDecoder(obj.Body).Decode(&doc); err != nil {
		return fmt.Errorf("decode report %s: %w", res.Report, err)
	}
	pretty, _ := json.MarshalIndent(doc, "", "  ")
	_, err = fmt.Fprintf(stdout, "report %s:\n%s\npeople: %d, cookies consumed: %d\n", res.Report, pretty, res.NumberOfPeople, res.TotalCookiesConsumed)
	return err
}

func executionInput(count int, names, raw string) (string, error) {
	set := 0
	for _, on := range []bool{count >= 0, names != "", raw != ""} {
		if on {
			set++
		}
	}
	switch {
	case set > 1:
		return "", errors.New("use only one of --count, --names and --input")
	case raw != "":
		if !json.Valid([]byte(raw)) {
			return "", errors.New("--input is not valid JSON")
		}
		return raw, nil
	case names != "":
		b, err := json.Marshal(map[string][]string{"names": strings.Split(names, ",")})
		return string(b), err
	case count >= 0:
		return fmt.Sprintf(`{"count":%d}`, count), nil
	default:
		return "{}", nil
	}
}

// uniqueExecutionName is sortable by start time and unique across processes.
func uniqueExecutionName(stateMachine string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux
	prefix := stateMachine
	if len(prefix) > 40 {
		prefix = prefix[:40]
	}
	return prefix + "-" + time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}

// pickStateMachine is the named state machine of the topology; by default cookies,
// or the only one the topology has.
func pickStateMachine(topo *topology.Topology, name string) (string, error) {
	if name != "" {
		if _, ok := topo.StateMachine(name); !ok {
			return "", fmt.Errorf("--state-machine %q is not a state machine of the topology (%s)", name, stateMachineNames(topo))
		}
		return name, nil
	}
	if _, ok := topo.StateMachine("cookies"); ok {
		return "cookies", nil
	}
	if len(topo.StateMachines) == 1 {
		return topo.StateMachines[0].Name, nil
	}
	return "", fmt.Errorf("name the state machine with --state-machine (%s)", stateMachineNames(topo))
}

func stateMachineNames(topo *topology.Topology) string {
	names := make([]string, 0, len(topo.StateMachines))
	for _, sm := range topo.StateMachines {
		names = append(names, sm.Name)
	}
	if len(names) == 0 {
		return "it has none"
	}
	return strings.Join(names, ", ")
}

// waitExecution polls until the execution ends and returns its output, or an error
// with its error and cause when it did not succeed.
func waitExecution(ctx context.Context, client *sfn.Client, arn string) (string, error) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		d, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		if err != nil {
			return "", fmt.Errorf("describe execution: %w", err)
		}
		switch d.Status {
		case sfntypes.ExecutionStatusSucceeded:
			return aws.ToString(d.Output), nil
		case sfntypes.ExecutionStatusRunning, sfntypes.ExecutionStatusPendingRedrive:
		default:
			return "", &executionFailed{arn: arn, status: string(d.Status), code: aws.ToString(d.Error), cause: aws.ToString(d.Cause)}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for execution %s: %w", arn, ctx.Err())
		case <-tick.C:
		}
	}
}

// executionFailed is an execution that ended without success.
type executionFailed struct {
	arn, status, code, cause string
}

func (e *executionFailed) Error() string {
	return fmt.Sprintf("execution %s ended %s: %s: %s", e.arn, e.status, e.code, e.cause)
}

// findCause looks for the cause of a failed execution where DescribeExecution did
// not give it (moto drops causes): the execution history's failure events, then a
// message of the execution in a DLQ (its reason; the read leaves it visible), then
// the worker's failure note of the execution (failnote). deadIn names the queue
// whose DLQ holds the execution's dead letter, if one does.
func (s setup) findCause(ctx context.Context, execARN string) (cause, deadIn string) {
	pages := sfn.NewGetExecutionHistoryPaginator(s.clients.SFN, &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(execARN), ReverseOrder: true})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			break
		}
		for _, ev := range page.Events {
			if c := historyCause(ev); c != "" {
				return c, ""
			}
		}
	}
	if queues, err := resolveQueues(ctx, s, ""); err == nil {
		in := dlq.New(s.clients.SQS, s.clients.SFN)
		for _, q := range queues {
			if c := dlqCause(ctx, in, q, execARN); c != "" {
				return c + " (from DLQ " + q.Name + ")", q.Name
			}
		}
	}
	notes := failnote.New(s.clients.S3, s.cfg.DataBucket)
	if n, found, err := notes.Read(ctx, execARN); err == nil && found {
		return n.Cause + " (from the worker's failure note " + notes.Location(execARN) + ")", ""
	}
	return "cause not available from this endpoint: no failure in the execution's history, no dead letter of it, no worker's failure note at " +
		notes.Location(execARN) + " (written when the event's detail has executionArn); the worker's log line of this execution_arn has it", ""
}

func historyCause(ev sfntypes.HistoryEvent) string {
	var causes []*string
	if d := ev.ExecutionFailedEventDetails; d != nil {
		causes = append(causes, d.Cause)
	}
	if d := ev.TaskFailedEventDetails; d != nil {
		causes = append(causes, d.Cause)
	}
	if d := ev.TaskTimedOutEventDetails; d != nil {
		causes = append(causes, d.Cause)
	}
	if d := ev.ExecutionTimedOutEventDetails; d != nil {
		causes = append(causes, d.Cause)
	}
	for _, c := range causes {
		if aws.ToString(c) != "" {
			return aws.ToString(c)
		}
	}
	return ""
}

// dlqCause is the reason of a dead letter of q that names the execution, "" if
// none. It reads up to dlqCauseRead messages and leaves them visible (dlq.Show):
// `dlq list`, `show`, `redrive` and `status` see them right after.
func dlqCause(ctx context.Context, in *dlq.Inspector, q dlq.Queue, execARN string) string {
	msgs, err := in.Show(ctx, q, dlqCauseRead)
	if err != nil {
		return ""
	}
	for _, m := range msgs {
		if m.ExecutionARN == execARN || strings.Contains(m.Body, execARN) {
			return m.Reason
		}
	}
	return ""
}

// dlqCauseRead bounds the DLQ messages findCause reads per queue.
const dlqCauseRead = 100

package dlq

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
)

// executionAPI is what a redrive of executions calls besides sfnAPI; *sfn.Client
// satisfies it.
type executionAPI interface {
	// RedriveExecution restarts a FAILED, TIMED_OUT or ABORTED execution from its
	// failed step, within 14 days of its stop; ExecutionNotRedrivable otherwise.
	// ClientToken makes a repeated call (a retry after a lost reply) the same call.
	RedriveExecution(ctx context.Context, in *sfn.RedriveExecutionInput, opts ...func(*sfn.Options)) (*sfn.RedriveExecutionOutput, error)
}

// RedrivePeriod is how long after its stop Step Functions redrives an execution.
const RedrivePeriod = 14 * 24 * time.Hour

// The actions of a redrive of executions on one dead letter.
const (
	// ActionExecutionRedriven: its execution was redriven (by this message or an
	// earlier one of the same execution in this run); the message, obsolete (its
	// task is closed; the redriven step sends a new event), is deleted.
	ActionExecutionRedriven = "execution_redriven"
	// ActionWouldRedrive: DryRun, or `worker status` listing what is redrivable.
	ActionWouldRedrive = "would_redrive_execution"
)

// WhyCountedAbove is the Why of a dry run's further dead letters of an execution
// it already counted.
const WhyCountedAbove = "its execution is counted above"

// ErrRedriveUnsupported is the redrive's error when the endpoint does not
// implement RedriveExecution: moto 5.2.5 answers HTTP 500 with no AWS error,
// LocalStack 4.14.0 (community) HTTP 501 InternalFailure.
var ErrRedriveUnsupported = errors.New("this endpoint does not implement Step Functions RedriveExecution (moto and LocalStack's community edition lack it; AWS has it): nothing was redriven")

// RedriveExecutions redrives the executions of q's dead letters that a worker
// failed: the message carries the worker's reason (it was not moved by SQS), its
// task is closed, and its execution (the detail's executionArn) is FAILED, stopped
// within RedrivePeriod and redrivable. Never an execution a person stopped
// (ABORTED), one that timed out, or one still running. Each execution is redriven
// once a run, then its dead letters are deleted. opt.Reason, Rate, DryRun and
// Progress work as in Redrive; Summary.Moved counts the dead letters redriven (or
// that would be). A redrive whose reply was lost is resolved by reading the
// execution back.
func (in *Inspector) RedriveExecutions(ctx context.Context, q Queue, opt RedriveOptions) (Summary, error) {
	r := executionsRun{in: in, q: q, opt: opt.withDefaults(), redriven: map[string]bool{}}
	r.sum = Summary{Queue: q.Name, DryRun: opt.DryRun, Messages: []Outcome{}}
	err := in.read(ctx, q, opt.Limit, 10, ReadVisibility, func(m Message) (bool, error) {
		if !r.opt.selects(m) {
			return false, nil
		}
		o, keep, err := r.decide(ctx, m)
		if err != nil {
			return false, err
		}
		r.sum.record(o, r.opt.Progress)
		return keep, ctx.Err()
	})
	if err == nil {
		err = r.stop
	}
	return r.sum, err
}

// executionsRun is the state of one RedriveExecutions, owned by its read's
// goroutine.
type executionsRun struct {
	in       *Inspector
	q        Queue
	opt      RedriveOptions
	redriven map[string]bool // execution ARN → redriven (DryRun: counted) in this run
	lastCall time.Time       // of RedriveExecution, for the pacing
	stop     error           // the endpoint lacks RedriveExecution: every later one is left
	sum      Summary
}

// decide settles one selected dead letter: its outcome, and keep when it was
// deleted (no longer to release). err stops the run (its context ended).
func (r *executionsRun) decide(ctx context.Context, m Message) (o Outcome, keep bool, err error) {
	o = newOutcome(m)
	switch {
	case r.stop != nil:
		o.Action, o.Why = ActionLeft, r.stop.Error()
	case r.redriven[m.ExecutionARN] && r.opt.DryRun:
		o.Action, o.Why = ActionWouldRedrive, WhyCountedAbove
	case r.redriven[m.ExecutionARN]:
		o.Action, keep = ActionExecutionRedriven, r.deleteObsolete(ctx, m, &o)
	default:
		eligible, why, cerr := r.in.redrivable(ctx, m)
		switch {
		case cerr != nil:
			o.Action, o.Why = ActionLeft, cerr.Error()
		case !eligible:
			o.Action, o.Why = ActionSkipped, why
		case r.opt.DryRun:
			o.Action, o.Why = ActionWouldRedrive, why
			r.counted(m.ExecutionARN)
		default:
			return r.redrive(ctx, m, o)
		}
	}
	return o, keep, nil
}

// redrive redrives m's execution, paced, then deletes m.
func (r *executionsRun) redrive(ctx context.Context, m Message, o Outcome) (Outcome, bool, error) {
	if err := r.in.pace(ctx, r.lastCall, r.opt.interval()); err != nil {
		return o, false, err
	}
	r.lastCall = r.in.nowFunc()
	if err := r.in.redriveExecution(ctx, m.ExecutionARN); err != nil {
		if errors.Is(err, ErrRedriveUnsupported) {
			r.stop = err
		}
		o.Action, o.Why = ActionLeft, err.Error()
		return o, false, nil
	}
	r.counted(m.ExecutionARN)
	o.Action = ActionExecutionRedriven
	return o, r.deleteObsolete(ctx, m, &o), nil
}

// counted notes that the execution arn was redriven (or would be) in this run.
func (r *executionsRun) counted(arn string) {
	r.redriven[arn] = true
	r.sum.Executions++
}

// deleteObsolete deletes m, whose execution was redriven; o.Why says so if it could
// not (it stays in the DLQ, skipped by the next run as its execution is no longer
// FAILED).
func (r *executionsRun) deleteObsolete(ctx context.Context, m Message, o *Outcome) (keep bool) {
	if err := r.in.deleteDead(ctx, r.q, m); err != nil {
		o.Why = fmt.Sprintf("still in the DLQ (%v)", err)
		return false
	}
	return true
}

// redrivable decides whether m's execution is one a worker failed and Step
// Functions can redrive; why says what was found either way.
func (in *Inspector) redrivable(ctx context.Context, m Message) (ok bool, why string, err error) {
	switch {
	case m.ExecutionARN == "":
		return false, "no executionArn in its detail: no execution to redrive", nil
	case m.DeadSince.IsZero():
		// SQS moved it: no worker failed its task, which may still wait.
		return false, "not failed by a worker (SQS moved it after maxReceiveCount): redrive the message instead", nil
	case m.token != "":
		closed, _, err := in.taskClosed(ctx, Message{token: m.token})
		if err != nil {
			return false, "", err
		}
		if !closed {
			return false, "its task is still open: redrive the message instead", nil
		}
	}
	d, err := in.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(m.ExecutionARN)})
	if isCode(err, "ExecutionDoesNotExist") {
		return false, "execution does not exist", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("describe the execution: %w", err)
	}
	ok, why = in.failedByAWorker(d)
	return ok, why, nil
}

// failedByAWorker decides from its description whether an execution is FAILED and
// can still be redriven.
func (in *Inspector) failedByAWorker(d *sfn.DescribeExecutionOutput) (ok bool, why string) {
	switch d.Status {
	case sfntypes.ExecutionStatusFailed:
	case sfntypes.ExecutionStatusAborted:
		return false, "execution ABORTED: stopped by a person, never redriven here"
	case sfntypes.ExecutionStatusTimedOut:
		return false, "execution TIMED_OUT: not failed by a worker"
	default:
		return false, "execution " + string(d.Status)
	}
	if d.RedriveStatus == sfntypes.ExecutionRedriveStatusNotRedrivable {
		return false, "not redrivable: " + aws.ToString(d.RedriveStatusReason)
	}
	if d.StopDate != nil && in.nowFunc().Sub(*d.StopDate) > RedrivePeriod {
		return false, "failed " + d.StopDate.UTC().Format(time.RFC3339) + ", more than 14 days ago: Step Functions redrives only within 14 days"
	}
	why = "execution FAILED"
	if e := aws.ToString(d.Error); e != "" {
		why += " (" + e + ")"
	}
	return true, why
}

// isCode reports whether err is an AWS answer with code.
func isCode(err error, code string) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}

// redriveExecution redrives arn. An error that leaves in doubt whether Step
// Functions acted (a lost reply) is resolved by reading the execution back.
func (in *Inspector) redriveExecution(ctx context.Context, arn string) error {
	redriver, ok := in.sfn.(executionAPI)
	if !ok {
		return ErrRedriveUnsupported
	}
	before, err := in.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	if err != nil {
		return fmt.Errorf("describe the execution: %w", err)
	}
	count := aws.ToInt32(before.RedriveCount)
	_, err = redriver.RedriveExecution(ctx, &sfn.RedriveExecutionInput{ExecutionArn: aws.String(arn), ClientToken: aws.String(redriveToken(arn, count))})
	if err == nil {
		return nil
	}
	var httpErr *awshttp.ResponseError
	if errors.As(err, &httpErr) && httpErr.HTTPStatusCode() == http.StatusNotImplemented {
		// An emulator without the call (LocalStack: "not yet been emulated"); AWS
		// never answers 501, and a 501 acted on nothing.
		return fmt.Errorf("%w (%w)", ErrRedriveUnsupported, err)
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		// Step Functions answered: it refused (ExecutionNotRedrivable, ...).
		return fmt.Errorf("redrive the execution: %w", err)
	}
	// No AWS answer: an endpoint without the call, or a reply lost after Step
	// Functions acted. Read back.
	after, derr := in.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	if derr == nil && (aws.ToInt32(after.RedriveCount) > count || after.Status == sfntypes.ExecutionStatusRunning) {
		return nil
	}
	var de *smithy.DeserializationError
	if errors.As(err, &de) {
		return fmt.Errorf("%w (%w)", ErrRedriveUnsupported, err)
	}
	return fmt.Errorf("redrive the execution (not redriven, read back): %w", err)
}

// redriveToken is the ClientToken of the redrive of arn's redriveCount-th state:
// the same for a retry, another for a later redrive of the same execution.
func redriveToken(arn string, redriveCount int32) string {
	sum := sha256.Sum256([]byte(arn + "#" + strconv.Itoa(int(redriveCount))))
	return hex.EncodeToString(sum[:])
}

// deleteDead deletes m from q's DLQ once it is obsolete (moved, or its execution
// redriven). Detached: once its replacement is out, the delete is worth finishing
// even if the command is being stopped (it would only be a duplicate otherwise).
func (in *Inspector) deleteDead(ctx context.Context, q Queue, m Message) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := in.sqs.DeleteMessage(dctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.DLQURL), ReceiptHandle: aws.String(m.receipt)}); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

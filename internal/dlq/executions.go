package dlq

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
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
// implement RedriveExecution (moto answers HTTP 500 with no AWS error).
var ErrRedriveUnsupported = errors.New("this endpoint does not implement Step Functions RedriveExecution (moto lacks it; AWS and LocalStack have it): nothing was redriven")

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
	if opt.Rate <= 0 {
		opt.Rate = 1
	}
	interval := time.Duration(float64(time.Second) / opt.Rate)
	sum := Summary{Queue: q.Name, DryRun: opt.DryRun, Messages: []Outcome{}}
	redriven := map[string]bool{} // execution ARN → redriven in this run
	var lastCall time.Time
	var stop error
	err := in.read(ctx, q, opt.Limit, 10, ReadVisibility, func(m Message) (bool, error) {
		if opt.Reason != "" && !strings.Contains(m.Reason, opt.Reason) {
			return false, nil
		}
		o := Outcome{MessageID: m.ID, Reason: m.Reason, ExecutionARN: m.ExecutionARN, TokenHash: m.TokenHash}
		keep := false
		switch {
		case stop != nil:
			o.Action, o.Why = ActionLeft, stop.Error()
		case redriven[m.ExecutionARN] && opt.DryRun:
			o.Action, o.Why = ActionWouldRedrive, WhyCountedAbove
		case redriven[m.ExecutionARN]:
			o.Action = ActionExecutionRedriven
			o.Why, keep = in.deleteDead(ctx, q, m)
		default:
			eligible, why, err := in.redrivable(ctx, m)
			switch {
			case err != nil:
				o.Action, o.Why = ActionLeft, err.Error()
			case !eligible:
				o.Action, o.Why = ActionSkipped, why
			case opt.DryRun:
				o.Action, o.Why = ActionWouldRedrive, why
				redriven[m.ExecutionARN] = true
				sum.Executions++
			default:
				if !lastCall.IsZero() {
					if err := in.SleepFunc(ctx, interval-in.NowFunc().Sub(lastCall)); err != nil {
						return false, err
					}
				}
				lastCall = in.NowFunc()
				if err := in.redriveExecution(ctx, m.ExecutionARN); err != nil {
					o.Action, o.Why = ActionLeft, err.Error()
					if errors.Is(err, ErrRedriveUnsupported) {
						stop = err
					}
					break
				}
				redriven[m.ExecutionARN] = true
				sum.Executions++
				o.Action = ActionExecutionRedriven
				o.Why, keep = in.deleteDead(ctx, q, m)
			}
		}
		switch o.Action {
		case ActionExecutionRedriven, ActionWouldRedrive:
			sum.Moved++
		case ActionSkipped:
			sum.Skipped++
		default:
			sum.Left++
		}
		sum.Messages = append(sum.Messages, o)
		if opt.Progress != nil {
			opt.Progress(o)
		}
		return keep, ctx.Err()
	})
	if err == nil {
		err = stop
	}
	return sum, err
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
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "ExecutionDoesNotExist" {
		return false, "execution does not exist", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("describe the execution: %w", err)
	}
	switch d.Status {
	case sfntypes.ExecutionStatusFailed:
	case sfntypes.ExecutionStatusAborted:
		return false, "execution ABORTED: stopped by a person, never redriven here", nil
	case sfntypes.ExecutionStatusTimedOut:
		return false, "execution TIMED_OUT: not failed by a worker", nil
	default:
		return false, "execution " + string(d.Status), nil
	}
	if d.RedriveStatus == sfntypes.ExecutionRedriveStatusNotRedrivable {
		return false, "not redrivable: " + aws.ToString(d.RedriveStatusReason), nil
	}
	if d.StopDate != nil && in.NowFunc().Sub(*d.StopDate) > RedrivePeriod {
		return false, "failed " + d.StopDate.UTC().Format(time.RFC3339) + ", more than 14 days ago: Step Functions redrives only within 14 days", nil
	}
	why = "execution FAILED"
	if e := aws.ToString(d.Error); e != "" {
		why += " (" + e + ")"
	}
	return true, why, nil
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
		return fmt.Errorf("%w (%v)", ErrRedriveUnsupported, err)
	}
	return fmt.Errorf("redrive the execution (not redriven, read back): %w", err)
}

// redriveToken is the ClientToken of the redrive of arn's redriveCount-th state:
// the same for a retry, another for a later redrive of the same execution.
func redriveToken(arn string, redriveCount int32) string {
	sum := sha256.Sum256([]byte(arn + "#" + strconv.Itoa(int(redriveCount))))
	return hex.EncodeToString(sum[:])
}

// deleteDead deletes an obsolete dead letter; why says so if it could not (it stays
// in the DLQ, skipped by the next run as its execution is no longer FAILED).
func (in *Inspector) deleteDead(ctx context.Context, q Queue, m Message) (why string, keep bool) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := in.sqs.DeleteMessage(dctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.DLQURL), ReceiptHandle: aws.String(m.receipt)}); err != nil {
		return fmt.Sprintf("still in the DLQ (delete: %v)", err), false
	}
	return "", true
}

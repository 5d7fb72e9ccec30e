package dlq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// sfnAPI is what the redrive asks Step Functions to tell an open task from a closed
// one; *sfn.Client satisfies it.
type sfnAPI interface {
	// SendTaskHeartbeat changes nothing of a task but its heartbeat timer (a task
	// without HeartbeatSeconds has none); it answers TaskTimedOut, InvalidToken or
	// TaskDoesNotExist when the task is closed.
	SendTaskHeartbeat(ctx context.Context, in *sfn.SendTaskHeartbeatInput, opts ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error)
	DescribeExecution(ctx context.Context, in *sfn.DescribeExecutionInput, opts ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
}

// redriveMargin is added to the time a redrive needs for the messages it receives at
// once (their heartbeat checks and sends).
const redriveMargin = 15 * time.Second

// RedriveOptions select and pace a redrive.
type RedriveOptions struct {
	// Reason, when set, selects the messages whose reason contains it.
	Reason string
	// Rate is the most messages moved per second; 1 when zero.
	Rate float64
	// DryRun reports what would move and moves nothing.
	DryRun bool
	// Progress, when set, is called with each message's outcome as it is decided.
	Progress func(Outcome)
	// Limit, when above 0, is the most dead letters RedriveExecutions reads.
	Limit int
}

// The actions of a redrive on one message.
const (
	ActionMoved     = "moved"      // in its queue again, deleted from the DLQ
	ActionWouldMove = "would_move" // DryRun
	ActionSkipped   = "skipped"    // its task is closed: no delivery can complete it
	ActionLeft      = "left"       // not selected, or it could not be checked or moved
)

// Outcome is what a redrive did with one message.
type Outcome struct {
	MessageID    string `json:"messageId"`
	Reason       string `json:"reason"`
	Action       string `json:"action"`
	Why          string `json:"why,omitempty"`
	ExecutionARN string `json:"executionArn,omitempty"`
	TokenHash    string `json:"tokenHash,omitempty"`
}

// Summary is the result of a redrive of one queue's DLQ.
type Summary struct {
	Queue   string `json:"queue"`
	DryRun  bool   `json:"dryRun"`
	Moved   int    `json:"moved"` // with DryRun: would move
	Skipped int    `json:"skipped"`
	Left    int    `json:"left"`
	// Executions is how many executions RedriveExecutions redrove (with DryRun:
	// would redrive).
	Executions int       `json:"executions,omitempty"`
	Messages   []Outcome `json:"messages"`
}

// Redrive moves the dead letters of q that opt selects back to q, at most opt.Rate
// a second. Each message is deleted from the DLQ only after SendMessage to q
// succeeded, so an interrupted redrive leaves every message in the DLQ, the queue,
// or both. A message whose task is closed is skipped and stays in the DLQ. Messages
// dead-lettered after the redrive began (perhaps one it just moved, failing again)
// are left for the next run. The returned error is the first SQS error that stopped
// the run; per-message failures are in the summary.
func (in *Inspector) Redrive(ctx context.Context, q Queue, opt RedriveOptions) (Summary, error) {
	if opt.Rate <= 0 {
		opt.Rate = 1
	}
	interval := time.Duration(float64(time.Second) / opt.Rate)
	// Receive about a second's worth at a time, hidden while it is paced out plus a
	// margin for the checks: what an interrupted redrive hid is back soon.
	batch := min(10, max(1, int(math.Ceil(opt.Rate))))
	visibility := redriveMargin + time.Duration(math.Ceil(float64(batch)/opt.Rate))*time.Second
	began := in.NowFunc()
	sum := Summary{Queue: q.Name, DryRun: opt.DryRun, Messages: []Outcome{}}
	var lastSend time.Time
	// Wait out the pacing before a receive, not with the received messages hidden: a
	// redrive killed while it waits hides nothing.
	pace := func() error {
		if lastSend.IsZero() {
			return nil
		}
		return in.SleepFunc(ctx, interval-in.NowFunc().Sub(lastSend))
	}
	err := in.readPaced(ctx, q, 0, batch, visibility, pace, func(m Message) (bool, error) {
		o := Outcome{MessageID: m.ID, Reason: m.Reason, ExecutionARN: m.ExecutionARN, TokenHash: m.TokenHash}
		keep := false
		switch {
		case opt.Reason != "" && !strings.Contains(m.Reason, opt.Reason):
			return false, nil // not selected: not part of the summary
		case m.deadOrSent().After(began): // SQS moved it: sent (by this redrive, perhaps) after it began
			o.Action, o.Why = ActionLeft, "dead-lettered after this redrive began"
		default:
			closed, why, err := in.taskClosed(ctx, m)
			switch {
			case err != nil:
				o.Action, o.Why = ActionLeft, err.Error()
			case closed:
				o.Action, o.Why = ActionSkipped, why
			case opt.DryRun:
				o.Action = ActionWouldMove
			default:
				if !lastSend.IsZero() {
					if err := in.SleepFunc(ctx, interval-in.NowFunc().Sub(lastSend)); err != nil {
						return false, err
					}
				}
				lastSend = in.NowFunc()
				o.Action, o.Why, keep = in.move(ctx, q, m)
			}
		}
		switch o.Action {
		case ActionMoved, ActionWouldMove:
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
	return sum, err
}

// move sends m to its queue, then deletes it from the DLQ. keep reports that it no
// longer needs releasing.
func (in *Inspector) move(ctx context.Context, q Queue, m Message) (action, why string, keep bool) {
	if q.Events {
		return in.putBack(ctx, q, m)
	}
	attrs := map[string]types.MessageAttributeValue{}
	for k, v := range m.attrs {
		if !strings.HasPrefix(k, "taskbridge-") { // the DLQ's own notes, not the event's
			attrs[k] = v
		}
	}
	in2 := &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(m.rawBody)}
	if len(attrs) > 0 {
		in2.MessageAttributes = attrs
	}
	if m.traceHeader != "" {
		// The X-Ray trace the message arrived with: the redriven delivery joins it.
		in2.MessageSystemAttributes = map[string]types.MessageSystemAttributeValue{
			string(types.MessageSystemAttributeNameForSendsAWSTraceHeader): {DataType: aws.String("String"), StringValue: aws.String(m.traceHeader)},
		}
	}
	if _, err := in.sqs.SendMessage(ctx, in2); err != nil {
		return ActionLeft, fmt.Sprintf("send to %s: %v", q.Name, err), false
	}
	// Detached: once the message is in its queue, the delete is worth finishing even
	// if the command is being stopped (it would only be a duplicate otherwise).
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := in.sqs.DeleteMessage(dctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.DLQURL), ReceiptHandle: aws.String(m.receipt)}); err != nil {
		return ActionMoved, fmt.Sprintf("in %s again, but still in the DLQ too (delete: %v)", q.Name, err), false
	}
	return ActionMoved, "", true
}

// closedCodes are the answers that mean a task is closed. AWS says TaskTimedOut for a
// closed token; emulators (moto) say InvalidToken.
var closedCodes = map[string]bool{"TaskTimedOut": true, "InvalidToken": true, "TaskDoesNotExist": true}

// taskClosed asks whether m's task can still be completed: with its token when it
// has one (a heartbeat: see sfnAPI), else with the status of its execution when the
// detail names one. A message with neither has no task to check.
func (in *Inspector) taskClosed(ctx context.Context, m Message) (closed bool, why string, err error) {
	switch {
	case m.token != "":
		_, err := in.sfn.SendTaskHeartbeat(ctx, &sfn.SendTaskHeartbeatInput{TaskToken: aws.String(m.token)})
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && closedCodes[apiErr.ErrorCode()] {
			return true, "task closed (" + apiErr.ErrorCode() + ")", nil
		}
		if err != nil {
			return false, "", fmt.Errorf("check the task: %w", err)
		}
		return false, "", nil
	case m.ExecutionARN != "":
		d, err := in.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(m.ExecutionARN)})
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode() == "ExecutionDoesNotExist" {
			return true, "execution does not exist", nil
		}
		if err != nil {
			return false, "", fmt.Errorf("check the execution: %w", err)
		}
		if d.Status != sfntypes.ExecutionStatusRunning {
			return true, "execution " + string(d.Status), nil
		}
		return false, "", nil
	default:
		return false, "", nil
	}
}

package dlq

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"
)

// execSFN is enough of Step Functions for a redrive of executions, refusing what it
// refuses: RedriveExecution of a RUNNING or SUCCEEDED execution, or of one stopped
// more than 14 days ago, answers ExecutionNotRedrivable; an unknown one
// ExecutionDoesNotExist. A redrive makes the execution RUNNING and counts it. Tokens
// "closed-…" are closed, others open.
type execSFN struct {
	mu       sync.Mutex
	now      time.Time
	execs    map[string]*sfn.DescribeExecutionOutput
	redrives map[string]int // RedriveExecution calls by ARN
	tokens   map[string]string
	// lose: the next redrive acts, then its reply is lost (a reset connection).
	lose bool
	// unsupported: RedriveExecution answers as moto does (HTTP 500, not JSON).
	unsupported bool
	// notEmulated: RedriveExecution answers as LocalStack 4.14.0 does (HTTP 501
	// InternalFailure, wrapped as the SDK wraps it).
	notEmulated bool
}

func newExecSFN(now time.Time) *execSFN {
	return &execSFN{now: now, execs: map[string]*sfn.DescribeExecutionOutput{}, redrives: map[string]int{}, tokens: map[string]string{}}
}

func (f *execSFN) add(arn string, status sfntypes.ExecutionStatus, stoppedAgo time.Duration) {
	stop := f.now.Add(-stoppedAgo)
	d := &sfn.DescribeExecutionOutput{ExecutionArn: aws.String(arn), Status: status, RedriveCount: aws.Int32(0)}
	if status != sfntypes.ExecutionStatusRunning {
		d.StopDate = &stop
		d.Error = aws.String("work.RetriesExhausted")
	}
	f.execs[arn] = d
}

func (f *execSFN) SendTaskHeartbeat(_ context.Context, in *sfn.SendTaskHeartbeatInput, _ ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error) {
	if strings.HasPrefix(aws.ToString(in.TaskToken), "closed-") {
		return nil, &smithy.GenericAPIError{Code: "TaskTimedOut", Message: "task timed out"}
	}
	return &sfn.SendTaskHeartbeatOutput{}, nil
}

func (f *execSFN) DescribeExecution(_ context.Context, in *sfn.DescribeExecutionInput, _ ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.execs[aws.ToString(in.ExecutionArn)]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "ExecutionDoesNotExist", Message: "no such execution"}
	}
	c := *d
	return &c, nil
}

func (f *execSFN) RedriveExecution(_ context.Context, in *sfn.RedriveExecutionInput, _ ...func(*sfn.Options)) (*sfn.RedriveExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := aws.ToString(in.ExecutionArn)
	if f.unsupported {
		return nil, &smithy.DeserializationError{Err: errors.New("invalid character '<' looking for beginning of value")}
	}
	if f.notEmulated {
		return nil, &smithy.OperationError{ServiceID: "SFN", OperationName: "RedriveExecution", Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusNotImplemented}},
				Err: &smithy.GenericAPIError{Code: "InternalFailure", Message: "The API for service stepfunctions is either not included in your current license plan or has not yet been emulated by LocalStack."}},
		}}
	}
	if t := aws.ToString(in.ClientToken); t == "" || len(t) > 64 {
		return nil, &smithy.GenericAPIError{Code: "ValidationException", Message: "clientToken"}
	}
	d, ok := f.execs[arn]
	switch {
	case !ok:
		return nil, &smithy.GenericAPIError{Code: "ExecutionDoesNotExist", Message: "no such execution"}
	case d.Status == sfntypes.ExecutionStatusRunning || d.Status == sfntypes.ExecutionStatusSucceeded:
		return nil, &smithy.GenericAPIError{Code: "ExecutionNotRedrivable", Message: "execution is " + string(d.Status)}
	case f.now.Sub(*d.StopDate) > 14*24*time.Hour:
		return nil, &smithy.GenericAPIError{Code: "ExecutionNotRedrivable", Message: "redrivable period exceeded"}
	}
	f.redrives[arn]++
	d.Status, d.StopDate, d.Error = sfntypes.ExecutionStatusRunning, nil, nil
	d.RedriveCount = aws.Int32(aws.ToInt32(d.RedriveCount) + 1)
	if f.lose {
		f.lose = false
		return nil, errors.New("read tcp 127.0.0.1:1234: connection reset by peer")
	}
	return &sfn.RedriveExecutionOutput{RedriveDate: &f.now}, nil
}

const execPrefix = "arn:aws:states:us-east-1:123456789012:execution:work:"

// setupExec is setup with execSFN as Step Functions.
func setupExec(t *testing.T) (bundle, *execSFN) {
	t.Helper()
	b := setup(t)
	now := time.Now()
	f := newExecSFN(now)
	b.in = New(b.sqs, f)
	b.in.sleepFunc = func(context.Context, time.Duration) bool { return true }
	b.in.nowFunc = func() time.Time { return now }
	return b, f
}

func TestRedriveExecutionsOnlyWhatAWorkerFailed(t *testing.T) {
	t.Parallel()
	b, f := setupExec(t)
	ctx := context.Background()
	dead := func(name, token, reason string) {
		b.deadLetter(t, envelope(map[string]any{"TaskToken": token, "executionArn": execPrefix + name}), reason)
	}
	f.add(execPrefix+"failed", sfntypes.ExecutionStatusFailed, time.Hour)
	dead("failed", "closed-1", "dead letter: job work failed: exited 75")
	dead("failed", "closed-2", "dead letter: job work failed: exited 75") // a second Map iteration
	f.add(execPrefix+"aborted", sfntypes.ExecutionStatusAborted, time.Hour)
	dead("aborted", "closed-3", "dead letter: boom")
	f.add(execPrefix+"timedout", sfntypes.ExecutionStatusTimedOut, time.Hour)
	dead("timedout", "closed-4", "dead letter: boom")
	f.add(execPrefix+"running", sfntypes.ExecutionStatusRunning, 0)
	dead("running", "closed-5", "dead letter: boom")
	f.add(execPrefix+"succeeded", sfntypes.ExecutionStatusSucceeded, time.Hour)
	dead("succeeded", "closed-6", "dead letter: boom")
	f.add(execPrefix+"old", sfntypes.ExecutionStatusFailed, 15*24*time.Hour)
	dead("old", "closed-7", "dead letter: boom")
	f.add(execPrefix+"moved", sfntypes.ExecutionStatusFailed, time.Hour)
	dead("moved", "closed-8", "") // SQS's redrive policy moved it: no worker failed it
	f.add(execPrefix+"open", sfntypes.ExecutionStatusFailed, time.Hour)
	dead("open", "open-9", "dead letter: boom")
	b.deadLetter(t, envelope(map[string]any{"TaskToken": "closed-10"}), "dead letter: no execution")

	dry, err := b.in.RedriveExecutions(ctx, b.q, RedriveOptions{DryRun: true})
	require.NoError(t, err)
	require.Equal(t, [4]int{2, 8, 0, 1}, [4]int{dry.Moved, dry.Skipped, dry.Left, dry.Executions}, "%+v", dry.Messages)
	require.Empty(t, f.redrives, "a dry run redrives nothing")
	l, err := b.in.List(ctx, b.q, 100)
	require.NoError(t, err)
	require.Equal(t, 10, l.Read, "a dry run deletes nothing")

	sum, err := b.in.RedriveExecutions(ctx, b.q, RedriveOptions{})
	require.NoError(t, err)
	require.Equal(t, [4]int{2, 8, 0, 1}, [4]int{sum.Moved, sum.Skipped, sum.Left, sum.Executions}, "%+v", sum.Messages)
	require.Equal(t, map[string]int{execPrefix + "failed": 1}, f.redrives, "one redrive per execution, only the worker-failed one")
	why := map[string]string{}
	for _, o := range sum.Messages {
		why[strings.TrimPrefix(o.ExecutionARN, execPrefix)] = o.Action + ": " + o.Why
	}
	require.Contains(t, why["aborted"], "stopped by a person")
	require.Contains(t, why["timedout"], "TIMED_OUT")
	require.Contains(t, why["old"], "14 days")
	require.Contains(t, why["moved"], "SQS moved it")
	require.Contains(t, why["open"], "still open")
	require.Contains(t, why[""], "no executionArn")
	l, err = b.in.List(ctx, b.q, 100)
	require.NoError(t, err)
	require.Equal(t, 8, l.Read, "the redriven execution's two dead letters are deleted, the others stay")

	// Run again: the execution is RUNNING now; nothing more is redriven.
	again, err := b.in.RedriveExecutions(ctx, b.q, RedriveOptions{})
	require.NoError(t, err)
	require.Zero(t, again.Executions)
	require.Equal(t, 1, f.redrives[execPrefix+"failed"])
}

func TestRedriveExecutionWhoseReplyWasLostIsReadBack(t *testing.T) {
	t.Parallel()
	b, f := setupExec(t)
	f.add(execPrefix+"failed", sfntypes.ExecutionStatusFailed, time.Hour)
	f.lose = true
	b.deadLetter(t, envelope(map[string]any{"TaskToken": "closed-1", "executionArn": execPrefix + "failed"}), "dead letter: boom")
	sum, err := b.in.RedriveExecutions(context.Background(), b.q, RedriveOptions{})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Executions, "%+v", sum.Messages)
	require.Equal(t, ActionExecutionRedriven, sum.Messages[0].Action)
	require.Equal(t, 1, f.redrives[execPrefix+"failed"])
}

func TestRedriveExecutionsSaysPlainlyWhenTheEndpointLacksTheCall(t *testing.T) {
	t.Parallel()
	for name, lacks := range map[string]func(*execSFN){
		"moto":       func(f *execSFN) { f.unsupported = true },
		"localstack": func(f *execSFN) { f.notEmulated = true },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, f := setupExec(t)
			lacks(f)
			requireNothingRedriven(t, b, f)
		})
	}
}

// requireNothingRedriven: two dead letters of FAILED executions, an endpoint without
// RedriveExecution; the redrive says so for both and deletes neither.
func requireNothingRedriven(t *testing.T, b bundle, f *execSFN) {
	t.Helper()
	for _, name := range []string{"a", "b"} {
		f.add(execPrefix+name, sfntypes.ExecutionStatusFailed, time.Hour)
		b.deadLetter(t, envelope(map[string]any{"TaskToken": "closed-" + name, "executionArn": execPrefix + name}), "dead letter: boom")
	}
	sum, err := b.in.RedriveExecutions(context.Background(), b.q, RedriveOptions{})
	require.ErrorIs(t, err, ErrRedriveUnsupported)
	require.Equal(t, 2, sum.Left)
	for _, o := range sum.Messages {
		require.Contains(t, o.Why, "does not implement Step Functions RedriveExecution")
	}
	l, err := b.in.List(context.Background(), b.q, 100)
	require.NoError(t, err)
	require.Equal(t, 2, l.Read, "nothing deleted")
}

package startjob_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/startjob"
	"github.com/taskbridge/taskbridge/internal/throttle"
)

const (
	token = "AAAAKgAAAAIAAAAAAAAAAVerySecretTaskToken"
	smArn = "arn:aws:states:us-east-1:123456789012:stateMachine:etl2"
)

func task() *jobs.Task {
	return &jobs.Task{
		Queue: "next", Job: "next", MessageID: "m-1", EventID: "5d2a7f4e-0b7c-4c3e-9a51-8f1e2d3c4b5a",
		DetailType: "etl-success", Source: "taskbridge",
		Detail:       json.RawMessage(`{"batchId":"b-1","fileCount":3,"note":"<a & b>"}`),
		ReceiveCount: 1, MaxReceiveCount: 5,
	}
}

// fakeSFN refuses what Step Functions refuses, and remembers executions by name.
type fakeSFN struct {
	mu    sync.Mutex
	execs map[string]string // name → input
	calls int
	// ErrFunc, when set, answers the call instead.
	ErrFunc func(in *sfn.StartExecutionInput) error
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func apiErr(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: code + " from fake"}
}

func (f *fakeSFN) StartExecution(_ context.Context, in *sfn.StartExecutionInput, _ ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.ErrFunc != nil {
		if err := f.ErrFunc(in); err != nil {
			return nil, err
		}
	}
	name, input := aws.ToString(in.Name), aws.ToString(in.Input)
	switch {
	case aws.ToString(in.StateMachineArn) != smArn:
		return nil, apiErr("StateMachineDoesNotExist")
	case !validName.MatchString(name):
		return nil, apiErr("InvalidName")
	case !json.Valid([]byte(input)):
		return nil, apiErr("InvalidExecutionInput")
	}
	if f.execs == nil {
		f.execs = map[string]string{}
	}
	if _, ok := f.execs[name]; ok {
		return nil, apiErr("ExecutionAlreadyExists")
	}
	f.execs[name] = input
	return &sfn.StartExecutionOutput{ExecutionArn: aws.String(strings.Replace(smArn, "stateMachine", "execution", 1) + ":" + name)}, nil
}

type bundle struct {
	sfn *fakeSFN
	m   *startjob.Metrics
	job *startjob.Job
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{sfn: &fakeSFN{}, m: startjob.NewMetrics(prometheus.NewRegistry())}
	var err error
	b.job, err = startjob.New("next", startjob.Config{StateMachine: "etl2", StateMachineARN: smArn}, b.sfn, zaptest.NewLogger(t), b.m)
	require.NoError(t, err)
	return b
}

func TestOneEventStartsOneExecution(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out, err := b.job.Run(context.Background(), task())
	require.NoError(t, err)
	want := "arn:aws:states:us-east-1:123456789012:execution:etl2:ev-5d2a7f4e-0b7c-4c3e-9a51-8f1e2d3c4b5a"
	require.Equal(t, startjob.Output{ExecutionArn: want, Started: true}, out)

	again, err := b.job.Run(context.Background(), task()) // redelivered
	require.NoError(t, err)
	require.Equal(t, startjob.Output{ExecutionArn: want, Started: false}, again)

	b2, err := json.Marshal(again)
	require.NoError(t, err)
	require.JSONEq(t, `{"executionArn": "`+want+`", "started": false}`, string(b2))

	require.Len(t, b.sfn.execs, 1)
	require.JSONEq(t, string(task().Detail), b.sfn.execs["ev-5d2a7f4e-0b7c-4c3e-9a51-8f1e2d3c4b5a"])
	require.Equal(t, 1.0, testutil.ToFloat64(b.m.Starts("next", "started")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.m.Starts("next", "already_started")))
}

func TestInputDropsTheToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := task()
	tk.Token = token
	tk.Detail = json.RawMessage(`{"TaskToken":"` + token + `","batchId":"b-1","html":"<&>"}`)
	_, err := b.job.Run(context.Background(), tk)
	require.NoError(t, err)
	for _, input := range b.sfn.execs {
		require.NotContains(t, input, token)
		require.JSONEq(t, `{"batchId":"b-1","html":"<&>"}`, input)
		require.Contains(t, input, "<&>", "not HTML-escaped")
	}
}

func TestExecutionNames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 78)
	tests := []struct{ id, want string }{
		{"5d2a7f4e-0b7c-4c3e-9a51-8f1e2d3c4b5a", "ev-5d2a7f4e-0b7c-4c3e-9a51-8f1e2d3c4b5a"},
		{"abc_DEF-09", "ev-abc_DEF-09"},
		{strings.Repeat("a", 77), "ev-" + strings.Repeat("a", 77)},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, startjob.ExecutionName(tt.id))
	}
	// Hashed: too long, unsafe characters, empty; all valid and distinct.
	seen := map[string]string{}
	for _, id := range []string{long, "a.b", "a:b", "a/b", "a b", "", "é", "ev-x", strings.Repeat("z", 1000)} {
		name := startjob.ExecutionName(id)
		require.Regexp(t, `^[A-Za-z0-9_-]{1,80}$`, name, id)
		require.Equal(t, name, startjob.ExecutionName(id), "deterministic")
		if prev, ok := seen[name]; ok {
			t.Fatalf("%q and %q share the name %s", prev, id, name)
		}
		seen[name] = id
	}
	require.True(t, strings.HasPrefix(startjob.ExecutionName("a.b"), "eh-"))
}

func FuzzExecutionName(f *testing.F) {
	for _, seed := range []string{"5d2a7f4e-0b7c-4c3e-9a51-8f1e2d3c4b5a", "", "a.b", strings.Repeat("x", 200), "\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		name := startjob.ExecutionName(id)
		if !validName.MatchString(name) {
			t.Fatalf("ExecutionName(%q) = %q, not a valid execution name", id, name)
		}
	})
}

func TestEventWithoutIDUsesTheMessageID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tk := task()
	tk.EventID = ""
	out, err := b.job.Run(context.Background(), tk)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(out.(startjob.Output).ExecutionArn, ":ev-m-1"))
}

func TestErrorsAreClassified(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		detail string
		kind   string // "" for a retry
		bad    bool
	}{
		{name: "invalid input", err: apiErr("InvalidExecutionInput"), kind: "InvalidExecutionInput"},
		{name: "invalid name", err: apiErr("InvalidName"), kind: "InvalidName"},
		{name: "no state machine", err: apiErr("StateMachineDoesNotExist"), kind: "StateMachineDoesNotExist"},
		{name: "invalid arn", err: apiErr("InvalidArn"), kind: "InvalidArn"},
		{name: "throttled", err: apiErr("ThrottlingException")},
		{name: "limit", err: apiErr("ExecutionLimitExceeded")},
		{name: "service error", err: apiErr("InternalServerError")},
		{name: "connection", err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")},
		{name: "detail not json", detail: `not json`, kind: "InvalidInput", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.sfn.ErrFunc = func(*sfn.StartExecutionInput) error { return tt.err }
			tk := task()
			if tt.detail != "" {
				tk.Detail = json.RawMessage(tt.detail)
			}
			_, err := b.job.Run(context.Background(), tk)
			require.Error(t, err)
			kind, bad, final := jobs.KindOf(err)
			require.Equal(t, tt.kind != "", final, "final: %v", err)
			require.Equal(t, tt.kind, kind)
			require.Equal(t, tt.bad, bad)
			if tt.detail == "" {
				require.Equal(t, 1.0, testutil.ToFloat64(b.m.Starts("next", "error")))
			}
		})
	}
}

func TestFakeRefusesWhatAWSRefuses(t *testing.T) {
	t.Parallel()
	f := &fakeSFN{}
	for _, in := range []*sfn.StartExecutionInput{
		{StateMachineArn: aws.String(smArn), Name: aws.String(""), Input: aws.String("{}")},
		{StateMachineArn: aws.String(smArn), Name: aws.String(strings.Repeat("a", 81)), Input: aws.String("{}")},
		{StateMachineArn: aws.String(smArn), Name: aws.String("a.b"), Input: aws.String("{}")},
		{StateMachineArn: aws.String(smArn), Name: aws.String("ok"), Input: aws.String("{")},
	} {
		_, err := f.StartExecution(context.Background(), in)
		require.Error(t, err, fmt.Sprint(aws.ToString(in.Name)))
	}
}

func TestValidateAndNew(t *testing.T) {
	t.Parallel()
	err := startjob.Config{StateMachineARN: "arn:aws:sqs:us-east-1:1:q"}.Validate()
	require.ErrorContains(t, err, "stateMachine is empty")
	require.ErrorContains(t, err, "not a state machine ARN")
	require.NoError(t, startjob.Config{StateMachine: "etl2"}.Validate(), "the ARN comes later")
	_, err = startjob.New("next", startjob.Config{StateMachine: "etl2"}, &fakeSFN{}, zaptest.NewLogger(t), nil)
	require.ErrorContains(t, err, "not resolved")
	require.Positive(t, startjob.Config{}.HandlerTimeout())
}

func TestSeriesExistBeforeTheFirstEvent(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := startjob.New("next", startjob.Config{StateMachine: "etl2", StateMachineARN: smArn}, &fakeSFN{}, zaptest.NewLogger(t), startjob.NewMetrics(reg))
	require.NoError(t, err)
	require.Equal(t, 3, testutil.CollectAndCount(reg, "worker_start_executions_total"))
}

// With a limiter, a throttled StartExecution is waited out within the message's
// time, and the consumer is told to give the message that long.
func TestThrottledStartIsWaitedOut(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		throttles := 20
		f := &fakeSFN{ErrFunc: func(*sfn.StartExecutionInput) error {
			if throttles > 0 {
				throttles--
				return apiErr("ThrottlingException")
			}
			return nil
		}}
		limits := throttle.NewSet("sfn", prometheus.NewRegistry(), throttle.Rates{Callback: 500, Start: 300})
		cfg := startjob.Config{StateMachine: "etl2", StateMachineARN: smArn, Limiter: limits.Get(throttle.StartExecution)}
		require.Equal(t, 15*time.Minute, cfg.HandlerTimeout())
		j, err := startjob.New("next", cfg, f, zaptest.NewLogger(t), nil)
		require.NoError(t, err)
		out, err := j.Run(t.Context(), task())
		require.NoError(t, err)
		require.True(t, out.(startjob.Output).Started)
		require.Equal(t, 21, f.calls)
		require.Less(t, cfg.Limiter.Rate(), 300.0)
	})
}

package callback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskbridge/taskbridge/internal/throttle"
)

// fakeSFN records calls and answers with err.
type fakeSFN struct {
	mu         sync.Mutex
	err        error
	throttles  int // the first calls answered ThrottlingException
	success    []*sfn.SendTaskSuccessInput
	failure    []*sfn.SendTaskFailureInput
	heartbeats int
	// status answers DescribeExecution ("" : ExecutionDoesNotExist); describeErr
	// wins over it.
	status      sfntypes.ExecutionStatus
	describeErr error
	describes   int
}

func (f *fakeSFN) DescribeExecution(_ context.Context, in *sfn.DescribeExecutionInput, _ ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.describes++
	switch {
	case aws.ToString(in.ExecutionArn) == "":
		return nil, &smithy.GenericAPIError{Code: "InvalidArn"} // AWS refuses an empty ARN
	case f.describeErr != nil:
		return nil, f.describeErr
	case f.status == "":
		return nil, &smithy.GenericAPIError{Code: "ExecutionDoesNotExist"}
	}
	return &sfn.DescribeExecutionOutput{Status: f.status, ExecutionArn: in.ExecutionArn}, nil
}

func (f *fakeSFN) SendTaskSuccess(_ context.Context, in *sfn.SendTaskSuccessInput, _ ...func(*sfn.Options)) (*sfn.SendTaskSuccessOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.success = append(f.success, in)
	return &sfn.SendTaskSuccessOutput{}, f.answer()
}

func (f *fakeSFN) SendTaskFailure(_ context.Context, in *sfn.SendTaskFailureInput, _ ...func(*sfn.Options)) (*sfn.SendTaskFailureOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failure = append(f.failure, in)
	return &sfn.SendTaskFailureOutput{}, f.answer()
}

func (f *fakeSFN) SendTaskHeartbeat(context.Context, *sfn.SendTaskHeartbeatInput, ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats++
	return &sfn.SendTaskHeartbeatOutput{}, f.answer()
}

// answer is the error of a call, under f.mu.
func (f *fakeSFN) answer() error {
	if f.throttles > 0 {
		f.throttles--
		return &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
	}
	return f.err
}

type fakeS3 struct {
	err  error
	puts map[string][]byte
}

func (f *fakeS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	b, _ := io.ReadAll(in.Body)
	f.puts[aws.ToString(in.Bucket)+"/"+aws.ToString(in.Key)] = b
	return &s3.PutObjectOutput{}, nil
}

func setup(t *testing.T, sfnErr error) (*StepFunctions, *fakeSFN, *fakeS3, *Metrics) {
	t.Helper()
	f, s := &fakeSFN{err: sfnErr}, &fakeS3{puts: map[string][]byte{}}
	m := NewMetrics(prometheus.NewRegistry())
	return New(Config{DataBucket: "data"}, f, s, zaptest.NewLogger(t), m), f, s, m
}

func TestClosedTaskCodesAreAFinishedOutcome(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			r, _, _, m := setup(t, &smithy.GenericAPIError{Code: code})
			err := r.Succeed(context.Background(), "tok", []byte(`{}`))
			require.True(t, IsTaskClosed(err))
			var byBehaviour interface{ TaskClosed() bool }
			require.True(t, errors.As(err, &byBehaviour) && byBehaviour.TaskClosed(), "recognisable without importing callback")
			require.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskSuccess", "task_closed")))
		})
	}
}

func TestOtherErrorsAreReturnedWrapped(t *testing.T) {
	t.Parallel()
	r, _, _, m := setup(t, &smithy.GenericAPIError{Code: "ThrottlingException"})
	err := r.Fail(context.Background(), "tok", "job.Kind", "cause")
	require.Error(t, err)
	require.False(t, IsTaskClosed(err))
	require.Contains(t, err.Error(), "SendTaskFailure")
	require.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskFailure", "error")))
}

func TestFailCutsErrorAndCauseToTheLimitsOnRuneBoundaries(t *testing.T) {
	t.Parallel()
	r, f, _, _ := setup(t, nil)
	code := strings.Repeat("é", 200)    // 400 bytes
	cause := strings.Repeat("名", 20000) // 60000 bytes
	require.NoError(t, r.Fail(context.Background(), "tok", code, cause))
	got := f.failure[0]
	require.LessOrEqual(t, len(aws.ToString(got.Error)), MaxErrorLen)
	require.LessOrEqual(t, len(aws.ToString(got.Cause)), MaxCauseLen)
	require.True(t, utf8.ValidString(aws.ToString(got.Error)))
	require.True(t, utf8.ValidString(aws.ToString(got.Cause)))
	require.Greater(t, len(aws.ToString(got.Cause)), MaxCauseLen-4, "cuts no more than a rune")
}

func TestOversizedOutputGoesThroughAClaimCheck(t *testing.T) {
	t.Parallel()
	r, f, s, m := setup(t, nil)
	big, _ := json.Marshal(map[string]string{"data": strings.Repeat("x", MaxOutputBytes)})
	require.NoError(t, r.Succeed(context.Background(), "tok", big))
	var pointer struct {
		ClaimCheck string `json:"claimCheck"`
		Size       int    `json:"size"`
	}
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(f.success[0].Output)), &pointer))
	require.True(t, strings.HasPrefix(pointer.ClaimCheck, "s3://data/claim-checks/"))
	require.Equal(t, len(big), pointer.Size)
	require.Equal(t, big, s.puts[strings.TrimPrefix(pointer.ClaimCheck, "s3://")])
	require.Equal(t, 1.0, testutil.ToFloat64(m.claimChecks))
}

func TestInvalidOutputOrTokenIsRefusedBeforeAnyCall(t *testing.T) {
	t.Parallel()
	r, f, _, _ := setup(t, nil)
	require.ErrorContains(t, r.Succeed(context.Background(), "tok", []byte(`{nope`)), "not valid JSON")
	require.ErrorContains(t, r.Succeed(context.Background(), "", []byte(`{}`)), "empty task token")
	require.Empty(t, f.success)
}

func TestTokensAreNeverLoggedWhole(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	f := &fakeSFN{err: &smithy.GenericAPIError{Code: "InvalidToken"}}
	r := New(Config{DataBucket: "data"}, f, &fakeS3{puts: map[string][]byte{}}, zap.New(core), NewMetrics(prometheus.NewRegistry()))
	token := "AAAA-secret-token-BBBB"
	_ = r.Succeed(context.Background(), token, []byte(`{}`))
	require.NotZero(t, logs.Len())
	for _, e := range logs.All() {
		for _, field := range e.Context {
			require.NotContains(t, field.String, token)
		}
	}
}

func TestKeepAliveBeatsUntilStoppedOrClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, f, _, _ := setup(t, nil)
		_, stop := r.KeepAlive(context.Background(), "tok", "", 10*time.Second, nil)
		time.Sleep(35 * time.Second)
		stop()
		require.Equal(t, 3, f.heartbeats)

		f.err = &smithy.GenericAPIError{Code: "TaskTimedOut"}
		_, stop = r.KeepAlive(context.Background(), "tok", "", 10*time.Second, nil)
		time.Sleep(100 * time.Second)
		synctest.Wait()
		require.Equal(t, 4, f.heartbeats, "a closed task ends the heartbeats")
		stop()

		ctx, stop := r.KeepAlive(context.Background(), "tok", "", 0, nil)
		require.Equal(t, context.Background(), ctx, "0 turns heartbeats off")
		require.NotPanics(t, stop)
	})
}

func TestCutKeepsWholeRunesWithinTheLimit(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		in   string
		n    int
		want string
	}{
		"shorter":                       {"abc", 5, "abc"},
		"exactly the limit":             {"abcde", 5, "abcde"},
		"ascii over":                    {"abcdef", 5, "abcde"},
		"limit inside a 2-byte rune":    {"abé", 3, "ab"},
		"limit after a 2-byte rune":     {"abéx", 4, "abé"},
		"limit inside a 4-byte rune":    {"a🍪", 4, "a"},
		"only a rune that does not fit": {"🍪", 3, ""},
		"empty":                         {"", 0, ""},
		"invalid UTF-8 is cut by bytes": {"a\xff\xffb", 2, "a\xff"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, cut(tc.in, tc.n))
		})
	}
}

func TestOutputAtTheLimitIsSentAsIs(t *testing.T) {
	t.Parallel()
	r, f, s, m := setup(t, nil)
	exact := []byte(`"` + strings.Repeat("x", MaxOutputBytes-2) + `"`)
	require.Len(t, exact, MaxOutputBytes)
	require.NoError(t, r.Succeed(context.Background(), "tok", exact))
	require.Equal(t, string(exact), aws.ToString(f.success[0].Output))
	require.Empty(t, s.puts)
	require.Zero(t, testutil.ToFloat64(m.claimChecks))
}

func TestClaimCheckThatCannotBeStoredIsAnError(t *testing.T) {
	t.Parallel()
	big := []byte(`"` + strings.Repeat("x", MaxOutputBytes) + `"`)
	cases := map[string]struct {
		bucket string
		s3Err  error
		why    string
	}{
		"S3 refuses":     {"data", errors.New("access denied"), "access denied"},
		"no data bucket": {"", nil, "no data bucket"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f, s := &fakeSFN{}, &fakeS3{err: tc.s3Err, puts: map[string][]byte{}}
			m := NewMetrics(prometheus.NewRegistry())
			r := New(Config{DataBucket: tc.bucket}, f, s, zaptest.NewLogger(t), m)
			err := r.Succeed(context.Background(), "tok", big)
			require.ErrorContains(t, err, tc.why)
			require.False(t, IsTaskClosed(err))
			require.Empty(t, f.success, "no truncated or missing output is ever sent")
			require.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskSuccess", "error")))
			require.Zero(t, testutil.ToFloat64(m.claimChecks))
		})
	}
}

func TestClaimCheckKeysAreContentAddressedUnderThePrefix(t *testing.T) {
	t.Parallel()
	f, s := &fakeSFN{}, &fakeS3{puts: map[string][]byte{}}
	r := New(Config{DataBucket: "data", ClaimCheckPrefix: "big/"}, f, s, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	big := []byte(`"` + strings.Repeat("y", MaxOutputBytes) + `"`)
	require.NoError(t, r.Succeed(context.Background(), "tok", big))
	require.NoError(t, r.Succeed(context.Background(), "tok2", big))
	require.Len(t, s.puts, 1, "a retry writes the same object")
	for key := range s.puts {
		require.Regexp(t, `^data/big/[0-9a-f]{64}\.json$`, key)
	}
	require.Equal(t, aws.ToString(f.success[0].Output), aws.ToString(f.success[1].Output))
}

func TestEveryAPICountsItsOutcomeAndDuration(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		err     error
		outcome string
	}{
		"ok":          {nil, "ok"},
		"task_closed": {&smithy.GenericAPIError{Code: "TaskDoesNotExist"}, "task_closed"},
		"error":       {&smithy.GenericAPIError{Code: "InternalFailure"}, "error"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, _, _, m := setup(t, tc.err)
			ctx := context.Background()
			_ = r.Succeed(ctx, "tok", []byte(`{}`))
			_ = r.Fail(ctx, "tok", "E", "c")
			_ = r.Heartbeat(ctx, "tok")
			for _, api := range []string{"SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"} {
				require.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues(api, tc.outcome)), api)
			}
			require.Equal(t, 3, testutil.CollectAndCount(m.duration), "one histogram per API")
		})
	}
}

func TestEmptyTokenIsRefusedByEveryAPI(t *testing.T) {
	t.Parallel()
	r, f, _, m := setup(t, nil)
	ctx := context.Background()
	require.ErrorContains(t, r.Fail(ctx, "", "E", "c"), "empty task token")
	require.ErrorContains(t, r.Heartbeat(ctx, ""), "empty task token")
	require.Empty(t, f.failure)
	require.Zero(t, f.heartbeats)
	require.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskHeartbeat", "error")))
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := Config{ClaimCheckPrefix: "/abs/"}.Validate()
	require.ErrorContains(t, err, "no data bucket")
	require.ErrorContains(t, err, "starts with /")
	require.NoError(t, Config{DataBucket: "data"}.Validate())
}

func TestKeepAliveGoesOnAfterATransientErrorAndStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.WarnLevel)
		f := &fakeSFN{err: &smithy.GenericAPIError{Code: "ServiceUnavailable"}}
		r := New(Config{DataBucket: "data"}, f, &fakeS3{puts: map[string][]byte{}}, zap.New(core), NewMetrics(prometheus.NewRegistry()))
		ctx, cancel := context.WithCancel(context.Background())
		_, stop := r.KeepAlive(ctx, "secret-token", "", time.Second, nil)
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		require.Equal(t, 2, f.heartbeats, "an error does not end the heartbeats")
		require.Equal(t, 2, logs.FilterMessage("heartbeat failed").Len())
		for _, e := range logs.All() {
			require.NotContains(t, e.ContextMap(), "token")
			require.NotContains(t, fmt.Sprint(e.ContextMap()), "secret-token")
		}

		cancel() // the job ends: no more heartbeats, even before stop
		time.Sleep(10 * time.Second)
		synctest.Wait()
		require.Equal(t, 2, f.heartbeats)
		stop()
		_, stop = r.KeepAlive(context.Background(), "", "", time.Second, nil)
		time.Sleep(5 * time.Second)
		stop()
		require.Equal(t, 2, f.heartbeats, "no heartbeats without a token")
	})
}

// A throttled callback is waited out and sent again under its API's limiter, the
// throttles counted, for as long as its context lives.
func TestThrottledCallbacksAreWaitedOut(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		limits := throttle.NewSet("sfn", reg, throttle.Rates{Callback: 500, Start: 300})
		f := &fakeSFN{throttles: 12}
		s := New(Config{DataBucket: "data", Limits: limits}, f, &fakeS3{}, zaptest.NewLogger(t), NewMetrics(reg))
		require.NoError(t, s.Succeed(t.Context(), "tok", []byte(`{}`)))
		require.Len(t, f.success, 13)
		require.Less(t, limits.Get("SendTaskSuccess").Rate(), 500.0)

		f.throttles = 5
		require.NoError(t, s.Fail(t.Context(), "tok", "E", "c"))
		require.NoError(t, s.Heartbeat(t.Context(), "tok"))
		require.Len(t, f.failure, 6)
		require.Equal(t, 1, f.heartbeats)
		n, err := testutil.GatherAndCount(reg, "worker_sfn_throttled_total")
		require.NoError(t, err)
		require.Equal(t, len(throttle.APIs), n, "a series per API (created with the Set: every API reads 0 before its first throttle)")

		f.throttles = 1 << 30
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		err = s.Succeed(ctx, "tok", []byte(`{}`))
		require.ErrorIs(t, err, context.DeadlineExceeded, "gives up only when its context ends")
		require.False(t, IsTaskClosed(err))
	})
}

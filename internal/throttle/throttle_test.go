package throttle

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	errThrottled = &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
	errClosed    = &smithy.GenericAPIError{Code: "TaskTimedOut", Message: "closed"}
)

func TestIsThrottle(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"nil":                   {nil, false},
		"ThrottlingException":   {errThrottled, true},
		"Throttling":            {&smithy.GenericAPIError{Code: "Throttling"}, true},
		"TooManyRequests":       {&smithy.GenericAPIError{Code: "TooManyRequestsException"}, true},
		"RequestLimitExceeded":  {&smithy.GenericAPIError{Code: "RequestLimitExceeded"}, true},
		"wrapped":               {errors.Join(errors.New("SendTaskSuccess"), errThrottled), true},
		"task closed":           {errClosed, false},
		"message says throttle": {errors.New("ThrottlingException: Rate exceeded"), false}, // codes, not text
		"deadline":              {context.DeadlineExceeded, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, IsThrottle(tc.err))
		})
	}
}

func TestLimiterTakesItsBurstThenSpacesTokensAtItsRate(t *testing.T) {
	t.Parallel()
	l := NewLimiter(10, 3)
	now := l.last
	for range 3 {
		require.Zero(t, l.take(now))
	}
	require.Equal(t, 100*time.Millisecond, l.take(now), "a 4th token is due in 1/rate")
	require.Zero(t, l.take(now.Add(100*time.Millisecond)))
	require.Zero(t, l.take(now.Add(time.Hour)), "refills")
	require.LessOrEqual(t, l.tokens, l.burst, "never more than burst")
}

func TestLimiterHalvesOnThrottleAndGrowsBackOnSuccess(t *testing.T) {
	t.Parallel()
	l := NewLimiter(500, 3000)
	l.Throttled()
	require.Equal(t, 250.0, l.Rate())
	require.Zero(t, l.tokens, "a throttle empties the bucket")
	require.Equal(t, 4*time.Millisecond, l.take(l.last), "the next token comes at the new rate")
	for range 20 {
		l.Throttled()
	}
	require.Equal(t, 1.0, l.Rate(), "floor of 1/s")
	n := 0
	for ; l.Rate() < 500; n++ {
		l.Succeeded()
	}
	require.Equal(t, 500.0, l.Rate(), "bounded by the configured rate")
	require.Less(t, n, 400, "recovers from the floor within a few hundred successes")

	slow := NewLimiter(0.2, 1)
	slow.Throttled()
	require.Equal(t, 0.2, slow.Rate(), "the floor is never above the configured rate")
}

func TestLimiterWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(1, 1)
		require.NoError(t, l.Wait(t.Context()))
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, l.Wait(ctx), context.DeadlineExceeded)
		require.NoError(t, l.Wait(t.Context()), "the token comes a second after the first")
	})
}

func FuzzLimiterStaysInBounds(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 0, 2, 1, 1, 1}, uint16(500), uint16(3000))
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2}, uint16(5), uint16(20))
	f.Fuzz(func(t *testing.T, ops []byte, rate, burst uint16) {
		if rate == 0 || burst == 0 {
			return
		}
		l := NewLimiter(float64(rate)/10, int(burst))
		now := l.last
		for _, op := range ops {
			switch op % 4 {
			case 0:
				if wait := l.take(now); wait > 0 {
					now = now.Add(wait)
					require.Zero(t, l.take(now), "a token is there when take said it would be")
				}
			case 1:
				l.Throttled()
			case 2:
				l.Succeeded()
			case 3:
				now = now.Add(time.Duration(op) * time.Millisecond)
			}
			require.GreaterOrEqual(t, l.Rate(), l.floor)
			require.LessOrEqual(t, l.Rate(), l.max)
			require.LessOrEqual(t, l.tokens, l.burst)
			require.GreaterOrEqual(t, l.tokens, 0.0)
		}
	})
}

// fakeCall answers throttled times with a throttle error, then with then.
type fakeCall struct {
	throttled int
	then      error
	calls     int
	deadlines []bool
}

func (f *fakeCall) call(ctx context.Context) error {
	f.calls++
	_, ok := ctx.Deadline()
	f.deadlines = append(f.deadlines, ok)
	if f.calls <= f.throttled {
		return errThrottled
	}
	return f.then
}

func TestDoWaitsThrottlingOut(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		call      fakeCall
		wantErr   error
		wantCalls int
	}{
		"ok at once":                   {fakeCall{}, nil, 1},
		"ok after 30 throttles":        {fakeCall{throttled: 30}, nil, 31},
		"other error at once":          {fakeCall{then: errClosed}, errClosed, 1},
		"other error after a throttle": {fakeCall{throttled: 1, then: errClosed}, errClosed, 2},
		"context error of the attempt": {fakeCall{then: context.DeadlineExceeded}, context.DeadlineExceeded, 1},
		"no limiter: one attempt":      {fakeCall{throttled: 3}, errThrottled, 1},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var l *Limiter
				if name != "no limiter: one attempt" {
					l = NewLimiter(100, 10)
				}
				err := Do(t.Context(), l, time.Second, tc.call.call)
				if tc.wantErr == nil {
					require.NoError(t, err)
				} else {
					require.ErrorIs(t, err, tc.wantErr)
				}
				require.Equal(t, tc.wantCalls, tc.call.calls)
				require.NotContains(t, tc.call.deadlines, false, "every attempt has its own timeout")
				if l != nil && tc.call.throttled > 0 {
					require.Less(t, l.Rate(), 100.0, "throttles lowered the rate")
				}
			})
		})
	}
}

func TestDoGivesUpWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		f := fakeCall{throttled: 1 << 30}
		err := Do(ctx, NewLimiter(500, 3000), 10*time.Second, f.call)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.True(t, IsThrottle(err), "the last throttle answer is kept")
		require.Greater(t, f.calls, 10)
		require.Less(t, f.calls, 200, "backoff and the lowered rate space the attempts out")
	})
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	t.Parallel()
	for n := range 100 {
		d := backoff(n)
		require.Positive(t, d)
		require.LessOrEqual(t, d, backoffCap)
		if n < 3 {
			require.LessOrEqual(t, d, backoffBase<<n)
		}
	}
}

func TestLeaveThrottlesRetriesAllButThrottles(t *testing.T) {
	t.Parallel()
	r := LeaveThrottles(retry.NewStandard())
	require.False(t, r.IsErrorRetryable(errThrottled))
	require.True(t, r.IsErrorRetryable(&smithy.GenericAPIError{Code: "RequestTimeoutException"}))
	require.False(t, r.IsErrorRetryable(errClosed))
	release, err := r.GetAttemptToken(t.Context())
	require.NoError(t, err)
	require.NoError(t, release(nil))
}

func TestSetMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	s := NewSet("sfn", reg)
	l := s.Add("SendTaskSuccess", 500, 3000)
	s.Add("StartExecution", 300, 1300)
	require.Same(t, l, s.Get("SendTaskSuccess"))
	require.Nil(t, s.Get("SendTaskFailure"))
	require.Nil(t, (*Set)(nil).Get("SendTaskSuccess"))
	l.Throttled()
	require.Equal(t, 1.0, testutil.ToFloat64(s.throttled.WithLabelValues("SendTaskSuccess")))
	n, err := testutil.GatherAndCount(reg, "worker_sfn_rate_limit")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP worker_sfn_rate_limit Current client-side rate limit of an API, calls per second (lowered on throttle answers, raised on successes).
# TYPE worker_sfn_rate_limit gauge
worker_sfn_rate_limit{api="SendTaskSuccess"} 250
worker_sfn_rate_limit{api="StartExecution"} 300
`), "worker_sfn_rate_limit"))
}

package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
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

// fakeClock is a limiter's clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }
func onFakeClock(l *Limiter) *fakeClock      { c := &fakeClock{t: l.last}; l.now = c.Now; return c }
func approx(t *testing.T, want, got float64, msg string) {
	t.Helper()
	require.InEpsilon(t, want, got, 0.02, msg)
}

func TestLimiterHalvesWhenLittleWasAccepted(t *testing.T) {
	t.Parallel()
	l := NewLimiter(500, 3000)
	c := onFakeClock(l)
	l.Throttled(c.Now())
	require.Equal(t, 250.0, l.Rate())
	require.Zero(t, l.tokens, "a throttle empties the bucket")
	require.Equal(t, 4*time.Millisecond, l.take(l.last), "the next token comes at the new rate")
	for range 20 {
		c.Advance(time.Millisecond)
		l.Throttled(c.Now())
	}
	require.Equal(t, 1.0, l.Rate(), "floor of 1/s")

	slow := NewLimiter(0.2, 1)
	slow.Throttled(slow.now())
	require.Equal(t, 0.2, slow.Rate(), "the floor is never above the configured rate")
}

func TestLimiterLowersOnceForAWaveOfAnswers(t *testing.T) {
	t.Parallel()
	l := NewLimiter(500, 3000)
	c := onFakeClock(l)
	sent := c.Now()
	c.Advance(10 * time.Millisecond)
	for range 30 { // 30 calls sent together, all throttled
		l.Throttled(sent)
	}
	require.Equal(t, 250.0, l.Rate(), "one cut for calls sent before it")
	c.Advance(time.Millisecond)
	l.Throttled(c.Now().Add(-time.Microsecond))
	require.Equal(t, 125.0, l.Rate(), "a call sent after the cut that is throttled cuts again")
}

func TestLimiterCutsToTheAcceptedRate(t *testing.T) {
	t.Parallel()
	l := NewLimiter(500, 3000)
	c := onFakeClock(l)
	for range 100 { // 20 s of 5 calls a second accepted
		c.Advance(200 * time.Millisecond)
		l.Succeeded()
	}
	l.Throttled(c.Now())
	require.Equal(t, 250.0, l.Rate(), "a halving, while that is above the accepted rate")
	for range 10 { // each call sent after the last cut, and throttled
		c.Advance(time.Millisecond)
		l.Throttled(c.Now())
	}
	// Sampled just after a success the moving average reads a little high.
	require.InEpsilon(t, cut*5, l.Rate(), 0.1, "down to cut × the accepted rate, and no further")
}

func TestLimiterProbesUpwardAFewPercentASecond(t *testing.T) {
	t.Parallel()
	for _, quota := range []float64{5, 500} {
		l := NewLimiter(quota*10, int(quota*6))
		c := onFakeClock(l)
		l.rate = quota
		for elapsed := time.Duration(0); elapsed < 10*time.Second; { // calls at the rate
			step := time.Duration(float64(time.Second) / l.Rate())
			c.Advance(step)
			elapsed += step
			l.Succeeded()
		}
		approx(t, quota*math.Exp(10*probe), l.Rate(), fmt.Sprintf("at %g/s: probe of itself a second", quota))
	}
	l := NewLimiter(5, 30)
	for range 1000 {
		l.Succeeded()
	}
	require.Equal(t, 5.0, l.Rate(), "bounded by the configured rate")
}

// simulate sends calls through l from callers at once against a service's token
// bucket (burst, refill perSecond; every call answered after latency), each caller as Do does (wait for a token,
// call; on a throttle, back off and call again), on l's fake clock. It returns the
// time from the first call to the last one accepted, and the calls made.
func simulate(l *Limiter, c *fakeClock, calls, callers int, burst, perSecond float64, latency time.Duration) (time.Duration, int) {
	type caller struct {
		at       time.Time
		inFlight bool
		ok       bool
		sent     time.Time
		tries    int
	}
	cs := make([]*caller, callers)
	for i := range cs {
		cs[i] = &caller{at: c.Now()}
	}
	tokens, refilled := burst, c.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	var first, last time.Time
	started, done, made := 0, 0, 0
	for done < calls {
		next := cs[0]
		for _, x := range cs[1:] {
			if x.at.Before(next.at) {
				next = x
			}
		}
		if next.at.After(c.Now()) {
			c.Advance(next.at.Sub(c.Now()))
		}
		now := c.Now()
		switch {
		case next.inFlight && next.ok:
			next.inFlight = false
			l.Succeeded()
			done++
			last = now
			next.tries = 0
		case next.inFlight:
			next.inFlight = false
			l.Throttled(next.sent)
			next.at = now.Add(time.Duration(rng.Int64N(int64(min(backoffCap, backoffBase<<next.tries)))) + 1)
			next.tries++
		case !next.inFlight && next.tries == 0 && started == calls:
			next.at = now.Add(time.Hour) // no call left for it
		default:
			if wait := l.take(now); wait > 0 {
				next.at = now.Add(wait)
				continue
			}
			if next.tries == 0 {
				started++
			}
			made++
			if first.IsZero() {
				first = now
			}
			tokens = min(burst, tokens+now.Sub(refilled).Seconds()*perSecond)
			refilled = now
			next.inFlight, next.sent, next.ok = true, now, tokens >= 1
			next.at = now.Add(latency) // a throttle answer too: calls sent meanwhile are throttled in a wave
			if next.ok {
				tokens--
			}
		}
	}
	return last.Sub(first), made
}

// The quota burst, simulated: 2,000 callbacks at once at a bucket of 20 and
// 5 a second take what the bucket allows, (2,000 − 20) / 5 s, within 10 %, with at
// most 1.1 calls a callback. And at Step Functions' own bucket (3,000, 500/s).
func TestLimiterHoldsAQuotaBurstAtTheBucketsRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		calls, callers   int
		burst, perSecond float64
		latency          time.Duration
	}{
		{2000, 16, 20, 5, 30 * time.Millisecond},
		{2000, 4, 20, 5, 30 * time.Millisecond},
		{2000, 64, 20, 5, 30 * time.Millisecond},
		{12000, 64, 3000, 500, 30 * time.Millisecond},
	} {
		l := NewLimiter(500, 3000)
		c := onFakeClock(l)
		span, made := simulate(l, c, tc.calls, tc.callers, tc.burst, tc.perSecond, tc.latency)
		ideal := time.Duration((float64(tc.calls) - tc.burst) / tc.perSecond * float64(time.Second))
		t.Logf("%d calls, %d callers, bucket %g / %g per s: %s (ideal %s, %.3f×), %.3f calls a call", tc.calls, tc.callers, tc.burst, tc.perSecond,
			span.Round(100*time.Millisecond), ideal, span.Seconds()/ideal.Seconds(), float64(made)/float64(tc.calls))
		require.LessOrEqual(t, span.Seconds(), 1.1*ideal.Seconds(), "within 10 %% of what the bucket allows")
		require.LessOrEqual(t, float64(made), 1.1*float64(tc.calls), "calls a call")
	}
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
		c := onFakeClock(l)
		now := l.last
		for _, op := range ops {
			switch op % 4 {
			case 0:
				if wait := l.take(now); wait > 0 {
					now = now.Add(wait)
					require.Zero(t, l.take(now), "a token is there when take said it would be")
				}
			case 1:
				c.t = now
				l.Throttled(now.Add(-time.Duration(op) * time.Millisecond))
			case 2:
				c.t = now
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
	s := NewSet("sfn", reg, Rates{Callback: 500, Start: 300})
	for _, api := range APIs {
		require.NotNil(t, s.Get(api), "every API has its limiter: none is silently unlimited")
	}
	require.NotSame(t, s.Get(SendTaskSuccess), s.Get(SendTaskFailure))
	require.Equal(t, 3000.0, s.Get(SendTaskFailure).burst, "the documented 3,000/500 bucket")
	require.Equal(t, 1300.0, s.Get(StartExecution).burst, "the documented 1,300/300 bucket")
	require.Nil(t, (*Set)(nil).Get(SendTaskSuccess))
	l := s.Get(SendTaskSuccess)
	l.Throttled(time.Now())
	require.Equal(t, 1.0, testutil.ToFloat64(s.throttled.WithLabelValues("SendTaskSuccess")))
	n, err := testutil.GatherAndCount(reg, "worker_sfn_rate_limit")
	require.NoError(t, err)
	require.Equal(t, len(APIs), n)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP worker_sfn_rate_limit Current client-side rate limit of an API, calls per second (lowered on throttle answers, raised on successes).
# TYPE worker_sfn_rate_limit gauge
worker_sfn_rate_limit{api="SendTaskSuccess"} 250
worker_sfn_rate_limit{api="SendTaskFailure"} 500
worker_sfn_rate_limit{api="SendTaskHeartbeat"} 500
worker_sfn_rate_limit{api="StartExecution"} 300
`), "worker_sfn_rate_limit"))
}

package throttle

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
)

// sdkThrottles are the codes the AWS SDK's retryer counts as throttling (retry's
// DefaultThrottleErrorCodes: ThrottlingException, Throttling, TooManyRequestsException,
// RequestLimitExceeded, SlowDown, ...), read by error code, never by message.
var sdkThrottles = retry.ThrottleErrorCode{Codes: retry.DefaultThrottleErrorCodes}

// IsThrottle reports whether err is a service's answer that the call's rate is over
// its quota (Step Functions says ThrottlingException).
func IsThrottle(err error) bool {
	return err != nil && sdkThrottles.IsErrorThrottle(err) == aws.TrueTernary
}

// Backoff after a throttle answer: full jitter on an exponential from backoffBase,
// capped at backoffCap.
const (
	backoffBase = 100 * time.Millisecond
	backoffCap  = 5 * time.Second
)

// Do calls fn, each attempt under its own attemptTimeout, after waiting for a token
// of l. With a nil l it calls fn once and returns its answer (no limit configured:
// the SDK's retryer deals with throttles as before). A throttle answer lowers l's rate; Do then backs off and
// tries again, for as long as ctx lives: throttling delays a call, it never fails
// it. Any other answer, nil or not, is returned at once (the SDK's retryer has
// already retried what else is transient). When ctx ends first, Do returns an error
// wrapping ctx's error and, if an attempt was throttled, the last throttle answer.
func Do(ctx context.Context, l *Limiter, attemptTimeout time.Duration, fn func(context.Context) error) error {
	if l == nil {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		return fn(actx)
	}
	var last error
	for n := 0; ; n++ {
		if err := l.Wait(ctx); err != nil {
			return ended(err, last)
		}
		sent := l.now()
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := fn(actx)
		cancel()
		if !IsThrottle(err) {
			if err == nil {
				l.Succeeded()
			}
			return err
		}
		last = err
		l.Throttled(sent)
		t := time.NewTimer(backoff(n))
		select {
		case <-ctx.Done():
			t.Stop()
			return ended(ctx.Err(), last)
		case <-t.C:
		}
	}
}

func ended(ctxErr, last error) error {
	if last == nil {
		return ctxErr
	}
	return fmt.Errorf("still throttled when the call's time ran out: %w", errors.Join(ctxErr, last))
}

// backoff is the wait after the n-th throttled attempt (n from 0): uniform in
// (0, min(cap, base·2ⁿ)], so a fleet's retries spread out.
func backoff(n int) time.Duration {
	ceil := backoffCap
	if n < 16 {
		ceil = min(backoffCap, backoffBase<<n)
	}
	return time.Duration(rand.Int64N(int64(ceil))) + 1
}

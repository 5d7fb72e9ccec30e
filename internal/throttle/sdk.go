package throttle

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// LeaveThrottles wraps an SDK retryer so that it does not retry throttle answers:
// they are returned to Do, which waits them out on its Limiter. The standard
// retryer would retry a throttle twice more and draw each retry from its retry
// quota (a token bucket of 500, 5 a throttle); a long burst empties that quota and
// every call then fails at once with "retry quota exceeded". Everything else
// (5xx, connection errors, the attempt count, AWS_RETRY_MODE) stays the retryer's.
func LeaveThrottles(r aws.Retryer) aws.RetryerV2 {
	return leaveThrottles{r}
}

type leaveThrottles struct{ aws.Retryer }

func (r leaveThrottles) IsErrorRetryable(err error) bool {
	return !IsThrottle(err) && r.Retryer.IsErrorRetryable(err)
}

func (r leaveThrottles) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if v2, ok := r.Retryer.(aws.RetryerV2); ok {
		return v2.GetAttemptToken(ctx)
	}
	return r.GetInitialToken(), nil
}

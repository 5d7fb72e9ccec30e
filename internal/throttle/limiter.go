// Package throttle keeps calls to a rate-limited API (Step Functions' token buckets)
// under its quota: an adaptive client-side token bucket per API (Limiter), a
// classifier of throttle answers (IsThrottle) and a retry loop (Do) that waits
// throttling out for as long as its context lives instead of failing the call. It
// imports no sibling package.
package throttle

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Adaptation: a throttle answer halves the rate; each success raises it by 1/50 of
// itself, up to the configured rate. The raise is proportional rather than a fixed
// step so it behaves the same at 500/s as at 5/s: back from 1 % of the maximum in
// about 230 successes, and at a steady quota about one throttle per 35 successes
// (a fixed step small enough for 5/s would take minutes to climb back to 500/s).
const (
	decrease = 0.5
	increase = 1.0 / 50
)

// Limiter is a token bucket whose rate adapts to the service's answers. Safe for
// concurrent use; when not throttled a Wait is one uncontended lock and no
// allocation.
type Limiter struct {
	max   float64 // configured rate, tokens per second
	floor float64 // the rate never drops below this
	burst float64

	throttled prometheus.Counter // nil: not counted

	mu     sync.Mutex
	rate   float64 // current rate
	tokens float64
	last   time.Time // of the last refill
}

// NewLimiter returns a limiter of perSecond (> 0) tokens a second that holds at
// most burst (>= 1) tokens, full at the start.
func NewLimiter(perSecond float64, burst int) *Limiter {
	if perSecond <= 0 || burst < 1 {
		panic("throttle.NewLimiter: rate must be > 0 and burst >= 1")
	}
	return &Limiter{max: perSecond, floor: math.Min(perSecond, 1), burst: float64(burst), rate: perSecond, tokens: float64(burst), last: time.Now()}
}

// Wait blocks until a token is free or ctx ends (then it returns ctx's error).
func (l *Limiter) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var timer *time.Timer
	for {
		wait := l.take(time.Now())
		if wait == 0 {
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		// Every waiter polls again when the next token is due: a throttle answer
		// meanwhile (a lower rate, an emptied bucket) applies to waiters as well.
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// take takes a token at now and returns 0, or returns how long until one is due.
func (l *Limiter) take(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if dt := now.Sub(l.last).Seconds(); dt > 0 {
		l.tokens = math.Min(l.burst, l.tokens+dt*l.rate)
		l.last = now
	}
	if l.tokens >= 1-1e-9 { // what the rounded-up wait below refilled
		l.tokens = max(0, l.tokens-1)
		return 0
	}
	return max(time.Duration(math.Ceil((1-l.tokens)/l.rate*float64(time.Second))), time.Millisecond)
}

// Throttled tells the limiter the service refused a call for its rate: the rate
// halves (not below 1/s, or the configured rate if lower) and the bucket empties,
// so what was saved up while the rate was too high is not spent at once.
func (l *Limiter) Throttled() {
	if l.throttled != nil {
		l.throttled.Inc()
	}
	l.mu.Lock()
	l.rate = math.Max(l.floor, l.rate*decrease)
	l.tokens = 0
	l.mu.Unlock()
}

// Succeeded tells the limiter a call went through: the rate grows back towards the
// configured one.
func (l *Limiter) Succeeded() {
	l.mu.Lock()
	if l.rate < l.max {
		l.rate = math.Min(l.max, l.rate*(1+increase))
	}
	l.mu.Unlock()
}

// Rate is the current rate in tokens per second.
func (l *Limiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rate
}

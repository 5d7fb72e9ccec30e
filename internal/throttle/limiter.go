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

// Adaptation. A token bucket (Step Functions') that is empty admits its refill
// rate, so the rate of calls it accepted lately is the best guess of what it
// allows. A throttle answer lowers the rate to cut × that accepted rate, or halves
// it if that is higher (little was accepted: a start at the configured rate, or
// after a pause). Only one answer lowers it per overshoot: answers to calls sent
// before the last cut were sent at the old rate and say nothing new (halving on
// each, as before, collapsed the rate when a wave of calls in flight was throttled
// at once, and climbing back left the service's bucket full and unused). Each
// success raises the rate by probe/rate of itself, probe of itself a second while
// calls flow at the rate, the same at 5/s as at 500/s: the rate comes back to the
// quota a few seconds after a cut (the service's bucket, refilled meanwhile, is
// not overrun), overshoots it slowly, and a higher quota (fewer processes sharing
// it) is found, doubling in 35 s, without throttling every few seconds.
const (
	halve    = 0.5
	cut      = 0.9
	probe    = 0.02            // relative raise per second, at the rate
	accepted = 2 * time.Second // time constant of the accepted rate's moving average
)

// Limiter is a token bucket whose rate adapts to the service's answers. Safe for
// concurrent use; when not throttled a Wait is one uncontended lock and no
// allocation.
type Limiter struct {
	max   float64 // configured rate, tokens per second
	floor float64 // the rate never drops below this
	burst float64

	throttled prometheus.Counter // nil: not counted
	now       func() time.Time

	mu     sync.Mutex
	rate   float64 // current rate
	cutAt  time.Time
	tokens float64
	last   time.Time // of the last refill
	// Calls accepted lately: an exponentially decaying count (time constant
	// accepted) as of okAt; okCount/accepted is the rate.
	okCount float64
	okAt    time.Time
}

// NewLimiter returns a limiter of perSecond (> 0) tokens a second that holds at
// most burst (>= 1) tokens, full at the start.
func NewLimiter(perSecond float64, burst int) *Limiter {
	if perSecond <= 0 || burst < 1 {
		panic("throttle.NewLimiter: rate must be > 0 and burst >= 1")
	}
	now := time.Now()
	return &Limiter{max: perSecond, floor: math.Min(perSecond, 1), burst: float64(burst), now: time.Now,
		rate: perSecond, tokens: float64(burst), last: now, okAt: now}
}

// Wait blocks until a token is free or ctx ends (then it returns ctx's error).
func (l *Limiter) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var timer *time.Timer
	for {
		wait := l.take(l.now())
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

// Throttled tells the limiter the service refused a call sent at sent for its
// rate. Unless the rate was lowered after sent, it drops to cut × the rate
// accepted lately, or to half if that is higher (never up, never below 1/s or the
// configured rate if lower). The bucket empties either way, so what was saved up
// while the rate was too high is not spent at once.
func (l *Limiter) Throttled(sent time.Time) {
	if l.throttled != nil {
		l.throttled.Inc()
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = 0
	if sent.Before(l.cutAt) {
		return
	}
	target := max(l.rate*halve, cut*l.decayed(now)/accepted.Seconds())
	l.rate = max(l.floor, min(l.rate, target))
	l.cutAt = now
}

// Succeeded tells the limiter a call went through: it counts as accepted, and the
// rate grows towards the configured one by probe/rate of itself.
func (l *Limiter) Succeeded() {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.okCount = l.decayed(now) + 1
	l.okAt = now
	l.rate = min(l.max, l.rate+probe)
}

// decayed is the count of calls accepted lately, at now.
func (l *Limiter) decayed(now time.Time) float64 {
	dt := now.Sub(l.okAt)
	if dt <= 0 {
		return l.okCount
	}
	return l.okCount * math.Exp(-dt.Seconds()/accepted.Seconds())
}

// Rate is the current rate in tokens per second.
func (l *Limiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rate
}

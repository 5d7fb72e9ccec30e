package telemetry

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Readiness tracks whether the worker can do its work: every consumer is polling,
// its last receive did not fail, and it got an answer (an accepted long poll or a
// receive) recently. Each consumer is tracked on its own, so one queue's failure
// is not hidden by another's success. Safe for concurrent use.
type Readiness struct {
	mu          sync.Mutex
	staleAfter  time.Duration
	now         func() time.Time
	consumers   map[string]*consumerHealth
	lastOK      time.Time // any AWS call
	lastErr     error     // of ObserveAWS: calls that are no consumer's
	lastSuccess prometheus.Gauge
}

// consumerHealth is one consumer's state; guarded by Readiness.mu.
type consumerHealth struct {
	polling bool
	lastOK  time.Time // last accepted or successful receive
	err     error     // last receive's error, nil once one succeeds again
}

// NewReadiness returns a tracker: not ready until a consumer polls and its receive
// is accepted; stale when a consumer got no answer for staleAfter.
func NewReadiness(staleAfter time.Duration, reg prometheus.Registerer) *Readiness {
	r := &Readiness{
		staleAfter: staleAfter, now: time.Now, consumers: map[string]*consumerHealth{},
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "worker_last_aws_success_timestamp_seconds", Help: "Unix time of the last successful AWS call."}),
	}
	// Computed at scrape time, so it says what /readyz would say now.
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "worker_ready", Help: "1 when /readyz answers ready."}, func() float64 {
		if r.Ready() != nil {
			return 0
		}
		return 1
	})
	reg.MustRegister(ready, r.lastSuccess)
	return r
}

func (r *Readiness) consumer(queue string) *consumerHealth {
	c, ok := r.consumers[queue]
	if !ok {
		c = &consumerHealth{}
		r.consumers[queue] = c
	}
	return c
}

// SetPolling records whether the consumer of queue is polling: false when it
// stopped.
func (r *Readiness) SetPolling(queue string, polling bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.consumer(queue).polling = polling
}

// ObserveReceive records a receive of the consumer of queue: its error, or nil
// when it succeeded or the service accepted its long poll. The consumer polls.
func (r *Readiness) ObserveReceive(queue string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.consumer(queue)
	c.polling = true
	c.err = err
	if err == nil {
		c.lastOK = r.now()
		r.succeeded(c.lastOK)
	}
}

// ObserveAWS records the result of an AWS call that is no consumer's receive.
func (r *Readiness) ObserveAWS(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = err
	if err == nil {
		r.succeeded(r.now())
	}
}

func (r *Readiness) succeeded(at time.Time) {
	r.lastOK = at
	r.lastSuccess.Set(float64(at.Unix()))
}

// Ready returns nil when ready, or why not, naming every consumer that is not.
func (r *Readiness) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.check()
}

func (r *Readiness) check() error {
	if len(r.consumers) == 0 {
		return fmt.Errorf("no consumer started")
	}
	if r.lastErr != nil {
		return fmt.Errorf("last AWS call failed: %w", r.lastErr)
	}
	queues := make([]string, 0, len(r.consumers))
	for q := range r.consumers {
		queues = append(queues, q)
	}
	slices.Sort(queues)
	var errs []error
	now := r.now()
	for _, q := range queues {
		c := r.consumers[q]
		lastOK := c.lastOK
		if lastOK.IsZero() {
			lastOK = r.lastOK // a consumer that reports no receives of its own
		}
		switch {
		case !c.polling:
			errs = append(errs, fmt.Errorf("consumer %s is not polling", q))
		case c.err != nil:
			errs = append(errs, fmt.Errorf("consumer %s: last receive failed: %w", q, c.err))
		case lastOK.IsZero():
			errs = append(errs, fmt.Errorf("consumer %s: no receive accepted yet", q))
		case now.Sub(lastOK) > r.staleAfter:
			errs = append(errs, fmt.Errorf("consumer %s: no AWS answer for %s", q, now.Sub(lastOK).Round(time.Second)))
		}
	}
	return errors.Join(errs...)
}

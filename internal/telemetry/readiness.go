package telemetry

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Readiness tracks whether the worker can do its work: every registered poller is
// polling, and the last AWS call succeeded recently. Safe for concurrent use.
type Readiness struct {
	mu          sync.Mutex
	staleAfter  time.Duration
	now         func() time.Time
	polling     map[string]bool
	lastOK      time.Time
	lastErr     error
	lastSuccess prometheus.Gauge
}

// NewReadiness returns a tracker: not ready until a poller polls and an AWS call
// succeeds; stale when no call succeeded for staleAfter.
func NewReadiness(staleAfter time.Duration, reg prometheus.Registerer) *Readiness {
	r := &Readiness{
		staleAfter: staleAfter, now: time.Now, polling: map[string]bool{},
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

// SetPolling records whether the poller of queue is polling.
func (r *Readiness) SetPolling(queue string, polling bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.polling[queue] = polling
}

// ObserveAWS records the result of an AWS call.
func (r *Readiness) ObserveAWS(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = err
	if err == nil {
		r.lastOK = r.now()
		r.lastSuccess.Set(float64(r.lastOK.Unix()))
	}
}

// Ready returns nil when ready, or why not.
func (r *Readiness) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.check()
}

func (r *Readiness) check() error {
	if len(r.polling) == 0 {
		return fmt.Errorf("no consumer started")
	}
	for q, p := range r.polling {
		if !p {
			return fmt.Errorf("consumer %s is not polling", q)
		}
	}
	switch {
	case r.lastErr != nil:
		return fmt.Errorf("last AWS call failed: %w", r.lastErr)
	case r.lastOK.IsZero():
		return fmt.Errorf("no AWS call succeeded yet")
	case r.now().Sub(r.lastOK) > r.staleAfter:
		return fmt.Errorf("no AWS call succeeded for %s", r.now().Sub(r.lastOK).Round(time.Second))
	}
	return nil
}

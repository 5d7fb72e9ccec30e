package callback

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the Step Functions callbacks.
type Metrics struct {
	calls       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	claimChecks prometheus.Counter
}

// NewMetrics registers the callback metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_callbacks_total", Help: "Step Functions callbacks by API and outcome (ok, task_closed, cancelled, error).",
		}, []string{"api", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "worker_callback_duration_seconds", Help: "Latency of Step Functions callbacks.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2.5, 10),
		}, []string{"api"}),
		claimChecks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "worker_claim_checks_total", Help: "Payloads over Step Functions' 256 KiB (task outputs, execution inputs) stored in S3 and sent as a pointer.",
		}),
	}
	reg.MustRegister(m.calls, m.duration, m.claimChecks)
	return m
}

// outcome names how a call made on ctx ended. A call abandoned because its own ctx
// was cancelled (a heartbeat whose job ended, a stop) is "cancelled", not "error":
// nothing failed, and the callbacks-failing alert watches "error". A deadline that
// passed is still an error: the service did not answer in time.
func outcome(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return "ok"
	case IsTaskClosed(err):
		return "task_closed"
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return "cancelled"
	default:
		return "error"
	}
}

package callback

import "github.com/prometheus/client_golang/prometheus"

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
			Name: "worker_callbacks_total", Help: "Step Functions callbacks by API and outcome (ok, task_closed, error).",
		}, []string{"api", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "worker_callback_duration_seconds", Help: "Latency of Step Functions callbacks.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2.5, 10),
		}, []string{"api"}),
		claimChecks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "worker_claim_checks_total", Help: "Outputs over the 256 KiB limit stored in S3 and sent as a pointer.",
		}),
	}
	reg.MustRegister(m.calls, m.duration, m.claimChecks)
	return m
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case IsTaskClosed(err):
		return "task_closed"
	default:
		return "error"
	}
}

package httpjob

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskbridge/taskbridge/internal/telemetry"
)

// Metrics of the http jobs, shared by every http queue; labels: job, and the
// status class of the answer (2xx, 3xx, 4xx, 5xx, or error when none came).
type Metrics struct {
	responses *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// NewMetrics registers the http metrics on reg. Called twice on one registry, it
// returns metrics bound to the collectors already registered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := newMetrics()
	m.responses = telemetry.Register(reg, m.responses)
	m.duration = telemetry.Register(reg, m.duration)
	return m
}

func newMetrics() *Metrics {
	return &Metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_http_responses_total", Help: "Answers to http jobs' requests by status class: 2xx, 3xx, 4xx, 5xx, or error (no answer: refused, reset, timeout).",
		}, []string{"job", "class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "worker_http_duration_seconds", Help: "Time an http job's request took, body read included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12), // 5 ms .. 19 min
		}, []string{"job"}),
	}
}

// init makes the job's series exist at zero before its first request, so that
// rate() and increase() see the first answer and dashboards show the queue.
func (m *Metrics) init(job string) {
	m.duration.WithLabelValues(job)
	for _, class := range []string{"2xx", "3xx", "4xx", "5xx", "error"} {
		m.responses.WithLabelValues(job, class)
	}
}

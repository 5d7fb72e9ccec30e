package jobs

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the jobs; labels are the job name and the outcome.
type Metrics struct {
	jobs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	eventAge *prometheus.HistogramVec
}

// NewMetrics registers the jobs' metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_jobs_total", Help: "Handled messages by job and outcome: success, forwarded, final_failure, retry, dead_letter, task_closed.",
		}, []string{"job", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "worker_job_duration_seconds", Help: "Time a job took, callback included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}, []string{"job"}),
		eventAge: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "worker_event_age_seconds", Help: "Time from an event's EventBridge time to its handling.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 12),
		}, []string{"job"}),
	}
	reg.MustRegister(m.jobs, m.duration, m.eventAge)
	return m
}

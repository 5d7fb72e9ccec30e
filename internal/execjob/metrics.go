package execjob

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskbridge/taskbridge/internal/telemetry"
)

// Metrics of the exec jobs, shared by every exec queue; labels: job, and the exit
// code ("0".."255", "signal", "timeout") or the reason a group was killed.
type Metrics struct {
	duration *prometheus.HistogramVec
	exits    *prometheus.CounterVec
	killed   *prometheus.CounterVec
}

// NewMetrics registers the exec metrics on reg. Called twice on one registry, it
// returns metrics bound to the collectors already registered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := newMetrics()
	m.duration = telemetry.Register(reg, m.duration)
	m.exits = telemetry.Register(reg, m.exits)
	m.killed = telemetry.Register(reg, m.killed)
	return m
}

func newMetrics() *Metrics {
	return &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "worker_exec_duration_seconds", Help: "Time an exec job's command ran, from start to reaped.",
			Buckets: prometheus.ExponentialBuckets(0.05, 3, 12), // 50 ms .. 2.5 h
		}, []string{"job"}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_exec_exits_total", Help: "Ended commands by exit code; \"signal\" when a signal ended it, \"timeout\" when the worker stopped it at the job timeout.",
		}, []string{"job", "code"}),
		killed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_exec_killed_total", Help: "Process groups the worker stopped (SIGTERM, then SIGKILL), by reason: timeout, shutdown, or task_closed (its task closed while it ran).",
		}, []string{"job", "reason"}),
	}
}

// init makes the job's series exist at zero before its first run, so that rate()
// and increase() see the first event and dashboards show the queue.
func (m *Metrics) init(job string) {
	m.duration.WithLabelValues(job)
	m.exits.WithLabelValues(job, "0")
	for _, reason := range []string{"timeout", "shutdown", "task_closed"} {
		m.killed.WithLabelValues(job, reason)
	}
}

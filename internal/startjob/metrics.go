package startjob

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskbridge/taskbridge/internal/telemetry"
)

// Metrics of the startExecution jobs, shared by every such queue; labels: job and
// outcome (started, already_started, error).
type Metrics struct {
	starts *prometheus.CounterVec
}

// NewMetrics registers the startExecution metrics on reg. Called twice on one
// registry, it returns metrics bound to the collector already registered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := newMetrics()
	m.starts = telemetry.Register(reg, m.starts)
	return m
}

// init makes the job's series exist at zero before its first event, so that rate()
// and increase() see the first start and dashboards show the queue.
func (m *Metrics) init(job string) {
	for _, outcome := range []string{"started", "already_started", "error"} {
		m.starts.WithLabelValues(job, outcome)
	}
}

func newMetrics() *Metrics {
	return &Metrics{
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_start_executions_total", Help: "StartExecution calls of startExecution jobs by outcome: started, already_started (an earlier delivery of the event started it), error.",
		}, []string{"job", "outcome"}),
	}
}

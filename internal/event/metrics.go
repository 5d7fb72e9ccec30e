package event

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the publisher.
type Metrics struct {
	// published counts events by detail type (a small fixed set: the worker's own
	// event kinds) and result (ok, error).
	published *prometheus.CounterVec
}

// NewMetrics registers the publisher metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_events_published_total", Help: "Events the worker put on the bus, by detail type and result (ok, error).",
		}, []string{"detail_type", "result"}),
	}
	reg.MustRegister(m.published)
	return m
}

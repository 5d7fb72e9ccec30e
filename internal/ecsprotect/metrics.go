package ecsprotect

import "github.com/prometheus/client_golang/prometheus"

// Metrics of a Protector.
type Metrics struct {
	held     prometheus.Gauge
	disabled prometheus.Gauge
	updates  *prometheus.CounterVec
}

// NewMetrics registers the protector's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "worker_task_protection_held", Help: "1 while this task holds ECS scale-in protection (the agent confirmed it), else 0.",
		}),
		disabled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "worker_task_protection_disabled", Help: "1 once ECS refused this task's protection for good (TASK_NOT_VALID) and the process stopped asking, else 0.",
		}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_task_protection_updates_total", Help: "Calls to the ECS agent's task protection endpoint, by action (enable, renew, drop) and result (ok, error).",
		}, []string{"action", "result"}),
	}
	reg.MustRegister(m.held, m.disabled, m.updates)
	return m
}

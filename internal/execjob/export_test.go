package execjob

import "github.com/prometheus/client_golang/prometheus"

// Exits and Killed expose the counters to the package's tests.
func (m *Metrics) Exits(job, code string) prometheus.Counter {
	return m.exits.WithLabelValues(job, code)
}
func (m *Metrics) Killed(job, reason string) prometheus.Counter {
	return m.killed.WithLabelValues(job, reason)
}

// GroupAlive is groupAlive for the tests.
var GroupAlive = groupAlive

package startjob

import "github.com/prometheus/client_golang/prometheus"

// Starts exposes the counter to the package's tests.
func (m *Metrics) Starts(job, outcome string) prometheus.Counter {
	return m.starts.WithLabelValues(job, outcome)
}

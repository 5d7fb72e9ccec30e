package httpjob

import "github.com/prometheus/client_golang/prometheus"

// Responses exposes the counter to the package's tests.
func (m *Metrics) Responses(job, class string) prometheus.Counter {
	return m.responses.WithLabelValues(job, class)
}

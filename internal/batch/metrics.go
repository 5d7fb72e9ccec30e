package batch

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the batcher and the Glue runs.
type Metrics struct {
	files         prometheus.Histogram
	flushes       *prometheus.CounterVec
	openFiles     prometheus.Gauge
	startRetries  prometheus.Counter
	startFailures prometheus.Counter
	runs          *prometheus.CounterVec
	dropped       *prometheus.CounterVec
}

// NewMetrics registers the batch metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		files: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "worker_batch_files", Help: "Files per flushed batch.", Buckets: prometheus.ExponentialBuckets(1, 2.5, 11),
		}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_batch_flushes_total", Help: "Batches flushed, by reason: count, window, shutdown.",
		}, []string{"reason"}),
		openFiles: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "worker_batch_open_files", Help: "Files held in the open batch.",
		}),
		startRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "worker_glue_start_retries_total", Help: "StartJobRun retries (concurrent runs exceeded, throttling).",
		}),
		startFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "worker_batch_start_failures_total", Help: "Batches whose Glue run could not be started.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_glue_runs_total", Help: "Glue runs followed to their end, by final state.",
		}, []string{"state"}),
	}
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "worker_batch_dropped_files_total", Help: "Files left out of a manifest by reason: missing (no such object; dead-lettered), head_error (HeadObject failed; redelivered).",
	}, []string{"reason"})
	reg.MustRegister(m.files, m.flushes, m.openFiles, m.startRetries, m.startFailures, m.runs, m.dropped)
	return m
}

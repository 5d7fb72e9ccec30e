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
	claims        *prometheus.CounterVec
	glueBusy      prometheus.Counter
	startChecks   *prometheus.CounterVec
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
	m.claims = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "worker_batch_claims_total",
		Help: "Files claimed before a manifest, by result: made (a new claim), taken_over (from a batch whose batcher died or gave up), duplicate (already in a started run; acknowledged and left out), busy (claimed by a batch that may still start; tried again in the next batch).",
	}, []string{"result"})
	m.glueBusy = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "worker_glue_concurrent_runs_exceeded_total", Help: "StartJobRun answers ConcurrentRunsExceeded, waited out while holding the batch.",
	})
	m.startChecks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "worker_glue_start_checks_total",
		Help: "Glue run histories read after a StartJobRun error, by outcome: started (the run had started: its reply was lost or cut), not_started, unknown (Glue could not tell; the lease is left to expire and its taker asks again).",
	}, []string{"outcome"})
	reg.MustRegister(m.files, m.flushes, m.openFiles, m.startRetries, m.startFailures, m.runs, m.dropped, m.claims, m.glueBusy, m.startChecks)
	return m
}

package jobs

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the jobs; labels are the job name and the outcome.
type Metrics struct {
	jobs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	eventAge *prometheus.HistogramVec
	// abandoned and lingering count the job goroutines the router stopped waiting
	// for (Router.call): the job ignored its context's end past giveUpAfter.
	abandoned *prometheus.CounterVec
	lingering *prometheus.GaugeVec
	// cancelled counts jobs cancelled because their task closed, by queue and reason.
	cancelled *prometheus.CounterVec
	// sampledOut counts the success lines LineSampling left out, by queue.
	sampledOut *sampledOutCounter
	series     sync.Map // job name → *jobSeries
}

// jobSeries are one job's series, each looked up by its labels once, when first
// used (as WithLabelValues would create it): a lookup hashes the label values and
// takes the vector's lock, which every message paid three times.
type jobSeries struct {
	job       string
	jobs      *prometheus.CounterVec
	outcomes  sync.Map // outcome name → prometheus.Counter
	duration  func() prometheus.Observer
	eventAge  func() prometheus.Observer
	lingering func() prometheus.Gauge
}

// forJob returns job's series.
func (m *Metrics) forJob(job string) *jobSeries {
	if s, ok := m.series.Load(job); ok {
		return s.(*jobSeries)
	}
	s := &jobSeries{
		job: job, jobs: m.jobs,
		duration:  sync.OnceValue(func() prometheus.Observer { return m.duration.WithLabelValues(job) }),
		eventAge:  sync.OnceValue(func() prometheus.Observer { return m.eventAge.WithLabelValues(job) }),
		lingering: sync.OnceValue(func() prometheus.Gauge { return m.lingering.WithLabelValues(job) }),
	}
	actual, _ := m.series.LoadOrStore(job, s)
	return actual.(*jobSeries)
}

// outcome is the job's counter of outcome name.
func (s *jobSeries) outcome(name string) prometheus.Counter {
	if c, ok := s.outcomes.Load(name); ok {
		return c.(prometheus.Counter)
	}
	c := s.jobs.WithLabelValues(s.job, name)
	s.outcomes.Store(name, c)
	return c
}

// NewMetrics registers the jobs' metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_jobs_total", Help: "Handled messages by job and outcome: success, forwarded, final_failure, retry, dead_letter, task_closed, cancelled.",
		}, []string{"job", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "worker_job_duration_seconds", Help: "Time a job took, callback included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}, []string{"job"}),
		eventAge: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "worker_event_age_seconds", Help: "Time from an event's EventBridge time to its handling.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 12),
		}, []string{"job"}),
		abandoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_job_abandoned_total", Help: "Job runs the worker stopped waiting for: the job went on 100 ms past the end of its context (deadline, shutdown, lost visibility), so its message was settled without it and its goroutine left to end on its own.",
		}, []string{"job"}),
		lingering: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_job_abandoned_running", Help: "Abandoned job runs (worker_job_abandoned_total) still running: goroutines, and what they hold, that only the job's own return frees.",
		}, []string{"job"}),
		cancelled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_jobs_cancelled_total", Help: "Jobs cancelled because a heartbeat found their task closed, by queue and reason: the execution's status (aborted, timed_out, failed, succeeded, does_not_exist) or the answer (TaskTimedOut, TaskDoesNotExist). Their messages are deleted.",
		}, []string{"queue", "reason"}),
		sampledOut: newSampledOutCounter(),
	}
	reg.MustRegister(m.jobs, m.duration, m.eventAge, m.abandoned, m.lingering, m.cancelled, m.sampledOut)
	return m
}

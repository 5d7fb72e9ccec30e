package jobs

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LineSampling thins the "message handled" lines of a busy queue: in each second,
// the first First success lines of a queue (outcomes success and forwarded) are
// written, then one in Thereafter. Every other outcome (a retry, a failure, a dead
// letter, a closed task, a cancel) always has its line. The next line written
// says how many success lines were left out before it (lines_sampled_out), and
// worker_log_lines_sampled_out_total counts them; worker_jobs_total still counts
// every message. First <= 0 writes every line.
//
// Why: the line is the largest single cost the router adds to a message
// (BENCHMARKS.md, issue 31); at thousands of messages a second it kept the
// worker's path from a raw receive loop's cost. At the rates of a Step Functions
// flow (under First a second a queue) nothing is left out.
type LineSampling struct {
	First, Thereafter int
}

// DefaultLineSampling is what the worker runs with unless configured
// (WORKER_LOG_SAMPLE_FIRST, WORKER_LOG_SAMPLE_THEREAFTER): zap's production
// sampling figures.
var DefaultLineSampling = LineSampling{First: 100, Thereafter: 100}

// lineSampler decides, for one queue, which success lines are written. It reads
// no clock: the caller passes the time its message started. Safe for concurrent use; a window
// that turns while lines are counted may keep a few more than First, never fewer.
type lineSampler struct {
	first, thereafter int64
	second            atomic.Int64 // Unix second of the window being counted
	n                 atomic.Int64 // success lines in that window so far
	skipped           atomic.Int64 // lines left out since the last one written
	// carried counts the lines left out before the last one written; mu makes a
	// written line's move of skipped into it one step to a scrape (sampledOut).
	mu      sync.Mutex
	carried int64
}

func newLineSampler(s LineSampling) *lineSampler {
	if s.First <= 0 {
		return nil // every line
	}
	return &lineSampler{first: int64(s.First), thereafter: int64(max(s.Thereafter, 1))}
}

// keep reports whether the success line of a message started at is written and, when it is, how
// many lines of the queue were left out since the last one written. A nil sampler
// keeps every line.
func (s *lineSampler) keep(at time.Time) (keep bool, skipped int64) {
	if s == nil {
		return true, 0
	}
	sec := at.Unix()
	if cur := s.second.Load(); sec > cur && s.second.CompareAndSwap(cur, sec) {
		s.n.Store(0)
	}
	if n := s.n.Add(1); n <= s.first || (n-s.first)%s.thereafter == 0 {
		if s.skipped.Load() == 0 {
			return true, 0
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		skipped = s.skipped.Swap(0)
		s.carried += skipped
		return true, skipped
	}
	s.skipped.Add(1)
	return false, 0
}

// sampledOut is how many lines the sampler has left out so far; never less than
// at an earlier call. Nil: none.
func (s *lineSampler) sampledOut() int64 {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.carried + s.skipped.Load()
}

// sampledOutCounter is worker_log_lines_sampled_out_total, read from the queues'
// samplers when scraped: a line left out updates no counter of its own (a
// Prometheus counter's add, shared by every handler of the queue, was most of what
// sampling still cost a message).
type sampledOutCounter struct {
	desc     *prometheus.Desc
	mu       sync.Mutex
	samplers map[string][]*lineSampler // by queue; nil samplers (sampling off) count 0
}

func newSampledOutCounter() *sampledOutCounter {
	return &sampledOutCounter{
		desc: prometheus.NewDesc("worker_log_lines_sampled_out_total",
			"Success lines (\"message handled\") left out of the log by its sampling (WORKER_LOG_SAMPLE_FIRST a second a queue, then one in WORKER_LOG_SAMPLE_THEREAFTER), by queue. worker_jobs_total counts every message.",
			[]string{"queue"}, nil),
		samplers: map[string][]*lineSampler{},
	}
}

// add counts s's lines as queue's, from now on.
func (c *sampledOutCounter) add(queue string, s *lineSampler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samplers[queue] = append(c.samplers[queue], s)
}

// value is queue's count.
func (c *sampledOutCounter) value(queue string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, s := range c.samplers[queue] {
		n += s.sampledOut()
	}
	return float64(n)
}

func (c *sampledOutCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *sampledOutCounter) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	queues := make([]string, 0, len(c.samplers))
	for q := range c.samplers {
		queues = append(queues, q)
	}
	c.mu.Unlock()
	for _, q := range queues {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, c.value(q), q)
	}
}

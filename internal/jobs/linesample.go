package jobs

import (
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
	sampledOut        prometheus.Counter
}

func newLineSampler(s LineSampling, sampledOut prometheus.Counter) *lineSampler {
	if s.First <= 0 {
		return nil // every line
	}
	return &lineSampler{first: int64(s.First), thereafter: int64(max(s.Thereafter, 1)), sampledOut: sampledOut}
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
		return true, s.skipped.Swap(0)
	}
	s.skipped.Add(1)
	s.sampledOut.Inc()
	return false, 0
}

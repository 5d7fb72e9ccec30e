package throttle

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Set is one limiter per API of a service, shared by every caller in the process,
// with their metrics: worker_<service>_throttled_total{api} counts throttle answers,
// worker_<service>_rate_limit{api} is each limiter's current rate (calls per
// second). Safe for concurrent use.
type Set struct {
	throttled *prometheus.CounterVec
	rate      *prometheus.Desc

	mu       sync.Mutex
	limiters map[string]*Limiter
}

// NewSet registers the metrics of service's limiters on reg.
func NewSet(service string, reg prometheus.Registerer) *Set {
	s := &Set{
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_" + service + "_throttled_total", Help: "Calls answered with a throttle error (then waited out and tried again), by API.",
		}, []string{"api"}),
		rate: prometheus.NewDesc("worker_"+service+"_rate_limit", "Current client-side rate limit of an API, calls per second (lowered on throttle answers, raised on successes).",
			[]string{"api"}, nil),
		limiters: map[string]*Limiter{},
	}
	reg.MustRegister(s.throttled, s)
	return s
}

// Add makes the limiter of api: perSecond calls a second, burst at most at once.
// Adding an api again replaces its limiter.
func (s *Set) Add(api string, perSecond float64, burst int) *Limiter {
	l := NewLimiter(perSecond, burst)
	l.throttled = s.throttled.WithLabelValues(api)
	s.mu.Lock()
	s.limiters[api] = l
	s.mu.Unlock()
	return l
}

// Get is the limiter of api, nil if none was added (no limit).
func (s *Set) Get(api string) *Limiter {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limiters[api]
}

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) { ch <- s.rate }

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	apis := make([]string, 0, len(s.limiters))
	for api := range s.limiters {
		apis = append(apis, api)
	}
	sort.Strings(apis)
	ls := make([]*Limiter, len(apis))
	for i, api := range apis {
		ls[i] = s.limiters[api]
	}
	s.mu.Unlock()
	for i, l := range ls {
		ch <- prometheus.MustNewConstMetric(s.rate, prometheus.GaugeValue, l.Rate(), apis[i])
	}
}

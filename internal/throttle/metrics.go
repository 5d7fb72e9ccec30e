package throttle

import (
	"github.com/prometheus/client_golang/prometheus"
)

// API names a Step Functions API the worker calls per message and limits. The
// list is closed: a Set holds a limiter for each, so no caller can name one that
// silently has no limit.
type API string

// The limited APIs.
const (
	SendTaskSuccess   API = "SendTaskSuccess"
	SendTaskFailure   API = "SendTaskFailure"
	SendTaskHeartbeat API = "SendTaskHeartbeat"
	StartExecution    API = "StartExecution"
)

// APIs is every limited API: what NewSet makes a limiter for.
var APIs = []API{SendTaskSuccess, SendTaskFailure, SendTaskHeartbeat, StartExecution}

// Rates are the limits of a Set, calls a second: the callbacks (SendTask*) share one
// figure, StartExecution has its own.
type Rates struct {
	Callback, Start float64
}

// rate is api's refill and burst. Bursts keep the documented bucket-to-refill ratio
// (3,000/500 for SendTask*, 1,300/300 for StartExecution).
func (r Rates) rate(api API) (perSecond float64, burst int) {
	if api == StartExecution {
		return r.Start, max(1, int(r.Start*13/3))
	}
	return r.Callback, max(1, int(r.Callback*6))
}

// Set is one limiter per API of a service, shared by every caller in the process,
// with their metrics: worker_<service>_throttled_total{api} counts throttle answers,
// worker_<service>_rate_limit{api} is each limiter's current rate (calls per
// second). Safe for concurrent use.
type Set struct {
	throttled *prometheus.CounterVec
	rate      *prometheus.Desc

	limiters map[API]*Limiter // one per API of APIs, made by NewSet, never changed
}

// NewSet makes a limiter for each of APIs at rates and registers the metrics of
// service's limiters on reg.
func NewSet(service string, reg prometheus.Registerer, rates Rates) *Set {
	s := &Set{
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_" + service + "_throttled_total", Help: "Calls answered with a throttle error (then waited out and tried again), by API.",
		}, []string{"api"}),
		rate: prometheus.NewDesc("worker_"+service+"_rate_limit", "Current client-side rate limit of an API, calls per second (lowered on throttle answers, raised on successes).",
			[]string{"api"}, nil),
		limiters: map[API]*Limiter{},
	}
	for _, api := range APIs {
		l := NewLimiter(rates.rate(api))
		l.throttled = s.throttled.WithLabelValues(string(api))
		s.limiters[api] = l
	}
	reg.MustRegister(s.throttled, s)
	return s
}

// Get is the limiter of api; a nil Set (no limits configured, as in unit tests of
// its callers) gives a nil Limiter, which Do treats as no limit.
func (s *Set) Get(api API) *Limiter {
	if s == nil {
		return nil
	}
	return s.limiters[api]
}

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) { ch <- s.rate }

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, api := range APIs {
		ch <- prometheus.MustNewConstMetric(s.rate, prometheus.GaugeValue, s.limiters[api].Rate(), string(api))
	}
}

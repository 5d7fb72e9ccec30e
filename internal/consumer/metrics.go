package consumer

import "github.com/prometheus/client_golang/prometheus"

// Metrics of every Poller of a process; labels are the logical queue name and small
// fixed sets.
type Metrics struct {
	received     *prometheus.CounterVec
	handled      *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inFlight     *prometheus.GaugeVec
	receiveCalls *prometheus.CounterVec
	deletes      *prometheus.CounterVec
	visibility   *prometheus.CounterVec
	requests     *prometheus.CounterVec
	pollers      *prometheus.GaugeVec
}

// NewMetrics registers the consumer's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_messages_received_total", Help: "SQS messages received.",
		}, []string{"queue"}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_messages_handled_total", Help: "Messages by fate: deleted, retried, dead_lettered, released, abandoned (visibility lost); long jobs' hand-over: handed_on, handed_on_done, handed_on_released, lease_lost, continuation_hidden, continuation_dropped, taken_over.",
		}, []string{"queue", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "worker_handler_duration_seconds", Help: "Time a handler took per message.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}, []string{"queue"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_jobs_in_flight", Help: "Handlers running now.",
		}, []string{"queue"}),
		receiveCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_receive_calls_total", Help: "ReceiveMessage calls by result: messages, empty, error.",
		}, []string{"queue", "result"}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_sqs_deletes_total", Help: "Messages deleted, by result.",
		}, []string{"queue", "result"}),
		visibility: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_visibility_changes_total", Help: "Visibility changes by kind (extend, release, backoff) and result.",
		}, []string{"queue", "kind", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_sqs_requests_total", Help: "SQS API requests made, by API.",
		}, []string{"queue", "api"}),
		pollers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_extra_pollers", Help: "Receive loops running beyond the first, while a queue is busy.",
		}, []string{"queue"}),
	}
	reg.MustRegister(m.pollers, m.received, m.handled, m.duration, m.inFlight, m.receiveCalls, m.deletes, m.visibility, m.requests)
	return m
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// queueMetrics are the series a Poller touches per message or per request, looked
// up once: WithLabelValues hashes its labels and takes a lock on every call.
type queueMetrics struct {
	inFlight      prometheus.Gauge
	duration      prometheus.Observer
	received      prometheus.Counter
	deleted       prometheus.Counter // handled, outcome deleted
	receiveReqs   prometheus.Counter
	deleteReqs    prometheus.Counter
	receiveEmpty  prometheus.Counter
	receiveFull   prometheus.Counter // a receive that brought messages
	receiveErrors prometheus.Counter
	deletesOK     prometheus.Counter
}

func (m *Metrics) forQueue(queue string) queueMetrics {
	return queueMetrics{
		inFlight:      m.inFlight.WithLabelValues(queue),
		duration:      m.duration.WithLabelValues(queue),
		received:      m.received.WithLabelValues(queue),
		deleted:       m.handled.WithLabelValues(queue, "deleted"),
		receiveReqs:   m.requests.WithLabelValues(queue, "ReceiveMessage"),
		deleteReqs:    m.requests.WithLabelValues(queue, "DeleteMessageBatch"),
		receiveEmpty:  m.receiveCalls.WithLabelValues(queue, "empty"),
		receiveFull:   m.receiveCalls.WithLabelValues(queue, "messages"),
		receiveErrors: m.receiveCalls.WithLabelValues(queue, "error"),
		deletesOK:     m.deletes.WithLabelValues(queue, "ok"),
	}
}

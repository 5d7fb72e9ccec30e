package telemetry

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// sqsAPI is the one SQS call of QueueCounts and the DLQ gauge; *sqs.Client
// satisfies it. It must be safe for concurrent use only in the sense the SDK client
// is: the gauge calls it from one goroutine.
type sqsAPI interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// QueueGaugeConfig says which queues to watch and how often: the DLQs' depth and
// size, the other queues' size.
type QueueGaugeConfig struct {
	// DLQs maps a logical queue name (the label value) to its DLQ URL.
	DLQs map[string]string
	// Queues maps a logical queue name to its URL: the queues whose size (not
	// depth) is watched too, beside the DLQs'.
	Queues map[string]string
	// Interval between two reads of every DLQ; 30 s when zero. Each wait gets ±10 %
	// jitter so a fleet of workers does not call SQS in lockstep.
	Interval time.Duration
}

// QueueGauge reads the stack's queues' attributes now and then. It publishes
// worker_dlq_messages{queue}: the approximate number of messages
// waiting in each DLQ, read with GetQueueAttributes. The depth is the number a person
// acts on (the redrive, not the worker, moves most messages there), so it is
// measured, not counted.
//
// It also publishes worker_queue_max_message_bytes{queue}, each DLQ's and queue's
// MaximumMessageSize by SQS queue name (a DLQ's in the same call as its depth), and
// warns once, while it lasts, about a queue under SQS's limit (SmallQueue).
type QueueGauge struct {
	cfg     QueueGaugeConfig
	sqs     sqsAPI
	log     *zap.Logger
	depth   *prometheus.GaugeVec
	errors  *prometheus.CounterVec
	maxSize *prometheus.GaugeVec
	small   map[string]bool // queue URLs found under SQS's limit; owned by Run's goroutine
}

// NewQueueGauge registers worker_dlq_messages, worker_dlq_read_errors_total and
// worker_queue_max_message_bytes on reg.
func NewQueueGauge(cfg QueueGaugeConfig, client sqsAPI, reg prometheus.Registerer, log *zap.Logger) *QueueGauge {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	g := &QueueGauge{
		cfg: cfg, sqs: client, log: log.With(zap.String("component", "dlq_gauge")),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_dlq_messages", Help: "Approximate number of messages in the dead-letter queue of each queue.",
		}, []string{"queue"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_dlq_read_errors_total", Help: "Failed reads of a dead-letter queue's depth.",
		}, []string{"queue"}),
		maxSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_queue_max_message_bytes", Help: "MaximumMessageSize of each queue and DLQ, by SQS queue name: under 1048576, larger events cannot reach it.",
		}, []string{"queue"}),
		small: map[string]bool{},
	}
	for q := range cfg.DLQs {
		g.errors.WithLabelValues(q) // exported at 0, so rate() has a series before the first error
	}
	reg.MustRegister(g.depth, g.errors, g.maxSize)
	return g
}

// Run reads every DLQ at once, then every Interval, until ctx is done; it returns nil
// then. A failed read is logged and counted and its queue's series is removed until a
// read succeeds again: an unknown depth is not the same as an old one.
func (g *QueueGauge) Run(ctx context.Context) error {
	if len(g.cfg.DLQs) == 0 && len(g.cfg.Queues) == 0 {
		return nil
	}
	dlqs := slices.Sorted(maps.Keys(g.cfg.DLQs))
	queues := slices.Sorted(maps.Keys(g.cfg.Queues))
	for {
		for _, q := range dlqs {
			g.read(ctx, q)
		}
		for _, q := range queues {
			g.readSize(ctx, g.cfg.Queues[q])
		}
		t := time.NewTimer(jitter(g.cfg.Interval))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// read reads a DLQ's depth and size in one call.
func (g *QueueGauge) read(ctx context.Context, queue string) {
	url := g.cfg.DLQs[queue]
	n, err := g.attributes(ctx, url, sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameMaximumMessageSize)
	if err != nil {
		if ctx.Err() != nil {
			return // stopping: not a read error
		}
		g.errors.WithLabelValues(queue).Inc()
		g.depth.DeleteLabelValues(queue)
		g.maxSize.DeleteLabelValues(QueueName(url))
		g.log.Warn("read DLQ depth", zap.String("queue", queue), zap.Error(err))
		return
	}
	g.depth.WithLabelValues(queue).Set(float64(n[0]))
	g.setSize(url, n[1])
}

// readSize reads a queue's size.
func (g *QueueGauge) readSize(ctx context.Context, url string) {
	n, err := g.attributes(ctx, url, sqstypes.QueueAttributeNameMaximumMessageSize)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		g.maxSize.DeleteLabelValues(QueueName(url))
		g.log.Warn("read queue size", zap.String("queue", QueueName(url)), zap.Error(err))
		return
	}
	g.setSize(url, n[0])
}

// setSize exports a queue's size, and warns when it falls under SQS's limit (once,
// until it is raised).
func (g *QueueGauge) setSize(url string, size int64) {
	g.maxSize.WithLabelValues(QueueName(url)).Set(float64(size))
	warning := SmallQueue(url, size)
	if warning != "" && !g.small[url] {
		g.log.Warn("queue smaller than SQS's limit", zap.String("queue", QueueName(url)), zap.Int64("max_message_bytes", size), zap.String("fix", warning))
	}
	g.small[url] = warning != ""
}

func (g *QueueGauge) attributes(ctx context.Context, url string, names ...sqstypes.QueueAttributeName) ([]int64, error) {
	// Bounded, so one hung call cannot stall every later read.
	ctx, cancel := context.WithTimeout(ctx, min(g.cfg.Interval, 10*time.Second))
	defer cancel()
	return QueueCounts(ctx, g.sqs, url, names...)
}

// jitter returns d ± 10 %.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

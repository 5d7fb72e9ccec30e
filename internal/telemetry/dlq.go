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

// DLQGaugeConfig says which dead-letter queues to watch and how often.
type DLQGaugeConfig struct {
	// DLQs maps a logical queue name (the label value) to its DLQ URL.
	DLQs map[string]string
	// Interval between two reads of every DLQ; 30 s when zero. Each wait gets ±10 %
	// jitter so a fleet of workers does not call SQS in lockstep.
	Interval time.Duration
}

// DLQGauge publishes worker_dlq_messages{queue}: the approximate number of messages
// waiting in each DLQ, read with GetQueueAttributes. The depth is the number a person
// acts on (the redrive, not the worker, moves most messages there), so it is
// measured, not counted.
type DLQGauge struct {
	cfg    DLQGaugeConfig
	sqs    sqsAPI
	log    *zap.Logger
	depth  *prometheus.GaugeVec
	errors *prometheus.CounterVec
}

// NewDLQGauge registers worker_dlq_messages and worker_dlq_read_errors_total on reg.
func NewDLQGauge(cfg DLQGaugeConfig, client sqsAPI, reg prometheus.Registerer, log *zap.Logger) *DLQGauge {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	g := &DLQGauge{
		cfg: cfg, sqs: client, log: log.With(zap.String("component", "dlq_gauge")),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_dlq_messages", Help: "Approximate number of messages in the dead-letter queue of each queue.",
		}, []string{"queue"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_dlq_read_errors_total", Help: "Failed reads of a dead-letter queue's depth.",
		}, []string{"queue"}),
	}
	for q := range cfg.DLQs {
		g.errors.WithLabelValues(q) // exported at 0, so rate() has a series before the first error
	}
	reg.MustRegister(g.depth, g.errors)
	return g
}

// Run reads every DLQ at once, then every Interval, until ctx is done; it returns nil
// then. A failed read is logged and counted and its queue's series is removed until a
// read succeeds again: an unknown depth is not the same as an old one.
func (g *DLQGauge) Run(ctx context.Context) error {
	if len(g.cfg.DLQs) == 0 {
		return nil
	}
	queues := slices.Sorted(maps.Keys(g.cfg.DLQs))
	for {
		for _, q := range queues {
			g.read(ctx, q)
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

func (g *DLQGauge) read(ctx context.Context, queue string) {
	n, err := g.depthOf(ctx, g.cfg.DLQs[queue])
	if err != nil {
		if ctx.Err() != nil {
			return // stopping: not a read error
		}
		g.errors.WithLabelValues(queue).Inc()
		g.depth.DeleteLabelValues(queue)
		g.log.Warn("read DLQ depth", zap.String("queue", queue), zap.Error(err))
		return
	}
	g.depth.WithLabelValues(queue).Set(float64(n))
}

func (g *DLQGauge) depthOf(ctx context.Context, url string) (int64, error) {
	// Bounded, so one hung call cannot stall every later read.
	ctx, cancel := context.WithTimeout(ctx, min(g.cfg.Interval, 10*time.Second))
	defer cancel()
	n, err := QueueCounts(ctx, g.sqs, url, sqstypes.QueueAttributeNameApproximateNumberOfMessages)
	if err != nil {
		return 0, err
	}
	return n[0], nil
}

// jitter returns d ± 10 %.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

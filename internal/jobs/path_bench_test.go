package jobs

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// BenchmarkWholePath is bench-peers' worker without the network: a Poller
// (concurrency 20, up to 4 pollers) on an in-process queue hands each message to
// the Router, which runs a no-op Observe job and writes its sampled JSON line to
// nowhere. "poller" is the same Poller with a handler that does nothing: the
// difference between the two is the Router's whole cost per message, its share of
// the garbage collector's and the scheduler's included.
func BenchmarkWholePath(b *testing.B) {
	b.Run("poller", func(b *testing.B) {
		benchPath(b, consumer.HandlerFunc(func(context.Context, consumer.Message) error { return nil }))
	})
	b.Run("worker", func(b *testing.B) {
		enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
		log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel), zap.AddCaller())
		noop := Job{Name: "noop", Mode: Observe, Run: func(context.Context, *Task) (any, error) { return nil, nil }}
		r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "noop", DetailTypes: []string{"peers"}}}, LineSampling: DefaultLineSampling},
			[]Job{noop}, nil, nil, nil, log, NewMetrics(prometheus.NewRegistry()))
		if err != nil {
			b.Fatal(err)
		}
		benchPath(b, r)
	})
}

func benchPath(b *testing.B, h consumer.Handler) {
	b.ReportAllocs()
	bodies := make([]string, b.N)
	for i := range bodies {
		bodies[i] = `{"version":"0","id":"` + fmt.Sprintf("00000000-0000-4000-8000-%012d", i) + `","detail-type":"peers","source":"bench","account":"000000000000",` +
			`"time":"2026-11-24T00:00:00Z","region":"us-east-1","resources":[],"detail":{"n":` + fmt.Sprint(i) + `}}`
	}
	q := newQueueSQS(bodies...)
	var handled atomic.Int64
	done := make(chan struct{})
	counted := counting{next: h, n: &handled, target: int64(b.N), done: done}
	p, err := consumer.NewPoller(consumer.Config{Queue: "q", QueueURL: "u", Concurrency: 20, MaxPollers: 4, VisibilityTimeout: 30 * time.Second, PollWait: time.Second},
		q, &counted, zap.NewNop(), consumer.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.ResetTimer()
	cpu0 := processCPU()
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Run(ctx) })
	<-done
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	cancel()
	wg.Wait()
}

// processCPU is the CPU time the process has used (user and system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// counting passes each message on and closes done after target of them.
type counting struct {
	next   consumer.Handler
	n      *atomic.Int64
	target int64
	done   chan struct{}
}

func (c *counting) Handle(ctx context.Context, m consumer.Message) error {
	err := c.next.Handle(ctx, m)
	if c.n.Add(1) == c.target {
		close(c.done)
	}
	return err
}

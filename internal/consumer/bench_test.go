package consumer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// BenchmarkDispatchWithFakeSQS measures the consumer's own overhead per message
// (receive bookkeeping, goroutine per message, batched delete) without a network.
func BenchmarkDispatchWithFakeSQS(b *testing.B) { benchDispatch(b, nil) }

// BenchmarkDispatchWithActivity is the same with an Activity that counts messages
// in hand as scale-in protection does (an atomic add per Begin and End): it must
// add no allocation.
func BenchmarkDispatchWithActivity(b *testing.B) { benchDispatch(b, &atomicActivity{}) }

type atomicActivity struct{ n atomic.Int64 }

func (a *atomicActivity) Begin(n int) { a.n.Add(int64(n)) }
func (a *atomicActivity) End(n int)   { a.n.Add(-int64(n)) }

func benchDispatch(b *testing.B, activity Activity) {
	b.ReportAllocs()
	f := newFakeSQS(30 * time.Second)
	bodies := make([]string, b.N)
	for i := range bodies {
		bodies[i] = fmt.Sprint(i)
	}
	f.send(bodies...)
	var handled atomic.Int64
	done := make(chan struct{})
	p, err := NewPoller(Config{Queue: "bench", QueueURL: "u", Concurrency: 50, MaxPollers: 4, VisibilityTimeout: 30 * time.Second, PollWait: time.Second, Activity: activity},
		f, HandlerFunc(func(context.Context, Message) error {
			if handled.Add(1) == int64(b.N) {
				close(done)
			}
			return nil
		}), zap.NewNop(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.ResetTimer()
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Run(ctx) })
	<-done
	b.StopTimer()
	cancel()
	wg.Wait()
}

// BenchmarkClockRead is what one time.Now costs where it runs (40–360 ns on the
// benchmark machine, with its load): a handler reads it once a message
// (Message.Started), where the worker's path read it five times (issue 31).
func BenchmarkClockRead(b *testing.B) {
	var last time.Time
	for b.Loop() {
		last = time.Now()
	}
	if last.IsZero() {
		b.Fatal("no clock")
	}
}

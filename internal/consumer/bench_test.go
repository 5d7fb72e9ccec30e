package consumer

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// countingSQS counts every SQS request a consumer makes.
type countingSQS struct {
	sqsAPI
	n atomic.Int64
}

func (c *countingSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, o ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	c.n.Add(1)
	return c.sqsAPI.ReceiveMessage(ctx, in, o...)
}

func (c *countingSQS) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	c.n.Add(1)
	return c.sqsAPI.DeleteMessageBatch(ctx, in, o...)
}

func (c *countingSQS) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, o ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	c.n.Add(1)
	return c.sqsAPI.ChangeMessageVisibility(ctx, in, o...)
}

func (c *countingSQS) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, o ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	c.n.Add(1)
	return c.sqsAPI.ChangeMessageVisibilityBatch(ctx, in, o...)
}

func (c *countingSQS) DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, o ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	c.n.Add(1)
	return c.sqsAPI.(*sqs.Client).DeleteMessage(ctx, in, o...)
}

const benchMessages = 300

// fill sends n messages in batches of 10 (setup, not measured).
func fill(b *testing.B, client *sqs.Client, url string, n int) {
	b.Helper()
	for i := 0; i < n; i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j := i; j < min(i+10, n); j++ {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(`{"n":` + strconv.Itoa(j) + `}`)})
		}
		if _, err := client.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries}); err != nil {
			b.Fatal(err)
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConsumerAgainstEmulator consumes benchMessages no-op messages from a real
// moto queue with the Poller and with a naive consumer (one message per receive, one
// delete per message, same concurrency), and reports messages per second, SQS
// requests per message and CPU time per message of this process.
func BenchmarkConsumerAgainstEmulator(b *testing.B) {
	cfg := awstest.Config(b)
	client := sqs.NewFromConfig(cfg)
	for _, kind := range []string{"taskbridge", "naive"} {
		b.Run(kind, func(b *testing.B) {
			var reqs, msgs int64
			var wall, cpu time.Duration
			for range b.N {
				q, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(awstest.Stack(b) + "-" + kind)})
				if err != nil {
					b.Fatal(err)
				}
				url := aws.ToString(q.QueueUrl)
				fill(b, client, url, benchMessages)
				counting := &countingSQS{sqsAPI: client}
				var handled atomic.Int64
				done := make(chan struct{})
				var once sync.Once
				count := func() {
					if handled.Add(1) == benchMessages {
						once.Do(func() { close(done) })
					}
				}
				ctx, cancel := context.WithCancel(context.Background())
				c0, t0 := cpuTime(), time.Now()
				var wg sync.WaitGroup
				if kind == "taskbridge" {
					p, err := NewPoller(Config{Queue: "bench", QueueURL: url, Concurrency: 20, MaxPollers: 4, VisibilityTimeout: 30 * time.Second, PollWait: time.Second},
						counting, HandlerFunc(func(context.Context, Message) error { count(); return nil }), zap.NewNop(), NewMetrics(prometheus.NewRegistry()))
					if err != nil {
						b.Fatal(err)
					}
					wg.Go(func() { _ = p.Run(ctx) })
				} else {
					for range 20 {
						wg.Go(func() { naive(ctx, counting, url, count) })
					}
				}
				select {
				case <-done:
				case <-time.After(5 * time.Minute):
					b.Fatal("messages not consumed in 5 minutes")
				}
				wall += time.Since(t0)
				cancel()
				wg.Wait() // the poller's last deletes are flushed and counted
				cpu += cpuTime() - c0
				reqs += counting.n.Load()
				msgs += benchMessages
			}
			b.ReportMetric(float64(msgs)/wall.Seconds(), "msgs/s")
			b.ReportMetric(float64(reqs)/float64(msgs), "sqs-req/msg")
			b.ReportMetric(float64(cpu.Microseconds())/float64(msgs), "cpu-µs/msg")
			b.Logf("%s: %d messages, %d SQS requests, wall %s, cpu %s", kind, msgs, reqs, wall.Round(time.Millisecond), cpu.Round(time.Millisecond))
		})
	}
}

// naive is the comparison: one message per receive, one delete per message.
func naive(ctx context.Context, c *countingSQS, url string, handle func()) {
	for ctx.Err() == nil {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 1, WaitTimeSeconds: 1})
		if err != nil || len(out.Messages) == 0 {
			continue
		}
		handle()
		_, _ = c.DeleteMessage(context.WithoutCancel(ctx), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: out.Messages[0].ReceiptHandle})
	}
}

// BenchmarkDispatchWithFakeSQS measures the consumer's own overhead per message
// (receive bookkeeping, goroutine per message, batched delete) without a network.
func BenchmarkDispatchWithFakeSQS(b *testing.B) {
	b.ReportAllocs()
	f := newFakeSQS(30 * time.Second)
	bodies := make([]string, b.N)
	for i := range bodies {
		bodies[i] = fmt.Sprint(i)
	}
	f.send(bodies...)
	var handled atomic.Int64
	done := make(chan struct{})
	p, err := NewPoller(Config{Queue: "bench", QueueURL: "u", Concurrency: 50, MaxPollers: 4, VisibilityTimeout: 30 * time.Second, PollWait: time.Second},
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

package consumer_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/loadtest"
)

const (
	benchMessages    = 300
	benchConcurrency = 20
)

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

func newQueue(b *testing.B, client *sqs.Client, name string) string {
	b.Helper()
	q, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		b.Fatal(err)
	}
	return aws.ToString(q.QueueUrl)
}

// runConsumer runs the taskbridge Poller or the naive consumer on one queue until ctx
// is cancelled; every SQS request goes through client.
func runConsumer(ctx context.Context, b *testing.B, kind string, client *sqs.Client, url string, wait time.Duration, h consumer.Handler) {
	if kind == "naive" {
		loadtest.RunNaive(ctx, client, loadtest.NaiveQueue{Name: "bench", URL: url, Concurrency: benchConcurrency, Wait: wait}, h)
		return
	}
	p, err := consumer.NewPoller(consumer.Config{Queue: "bench", QueueURL: url, Concurrency: benchConcurrency, MaxPollers: 4, VisibilityTimeout: 30 * time.Second, PollWait: wait},
		client, h, zap.NewNop(), consumer.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Error(err)
		return
	}
	_ = p.Run(ctx)
}

// BenchmarkConsumerAgainstEmulator consumes benchMessages no-op messages from a real
// moto queue with the Poller and with the naive consumer (one message per receive,
// one delete per message, same concurrency), and reports messages per second, SQS
// requests per message and CPU time per message of this process.
func BenchmarkConsumerAgainstEmulator(b *testing.B) {
	benchConsumers(b, awstest.Config(b), benchMessages, awstest.Stack(b), func() { awstest.Reset(b) })
}

// benchConsumers runs both consumers over messages no-op messages each on the SQS
// server of cfg; see BenchmarkConsumerAgainstEmulator. fresh, when not nil, empties
// the server before each run.
func benchConsumers(b *testing.B, cfg aws.Config, messages int, prefix string, fresh func()) {
	setup := sqs.NewFromConfig(cfg)
	for _, kind := range []string{"taskbridge", "naive"} {
		b.Run(kind, func(b *testing.B) {
			var reqs, msgs int64
			var wall, cpu time.Duration
			for range b.N {
				if fresh != nil {
					fresh()
				}
				// A new queue per run: -count repeats this function, and a reused queue
				// would hold what the last run left in flight.
				url := newQueue(b, setup, fmt.Sprintf("%s-%s-%d", prefix, kind, time.Now().UnixNano()))
				fill(b, setup, url, messages)
				var counter loadtest.RequestCounter
				client := sqs.NewFromConfig(cfg, counter.Apply)
				var handled atomic.Int64
				done := make(chan struct{})
				h := consumer.HandlerFunc(func(context.Context, consumer.Message) error {
					if handled.Add(1) == int64(messages) {
						close(done)
					}
					return nil
				})
				ctx, cancel := context.WithCancel(context.Background())
				c0, t0 := loadtest.CPUTime(), time.Now()
				var wg sync.WaitGroup
				wg.Go(func() { runConsumer(ctx, b, kind, client, url, time.Second, h) })
				select {
				case <-done:
				case <-time.After(5 * time.Minute):
					b.Fatal("messages not consumed in 5 minutes")
				}
				wall += time.Since(t0)
				cancel()
				wg.Wait() // the poller's last deletes are flushed and counted
				cpu += loadtest.CPUTime() - c0
				reqs += counter.Count()
				msgs += int64(messages)
			}
			b.ReportMetric(float64(msgs)/wall.Seconds(), "msgs/s")
			b.ReportMetric(float64(reqs)/float64(msgs), "sqs-req/msg")
			b.ReportMetric(float64(cpu.Microseconds())/float64(msgs), "cpu-µs/msg")
			b.Logf("%s: %d messages, %d SQS requests, wall %s, cpu %s", kind, msgs, reqs, wall.Round(time.Millisecond), cpu.Round(time.Millisecond))
		})
	}
}

// BenchmarkIdleAgainstEmulator leaves both consumers on an empty moto queue, side by
// side, with the default 20 s long poll, and reports the receive calls a minute each
// makes. A minute per run (ten seconds with -short, too short for a figure).
func BenchmarkIdleAgainstEmulator(b *testing.B) {
	cfg := awstest.Config(b)
	setup := sqs.NewFromConfig(cfg)
	idle := time.Minute
	if testing.Short() {
		idle = 10 * time.Second
	}
	never := consumer.HandlerFunc(func(context.Context, consumer.Message) error {
		b.Error("a message on an empty queue")
		return nil
	})
	perMinute := map[string]float64{}
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), idle)
		var wg sync.WaitGroup
		counters := map[string]*loadtest.RequestCounter{}
		for _, kind := range []string{"taskbridge", "naive"} {
			url := newQueue(b, setup, awstest.Stack(b)+"-idle-"+kind)
			counters[kind] = &loadtest.RequestCounter{}
			client := sqs.NewFromConfig(cfg, counters[kind].Apply)
			wg.Go(func() { runConsumer(ctx, b, kind, client, url, 20*time.Second, never) })
		}
		wg.Wait()
		cancel()
		for kind, c := range counters {
			perMinute[kind] += float64(c.Count()) / idle.Minutes() / float64(b.N)
		}
	}
	b.ReportMetric(perMinute["taskbridge"], "taskbridge-receives/min")
	b.ReportMetric(perMinute["naive"], "naive-receives/min")
}

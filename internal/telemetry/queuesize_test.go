package telemetry

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestSmallQueue(t *testing.T) {
	t.Parallel()
	const url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-resize-dlq"
	for _, tc := range []struct {
		name string
		size int64
		want []string // in the warning; none: no warning
	}{
		{name: "the old default", size: 262144, want: []string{
			"queue orders-resize-dlq takes messages of at most 262144 bytes (256 KiB)", "less than the 1048576",
			"aws sqs set-queue-attributes --queue-url " + url + " --attributes MaximumMessageSize=1048576", "worker bootstrap", "raise_queue_size_with_aws_cli",
		}},
		{name: "one byte short", size: 1048575, want: []string{"at most 1048575 bytes"}},
		{name: "SQS's limit", size: 1048576},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := SmallQueue(url, tc.size)
			if len(tc.want) == 0 {
				require.Empty(t, got)
				return
			}
			for _, w := range tc.want {
				require.Contains(t, got, w)
			}
		})
	}
}

func TestQueueName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "tb-landing", QueueName("http://127.0.0.1:4566/000000000000/tb-landing"))
	require.Equal(t, "not a url", QueueName("not a url"))
}

// sizeAnswer answers a queue of the given MaximumMessageSize, holding no message.
func sizeAnswer(size *string) func() (map[string]string, error) {
	return func() (map[string]string, error) {
		return map[string]string{"ApproximateNumberOfMessages": "0", "MaximumMessageSize": *size}, nil
	}
}

func TestQueueGaugeExportsQueueSizesAndWarnsOncePerSmallQueue(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zap.WarnLevel)
	jobSize, dlqSize := "262144", "1048576"
	fake := &fakeSQS{answers: map[string]func() (map[string]string, error){
		"https://sqs/tb-resize":     sizeAnswer(&jobSize),
		"https://sqs/tb-resize-dlq": sizeAnswer(&dlqSize),
	}}
	g := NewQueueGauge(QueueGaugeConfig{DLQs: map[string]string{"resize": "https://sqs/tb-resize-dlq"}, Queues: map[string]string{"resize": "https://sqs/tb-resize"}},
		fake, reg, zap.New(core))
	round := func() {
		g.read(context.Background(), "resize")
		g.readSize(context.Background(), "https://sqs/tb-resize")
	}
	warnings := func() int { return logs.FilterMessage("queue smaller than SQS's limit").Len() }

	round()
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP worker_queue_max_message_bytes MaximumMessageSize of each queue and DLQ, by SQS queue name: under 1048576, larger events cannot reach it.
# TYPE worker_queue_max_message_bytes gauge
worker_queue_max_message_bytes{queue="tb-resize"} 262144
worker_queue_max_message_bytes{queue="tb-resize-dlq"} 1.048576e+06
`), "worker_queue_max_message_bytes"))
	require.Equal(t, 2, fake.callCount(), "the DLQ's size comes with its depth: one call per queue")
	require.Equal(t, 1, warnings())
	require.Equal(t, "tb-resize", logs.All()[0].ContextMap()["queue"])

	round()
	require.Equal(t, 1, warnings(), "a queue still small is not warned about again")

	fake.mu.Lock()
	jobSize = "1048576"
	fake.mu.Unlock()
	round()
	require.Equal(t, 1048576.0, testutil.ToFloat64(g.maxSize.WithLabelValues("tb-resize")))
	require.Equal(t, 1, warnings())

	fake.mu.Lock()
	dlqSize = "262144"
	fake.mu.Unlock()
	round()
	require.Equal(t, 2, warnings(), "a queue lowered again is warned about again")
	require.Equal(t, "tb-resize-dlq", logs.All()[1].ContextMap()["queue"])
}

func TestQueueGaugeDropsTheSizeOfAQueueItCannotRead(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	size := "262144"
	fake := &fakeSQS{answers: map[string]func() (map[string]string, error){"https://sqs/tb-a": sizeAnswer(&size)}}
	g := NewQueueGauge(QueueGaugeConfig{Queues: map[string]string{"a": "https://sqs/tb-a"}}, fake, reg, zap.NewNop())
	g.readSize(context.Background(), "https://sqs/tb-a")
	require.Equal(t, 262144.0, testutil.ToFloat64(g.maxSize.WithLabelValues("tb-a")))

	fake.mu.Lock()
	delete(fake.answers, "https://sqs/tb-a") // the queue is gone
	fake.mu.Unlock()
	g.readSize(context.Background(), "https://sqs/tb-a")
	n, err := testutil.GatherAndCount(reg, "worker_queue_max_message_bytes")
	require.NoError(t, err)
	require.Zero(t, n, "an unknown size is not exported")
}

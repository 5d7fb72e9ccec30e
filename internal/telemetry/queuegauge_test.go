package telemetry

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// fakeSQS answers GetQueueAttributes from a table keyed by queue URL.
type fakeSQS struct {
	mu      sync.Mutex
	answers map[string]func() (map[string]string, error)
	calls   []string
}

func (f *fakeSQS) GetQueueAttributes(_ context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	url := aws.ToString(in.QueueUrl)
	f.calls = append(f.calls, url)
	answer, ok := f.answers[url]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue", Message: "fake: no queue " + url}
	}
	attrs, err := answer()
	if err != nil {
		return nil, err
	}
	// Only the names asked, as SQS answers.
	out := map[string]string{}
	for _, name := range in.AttributeNames {
		if v, ok := attrs[string(name)]; ok {
			out[string(name)] = v
		}
	}
	return &sqs.GetQueueAttributesOutput{Attributes: out}, nil
}

func (f *fakeSQS) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// depthAnswer answers a depth of v, on a queue of SQS's largest size.
func depthAnswer(v string) func() (map[string]string, error) {
	return func() (map[string]string, error) {
		return map[string]string{"ApproximateNumberOfMessages": v, "MaximumMessageSize": "1048576"}, nil
	}
}

func TestQueueGaugeReadFates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		answer    func() (map[string]string, error)
		wantDepth string // exposition line, or "" when the series must be absent
		wantErrs  float64
	}{
		{name: "count", answer: depthAnswer("7"), wantDepth: `worker_dlq_messages{queue="sideEffect"} 7`},
		{name: "empty queue", answer: depthAnswer("0"), wantDepth: `worker_dlq_messages{queue="sideEffect"} 0`},
		{name: "API error", answer: func() (map[string]string, error) { return nil, errors.New("AccessDenied") }, wantErrs: 1},
		{name: "attribute missing", answer: func() (map[string]string, error) { return map[string]string{}, nil }, wantErrs: 1},
		{name: "not a number", answer: depthAnswer("lots"), wantErrs: 1},
		{name: "negative", answer: depthAnswer("-1"), wantErrs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			fake := &fakeSQS{answers: map[string]func() (map[string]string, error){"https://dlq/side": tc.answer}}
			g := NewQueueGauge(QueueGaugeConfig{DLQs: map[string]string{"sideEffect": "https://dlq/side"}}, fake, reg, zaptest.NewLogger(t))
			g.read(context.Background(), "sideEffect")

			require.Equal(t, tc.wantErrs, testutil.ToFloat64(g.errors.WithLabelValues("sideEffect")))
			n, err := testutil.GatherAndCount(reg, "worker_dlq_messages")
			require.NoError(t, err)
			if tc.wantDepth == "" {
				require.Zero(t, n, "an unknown depth is not exported")
				return
			}
			require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(
				"# HELP worker_dlq_messages Approximate number of messages in the dead-letter queue of each queue.\n"+
					"# TYPE worker_dlq_messages gauge\n"+tc.wantDepth+"\n"), "worker_dlq_messages"))
		})
	}
}

func TestQueueGaugeRunReadsEveryQueueEachInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		failing := true
		fake := &fakeSQS{answers: map[string]func() (map[string]string, error){
			"https://dlq/a": depthAnswer("3"),
			"https://dlq/b": func() (map[string]string, error) {
				if failing {
					return nil, errors.New("throttled")
				}
				return map[string]string{"ApproximateNumberOfMessages": "1", "MaximumMessageSize": "1048576"}, nil
			},
		}}
		g := NewQueueGauge(QueueGaugeConfig{DLQs: map[string]string{"a": "https://dlq/a", "b": "https://dlq/b"}, Interval: time.Minute},
			fake, reg, zaptest.NewLogger(t))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx) }()

		synctest.Wait()
		require.Equal(t, 2, fake.callCount(), "both DLQs read at start")
		require.Equal(t, 3.0, testutil.ToFloat64(g.depth.WithLabelValues("a")))
		require.Equal(t, 1.0, testutil.ToFloat64(g.errors.WithLabelValues("b")))

		fake.mu.Lock() // the answers run under fake.mu
		failing = false
		fake.mu.Unlock()
		time.Sleep(66 * time.Second) // fake clock: past the interval plus its largest jitter
		synctest.Wait()
		require.Equal(t, 4, fake.callCount(), "read again after one interval")
		require.Equal(t, 1.0, testutil.ToFloat64(g.depth.WithLabelValues("b")), "recovered")

		cancel()
		require.NoError(t, <-done)
	})
}

func TestQueueGaugeWithoutQueuesReturnsAtOnce(t *testing.T) {
	t.Parallel()
	g := NewQueueGauge(QueueGaugeConfig{}, &fakeSQS{}, prometheus.NewRegistry(), zaptest.NewLogger(t))
	require.NoError(t, g.Run(context.Background()))
}

func TestJitterStaysWithinTenPercent(t *testing.T) {
	t.Parallel()
	for range 1000 {
		d := jitter(time.Minute)
		require.GreaterOrEqual(t, d, 54*time.Second)
		require.LessOrEqual(t, d, 66*time.Second)
	}
}

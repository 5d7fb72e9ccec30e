package jobs

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// queueSQS is an SQS queue at the consumer's boundary: each message is received
// once (nothing comes back here), deletes and visibility changes are recorded by
// receipt. It refuses what SQS refuses that this test could send: an empty batch.
type queueSQS struct {
	mu       sync.Mutex
	pending  []types.Message
	deleted  map[string]bool
	released map[string]bool // visibility changed: back for redelivery
}

func newQueueSQS(bodies ...string) *queueSQS {
	q := &queueSQS{deleted: map[string]bool{}, released: map[string]bool{}}
	for i, b := range bodies {
		id := "m" + strconv.Itoa(i)
		q.pending = append(q.pending, types.Message{MessageId: aws.String(id), ReceiptHandle: aws.String(id), Body: aws.String(b),
			Attributes: map[string]string{"ApproximateReceiveCount": "1"}})
	}
	return q
}

func (q *queueSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	q.mu.Lock()
	n := min(int(in.MaxNumberOfMessages), len(q.pending))
	out := q.pending[:n:n]
	q.pending = q.pending[n:]
	q.mu.Unlock()
	if n == 0 {
		select { // an empty long poll, short
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return &sqs.ReceiveMessageOutput{Messages: out}, nil
}

func (q *queueSQS) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	if len(in.Entries) == 0 {
		return nil, &types.EmptyBatchRequest{}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		q.deleted[aws.ToString(e.ReceiptHandle)] = true
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (q *queueSQS) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.released[aws.ToString(in.ReceiptHandle)] = true
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (q *queueSQS) ChangeMessageVisibilityBatch(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if len(in.Entries) == 0 {
		return nil, &types.EmptyBatchRequest{}
	}
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (q *queueSQS) SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	panic("no DLQ here")
}

func (q *queueSQS) settled(receipt string) (deleted, released bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.deleted[receipt], q.released[receipt]
}

// A job that ignores its context runs on its message's handler goroutine (no
// goroutine of its own) until its deadline and giveUpAfter have passed; then its
// watch takes the message over: the message gets its outcome (retry: a job that
// did not finish within its deadline), its line and its settling, its slot is
// freed, and a new goroutine serves the queue in the held one's place. With
// concurrency 1, the messages after it are handled while the job still holds its
// goroutine. The job's late return changes nothing; nothing leaks.
func TestAStuckJobsMessageIsTakenOverAndItsHandlerReplaced(t *testing.T) {
	release := make(chan struct{})
	stuck := func(ctx context.Context, t *Task) (any, error) {
		if t.MessageID == "m0" {
			<-release // ignores ctx
			return "late", nil
		}
		return nil, nil
	}
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "stuck", DetailTypes: []string{"work"}}}},
		[]Job{{Name: "stuck", Mode: Observe, Run: stuck}}, nil, nil, nil, zap.New(core), m)
	require.NoError(t, err)
	body := envelope("work", map[string]any{"n": 1})
	q := newQueueSQS(body, body, body)
	p, err := consumer.NewPoller(consumer.Config{Queue: "q", QueueURL: "https://sqs/q", Concurrency: 1, MaxPollers: 1, MaxReceiveCount: 5,
		VisibilityTimeout: 30 * time.Second, PollWait: time.Second, HandlerTimeout: 200 * time.Millisecond, DrainTimeout: 5 * time.Second, FlushTimeout: 5 * time.Second},
		q, r, zap.NewNop(), consumer.NewMetrics(reg))
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()

	require.Eventually(t, func() bool {
		_, r0 := q.settled("m0")
		d1, _ := q.settled("m1")
		d2, _ := q.settled("m2")
		return r0 && d1 && d2
	}, 10*time.Second, 10*time.Millisecond, "m0 released for a retry, m1 and m2 deleted, while m0's job still runs")
	require.Equal(t, 1.0, testutil.ToFloat64(m.abandoned.WithLabelValues("stuck")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.lingering.WithLabelValues("stuck")), "its job still holds a goroutine")
	outcomes := map[string]string{}
	for _, l := range logs.FilterMessage("message handled").All() {
		outcomes[l.ContextMap()["message_id"].(string)] = l.ContextMap()["outcome"].(string)
	}
	require.Equal(t, map[string]string{"m0": "retry", "m1": "success", "m2": "success"}, outcomes)
	require.Len(t, logs.FilterMessage("job still running after its context ended; no longer waited for").All(), 1)

	close(release) // the job returns at last: nothing more happens to m0
	require.Eventually(t, func() bool { return testutil.ToFloat64(m.lingering.WithLabelValues("stuck")) == 0 },
		5*time.Second, 10*time.Millisecond)
	stop()
	require.NoError(t, <-ran)
	d0, _ := q.settled("m0")
	require.False(t, d0, "a message taken over is settled once, by its watch")
	require.Len(t, logs.FilterMessage("message handled").All(), 3)
}

// deepJob uses about 32 KiB of stack, as a job's SDK or HTTP call does.
func deepJob(ctx context.Context, t *Task) (any, error) { return nil, deepen(64) }

//go:noinline
func deepen(n int) error {
	var pad [480]byte
	if n == 0 {
		return nil
	}
	pad[n%len(pad)] = byte(n)
	if err := deepen(n - 1); err != nil || pad[0] == 1 {
		return err
	}
	return nil
}

// BenchmarkJobCall: a job run on the handler's own goroutine (a Poller's message:
// jobWatch), whose stack has grown once, against one on a goroutine of its own
// (Router.call: a message not from a Poller), which grows a fresh stack each call.
func BenchmarkJobCall(b *testing.B) {
	r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "deep", DetailTypes: []string{"work"}}}},
		[]Job{{Name: "deep", Mode: Observe, Run: deepJob}}, nil, nil, nil, zap.NewNop(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	job, t := r.jobs["deep"], &Task{Queue: "q"}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
	defer cancel()
	b.Run("handler goroutine", func(b *testing.B) {
		h := &handling{t: t, series: r.metrics.forJob("deep")}
		for b.Loop() {
			w := &jobWatch{r: r, h: h, job: job, jctx: ctx, stopBeats: func() {}}
			if _, err, ok := w.run(true); err != nil || !ok {
				b.Fatal(err)
			}
		}
	})
	b.Run("own goroutine", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.call(ctx, job, t); err != nil {
				b.Fatal(err)
			}
		}
	})
}

package loadtest

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPercentileIsNearestRank(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	require.Equal(t, time.Duration(5), Percentile(ds, 50))
	require.Equal(t, time.Duration(10), Percentile(ds, 99))
	require.Equal(t, time.Duration(1), Percentile(ds, 1))
	require.Zero(t, Percentile(nil, 50))
}

func TestProcessFiguresOfThisProcess(t *testing.T) {
	mem, err := ProcessMemory("self")
	require.NoError(t, err)
	require.Positive(t, mem.RSS)
	require.GreaterOrEqual(t, mem.PeakRSS, mem.RSS)
	require.NoError(t, ResetPeakRSS())
	// /proc counts CPU in clock ticks (10 ms): use a few, so that a quick test
	// process has some to read.
	for start := CPUTime(); CPUTime()-start < 50*time.Millisecond; {
	}
	cpu, err := ProcessCPU(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, cpu)
	require.Positive(t, CPUTime())
}

type history []sfntypes.HistoryEvent

func (h history) GetExecutionHistory(context.Context, *sfn.GetExecutionHistoryInput, ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error) {
	return &sfn.GetExecutionHistoryOutput{Events: h}, nil
}

func TestCallbackLatencyIsTaskStartedToTaskSucceeded(t *testing.T) {
	at := func(ms int) *time.Time { ts := time.UnixMilli(int64(ms)); return &ts }
	h := history{
		{Id: 1, Type: sfntypes.HistoryEventTypeExecutionStarted, Timestamp: at(0)},
		{Id: 2, Type: sfntypes.HistoryEventTypeTaskScheduled, PreviousEventId: 1, Timestamp: at(1)},
		{Id: 3, Type: sfntypes.HistoryEventTypeTaskStarted, PreviousEventId: 2, Timestamp: at(2)},
		{Id: 4, Type: sfntypes.HistoryEventTypeTaskStarted, PreviousEventId: 2, Timestamp: at(10)},
		{Id: 5, Type: sfntypes.HistoryEventTypeTaskSubmitted, PreviousEventId: 3, Timestamp: at(50)},
		{Id: 6, Type: sfntypes.HistoryEventTypeTaskSubmitted, PreviousEventId: 4, Timestamp: at(60)},
		{Id: 7, Type: sfntypes.HistoryEventTypeTaskSucceeded, PreviousEventId: 6, Timestamp: at(310)},
		{Id: 8, Type: sfntypes.HistoryEventTypeTaskSucceeded, PreviousEventId: 5, Timestamp: at(102)},
		{Id: 9, Type: sfntypes.HistoryEventTypeTaskFailed, PreviousEventId: 5, Timestamp: at(500)},
	}
	got, err := CallbackLatencies(context.Background(), h, "arn")
	require.NoError(t, err)
	require.ElementsMatch(t, []time.Duration{300 * time.Millisecond, 100 * time.Millisecond}, got)
}

// oneMessageSQS serves the same message to every receive and records deletes.
type oneMessageSQS struct {
	mu      sync.Mutex
	deletes []string
}

func (f *oneMessageSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	if in.MaxNumberOfMessages != 1 {
		return nil, errors.New("the naive consumer asks for one message")
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Millisecond):
	}
	return &sqs.ReceiveMessageOutput{Messages: []sqstypes.Message{{
		MessageId: aws.String("m"), Body: aws.String("ok"), ReceiptHandle: aws.String("rh"),
		Attributes: map[string]string{"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000"},
	}}}, nil
}

func (f *oneMessageSQS) DeleteMessage(_ context.Context, in *sqs.DeleteMessageInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, aws.ToString(in.ReceiptHandle))
	return &sqs.DeleteMessageOutput{}, nil
}

func TestNaiveDeletesOnlyWhatItsHandlerFinished(t *testing.T) {
	f := &oneMessageSQS{}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var handled int
	h := consumer.HandlerFunc(func(_ context.Context, m consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, "q", m.Queue)
		require.Equal(t, 2, m.ReceiveCount)
		handled++
		if handled%2 == 0 {
			return errors.New("left for redelivery")
		}
		if handled >= 10 {
			cancel()
		}
		return nil
	})
	RunNaive(ctx, f, NaiveQueue{Name: "q", URL: "u", Concurrency: 1, Wait: time.Second}, h)
	require.Equal(t, (handled+1)/2, len(f.deletes), "one delete per finished message, none for an error")
	require.True(t, strings.HasPrefix(strings.Join(f.deletes, ","), "rh"))
}

package loadtest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

// HistoryAPI is what CallbackLatencies reads.
type HistoryAPI interface {
	GetExecutionHistory(ctx context.Context, in *sfn.GetExecutionHistoryInput, optFns ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error)
}

// CallbackLatencies reads an execution's history and returns, for each callback task
// that succeeded, the time from TaskStarted (Step Functions begins putting the event)
// to TaskSucceeded (it accepted SendTaskSuccess). Both timestamps are the service's
// own, so the figure does not depend on the worker's clock or its logs.
func CallbackLatencies(ctx context.Context, client HistoryAPI, executionARN string) ([]time.Duration, error) {
	byID := map[int64]types.HistoryEvent{}
	var succeeded []types.HistoryEvent
	p := sfn.NewGetExecutionHistoryPaginator(client, &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(executionARN), MaxResults: 1000})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("execution history of %s: %w", executionARN, err)
		}
		for _, e := range page.Events {
			byID[e.Id] = e
			if e.Type == types.HistoryEventTypeTaskSucceeded {
				succeeded = append(succeeded, e)
			}
		}
	}
	var out []time.Duration
	for _, s := range succeeded {
		// TaskSucceeded follows TaskSubmitted, which follows TaskStarted.
		e, ok := s, true
		for ok && e.Type != types.HistoryEventTypeTaskStarted {
			e, ok = byID[e.PreviousEventId]
		}
		if ok {
			out = append(out, aws.ToTime(s.Timestamp).Sub(aws.ToTime(e.Timestamp)))
		}
	}
	return out, nil
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of ds; 0 when empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	rank := int(math.Ceil(float64(len(s))*p/100)) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

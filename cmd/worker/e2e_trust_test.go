package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// TestE2EHostileProducerCannotRewriteAnotherExecution: the outside review's repro. A
// producer on the bus puts a processSingle event with a forged token and a victim
// execution's ARN, then a postProcessAll event. Neither reaches a job through a
// source the topology does not allow; through an allowed source the forged token is
// refused before anything is written; the victim's report keeps its own people.
func TestE2EHostileProducerCannotRewriteAnotherExecution(t *testing.T) {
	st := newStack(t)
	w := st.startWorker()
	victim := st.startExecution(`{"names": ["Alice", "Bob"]}`)
	d := st.waitExecution(victim, 2*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status)
	before := st.requireConsistent(victim, output{d.Output}, 2)
	name := victim[strings.LastIndex(victim, ":")+1:]

	eb := eventbridge.NewFromConfig(awstest.Config(t))
	put := func(source, detailType string, detail map[string]any) {
		b, _ := json.Marshal(detail)
		out, err := eb.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
			EventBusName: aws.String(st.out.EventBus), Source: aws.String(source), DetailType: aws.String(detailType), Detail: aws.String(string(b)),
		}}})
		require.NoError(t, err)
		require.Zero(t, out.FailedEntryCount)
	}
	forged := map[string]any{"TaskToken": "bogus", "executionArn": victim, "name": "Mallory", "index": 2}
	all := map[string]any{"TaskToken": "bogus", "executionArn": victim, "names": []string{"Alice", "Bob", "Mallory"}}
	for _, source := range []string{"evil.producer", "taskbridge.stepfunctions"} {
		put(source, "processSingle", forged)
		put(source, "postProcessAll", all)
	}

	// The allowed source's events reach the jobs, which refuse the token with a warning.
	eventually(t, time.Minute, "forged tokens refused", func() bool {
		return strings.Count(w.Logs(), `"outcome":"token_refused"`) >= 2
	})
	st.requireQueuesDrain(time.Minute)
	require.Empty(t, st.listKeys(st.out.DataBucket, name+"/profiles/00002-"), "no profile written for the forged item")
	var after report
	st.getJSON(st.out.DataBucket, name+"/0-cookies.json", &after)
	require.Equal(t, before, after, "the victim's report is untouched")
	require.Contains(t, w.Logs(), `"level":"warn"`)
	require.NotContains(t, w.Logs(), "evil.producer", "the other source's events never reached a queue")
}

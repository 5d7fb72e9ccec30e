package console

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

// FuzzShownText: what an execution's history and objects hold (outside input) is
// shown without a task token member left readable, at most maxShown bytes plus the
// ellipsis, valid UTF-8 when it came in so; the timeline's readers never panic.
func FuzzShownText(f *testing.F) {
	for _, seed := range []string{
		`{"Entries":[{"DetailType":"getMultiple","Detail":{"TaskToken":"AAAA-secret-token"}}]}`,
		`{"claimCheck": "s3://tb-data/claim-checks/ab.json", "size": 300000}`,
		`see https://b.s3.amazonaws.com/k?X-Amz-Signature=abc&X-Amz-Credential=def`,
		`{"taskToken": "abc\"def`,
		"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
		strings.Repeat("é", 3000),
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := shown(in)
		if len(out) > maxShown+len(" …") {
			t.Fatalf("shown is %d bytes", len(out))
		}
		if utf8.ValidString(in) && !utf8.ValidString(out) {
			t.Fatalf("shown made valid UTF-8 invalid: %q", out)
		}
		if strings.Contains(in, `"TaskToken":"AAAA-secret-token"`) && strings.Contains(out, "AAAA-secret-token") {
			t.Fatalf("a token is readable: %q", out)
		}
		_ = detailType(in)
		_ = claimCheck(in, "tb-data")
		_ = traceID(in)
		events := []sfntypes.HistoryEvent{
			{Id: 1, Type: sfntypes.HistoryEventTypeTaskStateEntered, StateEnteredEventDetails: &sfntypes.StateEnteredEventDetails{Name: aws.String(in)}},
			{Id: 2, PreviousEventId: 1, Type: sfntypes.HistoryEventTypeTaskScheduled, TaskScheduledEventDetails: &sfntypes.TaskScheduledEventDetails{Resource: aws.String("waitForTaskToken"), Parameters: aws.String(in)}},
			{Id: 3, PreviousEventId: 2, Type: sfntypes.HistoryEventTypeTaskSucceeded, TaskSucceededEventDetails: &sfntypes.TaskSucceededEventDetails{Output: aws.String(in)}},
			{Id: 4, PreviousEventId: 9, Type: sfntypes.HistoryEventTypeTaskStateExited, StateExitedEventDetails: &sfntypes.StateExitedEventDetails{Name: aws.String(in)}},
		}
		steps := timeline(events, Stack{DataBucket: "tb-data"})
		if len(steps) != 1 || steps[0].Outcome != "Succeeded" || steps[0].Attempts != 1 {
			t.Fatalf("one step, scheduled once, succeeded; got %+v", steps)
		}
	})
}

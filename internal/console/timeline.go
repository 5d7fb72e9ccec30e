package console

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

// step is one state an execution entered, as the timeline shows it.
type step struct {
	Name     string
	Type     string // Task, Map, Pass, Choice, ...
	Entered  time.Time
	Exited   time.Time
	Duration time.Duration
	// Callback steps (a Task with a resource …waitForTaskToken on events).
	DetailType string
	Jobs       []Queue // the queues (and jobs) the step's event is routed to
	Attempts   int     // TaskScheduled events: Step Functions' own retries
	Outcome    string  // Succeeded, Failed, TimedOut, Aborted; empty while running
	Error      string
	Cause      string
	Output     string
	ClaimCheck string // S3 key of a claim-checked output
	Offset     time.Duration
}

// Callback reports whether the step waited on a token.
func (s step) Callback() bool { return s.DetailType != "" }

// timeline turns history events into steps. An event belongs to the step whose
// StateEntered event its PreviousEventId chain leads to (Step Functions chains the
// events of one state; parallel Map iterations have chains of their own).
func timeline(events []sfntypes.HistoryEvent, stack Stack) []step {
	var steps []step
	stepOf := map[int64]int{}
	var start time.Time
	for _, e := range events {
		t := string(e.Type)
		at := aws.ToTime(e.Timestamp)
		if start.IsZero() {
			start = at
		}
		if strings.HasSuffix(t, "StateEntered") && e.StateEnteredEventDetails != nil {
			stepOf[e.Id] = len(steps)
			steps = append(steps, step{Name: aws.ToString(e.StateEnteredEventDetails.Name), Type: strings.TrimSuffix(t, "StateEntered"), Entered: at, Offset: at.Sub(start)})
			continue
		}
		i, ok := stepOf[e.PreviousEventId]
		if x := e.StateExitedEventDetails; x != nil && (!ok || steps[i].Name != aws.ToString(x.Name)) {
			// A Map's or Parallel's exit follows its branches' last events: it
			// closes the newest open step of its name.
			i, ok = openStep(steps, aws.ToString(x.Name))
		}
		if !ok {
			continue
		}
		stepOf[e.Id] = i
		steps[i].record(e, at, stack)
	}
	return steps
}

// record adds to the step what e, one of its events that happened at at, tells.
func (st *step) record(e sfntypes.HistoryEvent, at time.Time, stack Stack) {
	if outcome, code, cause, ok := failure(e); ok {
		st.Outcome, st.Error, st.Cause = outcome, aws.ToString(code), shown(aws.ToString(cause))
		return
	}
	switch {
	case e.TaskScheduledEventDetails != nil:
		st.Attempts++
		if strings.Contains(aws.ToString(e.TaskScheduledEventDetails.Resource), "waitForTaskToken") {
			st.DetailType = detailType(aws.ToString(e.TaskScheduledEventDetails.Parameters))
			st.Jobs = stack.queuesFor(st.DetailType)
		}
	case e.TaskSucceededEventDetails != nil:
		st.Outcome = "Succeeded"
		out := aws.ToString(e.TaskSucceededEventDetails.Output)
		st.Output, st.ClaimCheck = shown(out), claimCheck(out, stack.DataBucket)
	case e.StateExitedEventDetails != nil:
		st.Exited = at
		st.Duration = at.Sub(st.Entered)
		if st.Outcome == "" {
			st.Outcome = "Succeeded"
		}
		if st.Output == "" {
			out := aws.ToString(e.StateExitedEventDetails.Output)
			st.Output = shown(out)
		}
	}
}

// failure reads the events that end a step in failure: its outcome, error and
// cause; ok is false for any other event.
func failure(e sfntypes.HistoryEvent) (outcome string, code, cause *string, ok bool) {
	switch {
	case e.TaskFailedEventDetails != nil:
		return "Failed", e.TaskFailedEventDetails.Error, e.TaskFailedEventDetails.Cause, true
	case e.TaskTimedOutEventDetails != nil:
		return "TimedOut", e.TaskTimedOutEventDetails.Error, e.TaskTimedOutEventDetails.Cause, true
	case e.TaskSubmitFailedEventDetails != nil:
		return "Failed", e.TaskSubmitFailedEventDetails.Error, e.TaskSubmitFailedEventDetails.Cause, true
	case e.TaskStartFailedEventDetails != nil:
		return "Failed", e.TaskStartFailedEventDetails.Error, e.TaskStartFailedEventDetails.Cause, true
	case e.MapRunFailedEventDetails != nil:
		return "Failed", e.MapRunFailedEventDetails.Error, e.MapRunFailedEventDetails.Cause, true
	}
	return "", nil, nil, false
}

// detailType reads the DetailType of a putEvents step's parameters.
func detailType(parameters string) string {
	var p struct {
		Entries []struct {
			DetailType string `json:"DetailType"`
		} `json:"Entries"`
	}
	if json.Unmarshal([]byte(parameters), &p) != nil || len(p.Entries) == 0 {
		return ""
	}
	return p.Entries[0].DetailType
}

func openStep(steps []step, name string) (int, bool) {
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].Name == name && steps[i].Exited.IsZero() {
			return i, true
		}
	}
	return 0, false
}

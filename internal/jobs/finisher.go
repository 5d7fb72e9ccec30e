package jobs

import (
	"context"
	"encoding/json"
)

// FinisherJob is the name of the built-in finisher, bound to the taskFinished queue.
const FinisherJob = "finisher"

// Finisher completes the token of a taskFinished event with the event's detail, less
// the token itself (a credential, not output): any producer can finish a task with
// one event, no Step Functions permissions needed. A forged token completes nothing.
func Finisher() Job {
	return Job{Name: FinisherJob, Mode: Complete, Run: func(_ context.Context, t *Task) (any, error) {
		out, err := t.DetailWithoutToken()
		if err != nil {
			return nil, err
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(out, &obj); err != nil {
			return nil, invalidf("detail of %s is not a JSON object", t.DetailType)
		}
		return out, nil
	}}
}

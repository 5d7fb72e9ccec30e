package topology

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// queueName is what SQS allows of a name, less the room the stack prefix and the
// "-dlq" suffix take (80 characters in all).
var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)

// KindCheck reports the problems of the settings of a queue's kind (exec, http,
// startExecution, s3Batch), each error one problem. They belong to the kind's own
// package, whose constructor runs the same check when `worker run` builds the
// queue: the caller that knows the kinds passes it (topology imports none of them),
// so `validate` and `run` cannot disagree. nil checks none.
type KindCheck func(t *Topology, q Queue) error

// Check reports every problem of the topology and its ASL files at once, each naming
// its queue or state machine. jobs are the names of the registered Go jobs; kinds
// checks each configured kind's settings.
func (t *Topology) Check(jobs []string, kinds KindCheck) error {
	errs := t.checkHead()
	seen := map[string]bool{}
	batchers := 0
	for i, q := range t.Queues {
		where := fmt.Sprintf("queue %q", q.Name)
		if q.Name == "" {
			where = fmt.Sprintf("queue %d", i+1)
		}
		errs = append(errs, checkQueueName(where, q, seen)...)
		errs = append(errs, t.checkKind(where, q, jobs, kinds)...)
		errs = append(errs, checkRouting(where, q)...)
		errs = append(errs, checkTuning(where, q)...)
		if q.Kind() == "s3Batch" {
			batchers++
		}
	}
	if batchers > 1 {
		errs = append(errs, fmt.Errorf("topology: %d s3Batch queues; the landing bucket feeds one", batchers))
	}
	errs = append(errs, t.checkStateMachines()...)
	errs = append(errs, t.checkDelivery()...)
	return errors.Join(errs...)
}

// checkHead checks what the topology says besides its queues and state machines.
func (t *Topology) checkHead() []error {
	var errs []error
	if t.Source == "" {
		errs = append(errs, errors.New("topology: source is empty (the source of the worker's own events)"))
	}
	if len(t.Queues) == 0 {
		errs = append(errs, errors.New("topology: no queues"))
	}
	return errs
}

// checkQueueName checks a queue's name and notes it in seen.
func checkQueueName(where string, q Queue, seen map[string]bool) []error {
	var errs []error
	if q.Name == "" {
		errs = append(errs, fmt.Errorf("%s: name is empty", where))
	} else if !queueName.MatchString(q.Name) {
		errs = append(errs, fmt.Errorf("%s: name must be 1-40 letters, digits, '-' or '_'", where))
	}
	if q.Name != "" && seen[q.Name] {
		errs = append(errs, fmt.Errorf("%s: duplicate queue name", where))
	}
	seen[q.Name] = true
	return errs
}

// checkKind checks what the queue runs: exactly one kind, what the topology knows of
// it (registered jobs, its state machines), and the kind's own settings by kinds.
func (t *Topology) checkKind(where string, q Queue, jobs []string, kinds KindCheck) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
	}
	switch kind := q.Kind(); kind {
	case "":
		add("says nothing to run: set one of job, exec, http, startExecution, s3Batch")
		return errs
	case "several":
		add("sets more than one of job, exec, http, startExecution, s3Batch")
		return errs
	case "job":
		if !slices.Contains(jobs, q.Job) {
			add("job %q is not registered with this worker (registered: %s)", q.Job, strings.Join(jobs, ", "))
		}
		return errs
	case "startExecution":
		if sm := q.StartExecution.StateMachine; sm != "" {
			if _, ok := t.StateMachine(sm); !ok {
				add("startExecution.stateMachine %q is not a state machine of the topology", sm)
			}
		}
	case "s3Batch":
		if len(q.DetailTypes) > 0 {
			add("an s3Batch queue takes the landing bucket's Object Created events; detailTypes do not apply")
		}
	}
	if k := q.Kind(); k != "s3Batch" && slices.Contains(jobs, q.Name) {
		// Such a queue's job is named after the queue, in metrics and failures.
		add("a %s queue cannot share its name with the registered Go job %q", k, q.Name)
	}
	if kinds != nil {
		for _, err := range each(kinds(t, q)) {
			add("%s.%v", q.Kind(), err)
		}
	}
	return errs
}

// each lists the errors of an errors.Join, or err alone.
func each(err error) []error {
	if err == nil {
		return nil
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var all []error
		for _, e := range joined.Unwrap() {
			all = append(all, each(e)...)
		}
		return all
	}
	return []error{err}
}

// checkRouting checks what routes events to the queue.
func checkRouting(where string, q Queue) []error {
	var errs []error
	if q.S3Batch == nil && len(q.DetailTypes) == 0 {
		errs = append(errs, fmt.Errorf("%s: nothing routes to it (no detailTypes)", where))
	}
	if slices.Contains(q.DetailTypes, "") || slices.Contains(q.Sources, "") {
		errs = append(errs, fmt.Errorf("%s: empty detail type or source", where))
	}
	return errs
}

// checkTuning checks the queue's numbers against what SQS and the worker allow.
func checkTuning(where string, q Queue) []error {
	var errs []error
	if q.Concurrency < 1 || q.Concurrency > 1000 {
		errs = append(errs, fmt.Errorf("%s: concurrency must be 1..1000, got %d", where, q.Concurrency))
	}
	if q.VisibilityTimeoutSeconds < 1 || q.VisibilityTimeoutSeconds > 43200 {
		errs = append(errs, fmt.Errorf("%s: visibilityTimeoutSeconds must be 1..43200, got %d", where, q.VisibilityTimeoutSeconds))
	}
	if q.MaxReceiveCount < 1 || q.MaxReceiveCount > 1000 {
		errs = append(errs, fmt.Errorf("%s: maxReceiveCount must be 1..1000, got %d", where, q.MaxReceiveCount))
	}
	if h := q.HeartbeatInterval.Duration; h != 0 && (h < time.Second || h > 12*time.Hour) {
		errs = append(errs, fmt.Errorf("%s: heartbeatInterval must be 1s..12h, got %s", where, h))
	}
	return errs
}

// checkVars fill every placeholder the worker and terraform know, to read the ASL.
var checkVars = Names{Stack: "check"}.DefinitionVars("aws")

func (t *Topology) checkStateMachines() []error {
	var errs []error
	seen := map[string]bool{}
	takes := map[string]bool{}
	for _, q := range t.Queues {
		for _, dt := range q.DetailTypes {
			takes[dt] = true
		}
	}
	for i, sm := range t.StateMachines {
		where := fmt.Sprintf("state machine %q", sm.Name)
		if sm.Name == "" {
			where = fmt.Sprintf("state machine %d", i+1)
			errs = append(errs, fmt.Errorf("%s: name is empty", where))
		} else if !queueName.MatchString(sm.Name) {
			errs = append(errs, fmt.Errorf("%s: name must be 1-40 letters, digits, '-' or '_'", where))
		}
		if seen[sm.Name] && sm.Name != "" {
			errs = append(errs, fmt.Errorf("%s: duplicate state machine name", where))
		}
		seen[sm.Name] = true
		if sm.Definition == "" {
			errs = append(errs, fmt.Errorf("%s: definition is empty", where))
			continue
		}
		def, err := t.Definition(sm, checkVars)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		steps, problems, err := readASL(sm.Name, def)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range problems {
			errs = append(errs, fmt.Errorf("%s: %s", where, p))
		}
		for _, s := range steps {
			if s.DetailType != "" && !takes[s.DetailType] {
				errs = append(errs, fmt.Errorf("%s: step %s puts detail type %q, which no queue takes", where, s.State, s.DetailType))
			}
		}
	}
	return errs
}

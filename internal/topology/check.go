package topology

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// queueName is what SQS allows of a name, less the room the stack prefix and the
// "-dlq" suffix take (80 characters in all).
var queueName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)

// Check reports every problem of the topology and its ASL files at once, each naming
// its queue or state machine. jobs are the names of the registered Go jobs.
func (t *Topology) Check(jobs []string) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if t.Source == "" {
		add("topology: source is empty (the source of the worker's own events)")
	}
	if len(t.Queues) == 0 {
		add("topology: no queues")
	}
	seen := map[string]bool{}
	batchers := 0
	for i, q := range t.Queues {
		where := fmt.Sprintf("queue %q", q.Name)
		if q.Name == "" {
			where = fmt.Sprintf("queue %d", i+1)
			add("%s: name is empty", where)
		} else if !queueName.MatchString(q.Name) {
			add("%s: name must be 1-40 letters, digits, '-' or '_'", where)
		}
		if q.Name != "" && seen[q.Name] {
			add("%s: duplicate queue name", where)
		}
		seen[q.Name] = true
		switch kind := q.Kind(); kind {
		case "":
			add("%s: says nothing to run: set one of job, exec, http, startExecution, s3Batch", where)
		case "several":
			add("%s: sets more than one of job, exec, http, startExecution, s3Batch", where)
		case "job":
			if !slices.Contains(jobs, q.Job) {
				add("%s: job %q is not registered with this worker (registered: %s)", where, q.Job, strings.Join(jobs, ", "))
			}
		case "exec":
			errs = append(errs, t.checkExec(where, *q.Exec)...)
		case "http":
			if err := checkURL(q.HTTP.URL); err != nil {
				add("%s: http.url: %v", where, err)
			}
			if q.HTTP.Timeout.Duration < 0 {
				add("%s: http.timeout must not be negative", where)
			}
		case "startExecution":
			if q.StartExecution.StateMachine == "" {
				add("%s: startExecution.stateMachine is empty", where)
			} else if _, ok := t.StateMachine(q.StartExecution.StateMachine); !ok {
				add("%s: startExecution.stateMachine %q is not a state machine of the topology", where, q.StartExecution.StateMachine)
			}
		case "s3Batch":
			batchers++
			if len(q.DetailTypes) > 0 {
				add("%s: an s3Batch queue takes the landing bucket's Object Created events; detailTypes do not apply", where)
			}
			if b := q.S3Batch; b.MaxFiles < 0 || b.MaxFiles > 10000 || b.Window.Duration < 0 {
				add("%s: s3Batch.maxFiles must be 0..10000 and s3Batch.window not negative", where)
			}
		}
		if k := q.Kind(); (k == "exec" || k == "http" || k == "startExecution") && slices.Contains(jobs, q.Name) {
			// Such a queue's job is named after the queue, in metrics and failures.
			add("%s: a %s queue cannot share its name with the registered Go job %q", where, k, q.Name)
		}
		if q.S3Batch == nil && len(q.DetailTypes) == 0 {
			add("%s: nothing routes to it (no detailTypes)", where)
		}
		if slices.Contains(q.DetailTypes, "") || slices.Contains(q.Sources, "") {
			add("%s: empty detail type or source", where)
		}
		if q.Concurrency < 1 || q.Concurrency > 1000 {
			add("%s: concurrency must be 1..1000, got %d", where, q.Concurrency)
		}
		if q.VisibilityTimeoutSeconds < 1 || q.VisibilityTimeoutSeconds > 43200 {
			add("%s: visibilityTimeoutSeconds must be 1..43200, got %d", where, q.VisibilityTimeoutSeconds)
		}
		if q.MaxReceiveCount < 1 || q.MaxReceiveCount > 1000 {
			add("%s: maxReceiveCount must be 1..1000, got %d", where, q.MaxReceiveCount)
		}
	}
	if batchers > 1 {
		add("topology: %d s3Batch queues; the landing bucket feeds one", batchers)
	}
	errs = append(errs, t.checkStateMachines()...)
	return errors.Join(errs...)
}

func (t *Topology) checkExec(where string, e Exec) []error {
	var errs []error
	if len(e.Command) == 0 || e.Command[0] == "" {
		return []error{fmt.Errorf("%s: exec.command is empty", where)}
	}
	if e.Timeout.Duration < 0 {
		errs = append(errs, fmt.Errorf("%s: exec.timeout must not be negative", where))
	}
	if cmd := e.Command[0]; strings.ContainsRune(cmd, '/') && t.Dir != "" {
		// A path (not a bare name looked up in PATH) resolves from the topology's
		// folder; it must be there when the worker starts.
		p := cmd
		if !filepath.IsAbs(p) {
			p = filepath.Join(t.Dir, p)
		}
		if st, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: exec.command %s: %w", where, cmd, err))
		} else if st.IsDir() || st.Mode()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("%s: exec.command %s is not an executable file", where, cmd))
		}
	}
	return errs
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return errors.New("empty")
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not an http or https URL", raw)
	case u.Host == "":
		return fmt.Errorf("%q has no host", raw)
	}
	return nil
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

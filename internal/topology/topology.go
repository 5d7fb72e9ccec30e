// Package topology reads deploy/topology.json, the one source of truth for which
// event detail-types reach which queue, which job a queue feeds and how the queue is
// tuned, and names every AWS resource of a stack from it. The worker, `worker
// bootstrap` and terraform all read the same file.
package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/taskbridge/taskbridge/deploy"
)

// Topology is the parsed topology file.
type Topology struct {
	// Source is the EventBridge source of the events the worker publishes.
	Source        string         `json:"source"`
	Queues        []Queue        `json:"queues"`
	StateMachines []StateMachine `json:"stateMachines"`
}

// Queue is one SQS queue, its DLQ, the rule that feeds it and the job it feeds.
type Queue struct {
	Name string `json:"name"` // logical name, e.g. "processSingle"
	Job  string `json:"job"`  // job kind the worker runs for its messages ("batch" = the batcher)
	// DetailTypes routed to this queue from the stack's event bus.
	DetailTypes []string `json:"detailTypes,omitempty"`
	// S3ObjectCreated routes aws.s3 "Object Created" events of the landing bucket instead.
	S3ObjectCreated          bool `json:"s3ObjectCreated,omitempty"`
	Concurrency              int  `json:"concurrency"`              // jobs in flight per process
	VisibilityTimeoutSeconds int  `json:"visibilityTimeoutSeconds"` // queue default
	MaxReceiveCount          int  `json:"maxReceiveCount"`          // receives before the DLQ
}

// StateMachine is an ASL definition shipped under deploy/.
type StateMachine struct {
	Name       string `json:"name"`       // logical name, e.g. "cookies"
	Definition string `json:"definition"` // path relative to deploy/
}

// Load parses the embedded deploy/topology.json.
func Load() (Topology, error) {
	b, err := fs.ReadFile(deploy.Files, "topology.json")
	if err != nil {
		return Topology{}, fmt.Errorf("read embedded topology: %w", err)
	}
	return Parse(b)
}

// Parse decodes and validates a topology file.
func Parse(b []byte) (Topology, error) {
	var t Topology
	if err := json.Unmarshal(b, &t); err != nil {
		return Topology{}, fmt.Errorf("parse topology: %w", err)
	}
	return t, t.Validate()
}

// Validate reports every problem of the topology at once.
func (t Topology) Validate() error {
	var errs []error
	if t.Source == "" {
		errs = append(errs, errors.New("topology: source is empty"))
	}
	seen := map[string]bool{}
	for i, q := range t.Queues {
		where := fmt.Sprintf("topology: queue %d (%q)", i, q.Name)
		switch {
		case q.Name == "":
			errs = append(errs, fmt.Errorf("%s: name is empty", where))
		case seen[q.Name]:
			errs = append(errs, fmt.Errorf("%s: duplicate name", where))
		}
		seen[q.Name] = true
		if q.Job == "" {
			errs = append(errs, fmt.Errorf("%s: job is empty", where))
		}
		if len(q.DetailTypes) == 0 && !q.S3ObjectCreated {
			errs = append(errs, fmt.Errorf("%s: routes nothing (no detailTypes, not s3ObjectCreated)", where))
		}
		if q.Concurrency < 1 {
			errs = append(errs, fmt.Errorf("%s: concurrency must be >= 1", where))
		}
		if q.VisibilityTimeoutSeconds < 1 || q.VisibilityTimeoutSeconds > 43200 {
			errs = append(errs, fmt.Errorf("%s: visibilityTimeoutSeconds must be 1..43200", where))
		}
		if q.MaxReceiveCount < 1 || q.MaxReceiveCount > 1000 {
			errs = append(errs, fmt.Errorf("%s: maxReceiveCount must be 1..1000", where))
		}
	}
	for _, sm := range t.StateMachines {
		if sm.Name == "" || sm.Definition == "" {
			errs = append(errs, fmt.Errorf("topology: state machine %q needs a name and a definition", sm.Name))
		}
	}
	return errors.Join(errs...)
}

// Queue returns the queue with the given logical name.
func (t Topology) Queue(name string) (Queue, bool) {
	for _, q := range t.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return Queue{}, false
}

// Definition returns the ASL of a state machine with its ${placeholders} filled from
// vars (the same names terraform's templatefile gets). A placeholder without a value
// is an error, as it is in terraform.
func (t Topology) Definition(sm StateMachine, vars map[string]string) ([]byte, error) {
	b, err := fs.ReadFile(deploy.Files, sm.Definition)
	if err != nil {
		return nil, fmt.Errorf("read definition of %s: %w", sm.Name, err)
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	if i := strings.Index(s, "${"); i >= 0 {
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			end = len(s) - i - 1
		}
		return nil, fmt.Errorf("definition of %s: no value for placeholder %s", sm.Name, s[i:i+end+1])
	}
	if !json.Valid([]byte(s)) {
		return nil, fmt.Errorf("definition of %s: not valid JSON after filling placeholders", sm.Name)
	}
	return []byte(s), nil
}

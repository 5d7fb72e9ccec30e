// Package topology reads a topology file, the one source of truth for which event
// detail-types reach which queue, what a queue's messages run (a registered Go job, a
// command, an HTTP endpoint, a state machine, or the S3 batcher) and how the queue is
// tuned, together with the ASL files of its state machines. The worker, `worker
// bootstrap` and terraform all read the same file. The default is the embedded
// cookies topology (deploy/topology.json).
package topology

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/taskbridge/taskbridge/deploy"
)

// Defaults of a queue's tuning, when the file leaves it out.
const (
	DefaultConcurrency       = 4
	DefaultVisibilityTimeout = 60
	DefaultMaxReceiveCount   = 5
)

// Topology is a parsed topology file.
type Topology struct {
	Comment string `json:"$comment,omitempty"` // free text, for people
	// Source is the EventBridge source of the events the worker publishes.
	Source        string         `json:"source"`
	Queues        []Queue        `json:"queues"`
	StateMachines []StateMachine `json:"stateMachines"`
	// EventDelivery tunes how EventBridge delivers to the queues (retry policy,
	// events DLQ); nil takes the defaults (see EventDelivery).
	EventDelivery *EventDelivery `json:"eventDelivery,omitempty"`

	// Path is the file it was read from ("" for the embedded default); Dir is its
	// folder, from which ASL paths and relative commands resolve.
	Path string `json:"-"`
	Dir  string `json:"-"`
	fsys fs.FS  // where ASL files are read when Dir is "" (the embedded deploy files)
}

// Queue is one SQS queue, its DLQ, the rule that feeds it and what its messages run.
// Exactly one of Job, Exec, HTTP, StartExecution and S3Batch is set.
type Queue struct {
	Comment string `json:"$comment,omitempty"` // free text, for people
	Name    string `json:"name"`               // logical name, e.g. "processSingle"
	// DetailTypes routed to this queue from the stack's event bus.
	DetailTypes []string `json:"detailTypes,omitempty"`
	// Sources the rule accepts besides the topology's own (the sources its state
	// machines put and the worker's); AnySource drops the source filter altogether
	// (for a finisher that any producer may use: a forged token completes nothing).
	Sources   []string `json:"sources,omitempty"`
	AnySource bool     `json:"anySource,omitempty"`

	Job            string          `json:"job,omitempty"` // a Go job registered with the worker
	Exec           *Exec           `json:"exec,omitempty"`
	HTTP           *HTTP           `json:"http,omitempty"`
	StartExecution *StartExecution `json:"startExecution,omitempty"`
	S3Batch        *S3Batch        `json:"s3Batch,omitempty"`

	Concurrency              int `json:"concurrency,omitempty"`              // jobs in flight per process (default 4)
	VisibilityTimeoutSeconds int `json:"visibilityTimeoutSeconds,omitempty"` // queue default (default 60)
	MaxReceiveCount          int `json:"maxReceiveCount,omitempty"`          // receives before the DLQ (default 5)
	// HeartbeatInterval is how often a running job of this queue heartbeats its task,
	// and so how soon a job whose task closed (execution stopped, timed out) is
	// cancelled: within one interval plus a call. Default: WORKER_HEARTBEAT_INTERVAL.
	HeartbeatInterval Duration `json:"heartbeatInterval,omitzero"`
}

// Exec runs a command per message (see internal/execjob).
type Exec struct {
	Command []string          `json:"command"`
	Timeout Duration          `json:"timeout,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// Checkpoint gives the command a checkpoint file (TASKBRIDGE_CHECKPOINT_FILE).
	Checkpoint bool `json:"checkpoint,omitempty"`
}

// HTTP posts each message to a URL (see internal/httpjob).
type HTTP struct {
	URL     string            `json:"url"`
	Timeout Duration          `json:"timeout,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// Checkpoint sends the task's last checkpoint in a Taskbridge-Checkpoint
	// request header and stores the one of the response's.
	Checkpoint bool `json:"checkpoint,omitempty"`
}

// StartExecution starts a state machine of the topology per event.
type StartExecution struct {
	StateMachine string `json:"stateMachine"`
}

// S3Batch batches the landing bucket's Object Created events into Glue runs. Zero
// fields take the worker's WORKER_BATCH_* settings.
type S3Batch struct {
	MaxFiles  int      `json:"maxFiles,omitempty"`
	Window    Duration `json:"window,omitempty"`
	KeyPrefix string   `json:"keyPrefix,omitempty"`
}

// Kind names what a queue runs: job, exec, http, startExecution or s3Batch; "" when
// none is set, "several" when more than one is.
func (q Queue) Kind() string {
	var kinds []string
	if q.Job != "" {
		kinds = append(kinds, "job")
	}
	if q.Exec != nil {
		kinds = append(kinds, "exec")
	}
	if q.HTTP != nil {
		kinds = append(kinds, "http")
	}
	if q.StartExecution != nil {
		kinds = append(kinds, "startExecution")
	}
	if q.S3Batch != nil {
		kinds = append(kinds, "s3Batch")
	}
	switch len(kinds) {
	case 0:
		return ""
	case 1:
		return kinds[0]
	default:
		return "several"
	}
}

// StateMachine is an ASL definition; its path is relative to the topology's folder.
type StateMachine struct {
	Name       string `json:"name"`       // logical name, e.g. "cookies"
	Definition string `json:"definition"` // e.g. "asl/cookies.asl.json"
}

// Duration is a time.Duration written as "30m" in the file.
type Duration struct{ time.Duration }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string like \"30s\" or \"15m\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &durationError{raw: append([]byte(nil), b...), err: err}
	}
	d.Duration = v
	return nil
}

// durationError is a duration that does not read; raw is its JSON text, which
// jsonError finds in the file to name its line and queue (encoding/json gives no
// offset for an Unmarshaler's error).
type durationError struct {
	raw []byte
	err error
}

func (e *durationError) Error() string {
	return fmt.Sprintf("%s is not a duration (e.g. \"30s\", \"15m\", \"1h30m\"): %v", e.raw, e.err)
}

func (e *durationError) Unwrap() error { return e.err }

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Load reads the topology file at path, or the embedded default when path is "".
// It fails only when the file cannot be read or is not a topology document; Check
// reports everything else.
func Load(path string) (*Topology, error) {
	if path == "" {
		b, err := fs.ReadFile(deploy.Files, "topology.json")
		if err != nil {
			return nil, fmt.Errorf("read embedded topology: %w", err)
		}
		return parse(b, "", deploy.Files)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	return parse(b, abs, nil)
}

// Parse decodes a topology document whose ASL paths resolve in fsys.
func Parse(b []byte, fsys fs.FS) (*Topology, error) { return parse(b, "", fsys) }

func parse(b []byte, path string, fsys fs.FS) (*Topology, error) {
	name := path
	if name == "" {
		name = "topology"
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt key would silently mean its default
	var t Topology
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%s: %w", name, jsonError(b, err))
	}
	t.Path, t.fsys = path, fsys
	if path != "" {
		t.Dir = filepath.Dir(path)
	}
	for i := range t.Queues {
		q := &t.Queues[i]
		if q.Concurrency == 0 {
			q.Concurrency = DefaultConcurrency
		}
		if q.VisibilityTimeoutSeconds == 0 {
			q.VisibilityTimeoutSeconds = DefaultVisibilityTimeout
		}
		if q.MaxReceiveCount == 0 {
			q.MaxReceiveCount = DefaultMaxReceiveCount
		}
	}
	return &t, nil
}

// jsonError says where in b a decoding error is, as line:column.
func jsonError(b []byte, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var dur *durationError
	var offset int64 = -1
	switch {
	case errors.As(err, &syntax):
		offset = syntax.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	case errors.As(err, &dur):
		return valueError(b, dur.raw, err)
	}
	if offset < 0 {
		return unknownFieldError(b, err)
	}
	line, col := position(b, offset)
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}

// unknownFieldError says where a misspelt key is: its line, and its queue when it is
// one of a queue's keys. encoding/json names only the key.
func unknownFieldError(b []byte, err error) error {
	msg := err.Error()
	const prefix = "json: unknown field "
	if !strings.HasPrefix(msg, prefix) {
		return err
	}
	key, uerr := strconv.Unquote(strings.TrimPrefix(msg, prefix))
	if uerr != nil {
		return err
	}
	where := queueWhere(b, func(q map[string]json.RawMessage) bool { _, ok := q[key]; return ok })
	quoted, _ := json.Marshal(key)
	at := regexp.MustCompile(regexp.QuoteMeta(string(quoted)) + `\s*:`).FindIndex(b)
	if at == nil {
		return fmt.Errorf("%sunknown field %s", where, quoted)
	}
	line, col := position(b, int64(at[0])+1) // an offset after the byte, as json.SyntaxError gives it
	return fmt.Errorf("line %d, column %d: %sunknown field %s", line, col, where, quoted)
}

// queueWhere names ("queue \"x\": ") the first queue of b for which has holds; ""
// when none does or b does not read.
func queueWhere(b []byte, has func(q map[string]json.RawMessage) bool) string {
	var loose struct {
		Queues []map[string]json.RawMessage `json:"queues"`
	}
	if json.Unmarshal(b, &loose) != nil {
		return ""
	}
	for i, q := range loose.Queues {
		if !has(q) {
			continue
		}
		var name string
		_ = json.Unmarshal(q["name"], &name)
		if name == "" {
			return fmt.Sprintf("queue %d: ", i+1)
		}
		return fmt.Sprintf("queue %q: ", name)
	}
	return ""
}

// valueError says where a value that does not read (raw, its JSON text) is: the
// line of its first occurrence and the queue that holds it.
func valueError(b, raw []byte, err error) error {
	where := queueWhere(b, func(q map[string]json.RawMessage) bool {
		for _, v := range q {
			if bytes.Contains(v, raw) {
				return true
			}
		}
		return false
	})
	at := bytes.Index(b, raw)
	if at < 0 {
		return fmt.Errorf("%s%w", where, err)
	}
	line, col := position(b, int64(at)+1)
	return fmt.Errorf("line %d, column %d: %s%w", line, col, where, err)
}

func position(b []byte, offset int64) (line, col int) {
	if offset > int64(len(b)) {
		offset = int64(len(b))
	}
	before := b[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, max(col, 1)
}

// Queue returns the queue with the given logical name.
func (t *Topology) Queue(name string) (Queue, bool) {
	for _, q := range t.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return Queue{}, false
}

// StateMachine returns the state machine with the given logical name.
func (t *Topology) StateMachine(name string) (StateMachine, bool) {
	for _, sm := range t.StateMachines {
		if sm.Name == name {
			return sm, true
		}
	}
	return StateMachine{}, false
}

// Definition returns the ASL of a state machine, read relative to the topology's
// folder, with its ${placeholders} filled from vars (the names terraform's
// templatefile gets). A placeholder without a value is an error, as in terraform.
func (t *Topology) Definition(sm StateMachine, vars map[string]string) ([]byte, error) {
	raw, err := t.rawDefinition(sm)
	if err != nil {
		return nil, err
	}
	s := string(raw)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	if i := strings.Index(s, "${"); i >= 0 {
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			end = len(s) - i - 1
		}
		return nil, fmt.Errorf("state machine %q: no value for placeholder %s", sm.Name, s[i:i+end+1])
	}
	if err := json.Unmarshal([]byte(s), new(any)); err != nil {
		return nil, fmt.Errorf("state machine %q: %s is not valid JSON: %w", sm.Name, sm.Definition, jsonError([]byte(s), err))
	}
	return []byte(s), nil
}

func (t *Topology) rawDefinition(sm StateMachine) ([]byte, error) {
	var b []byte
	var err error
	if t.Dir != "" {
		p := sm.Definition
		if !filepath.IsAbs(p) {
			p = filepath.Join(t.Dir, p)
		}
		b, err = os.ReadFile(p)
	} else {
		b, err = fs.ReadFile(t.fsys, filepath.ToSlash(filepath.Clean(sm.Definition)))
	}
	if err != nil {
		return nil, fmt.Errorf("state machine %q: read definition: %w", sm.Name, err)
	}
	return b, nil
}

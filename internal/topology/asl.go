package topology

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Step is a state machine Task that puts an event on a bus
// (arn:<partition>:states:::events:putEvents[.waitForTaskToken]), one per entry.
type Step struct {
	StateMachine string
	State        string // the Task state's name; nested states as "Map/Inner"
	DetailType   string // "" when the entry computes it ("DetailType.$")
	Source       string // "" when computed
	WaitsForTask bool   // .waitForTaskToken: a job must complete the token
	Heartbeat    bool   // HeartbeatSeconds is set
}

// Steps lists the putEvents steps of every state machine, read from their ASL files
// with placeholders filled from vars.
func (t *Topology) Steps(vars map[string]string) ([]Step, error) {
	var steps []Step
	for _, sm := range t.StateMachines {
		def, err := t.Definition(sm, vars)
		if err != nil {
			return nil, err
		}
		s, err := aslSteps(sm.Name, def)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s...)
	}
	return steps, nil
}

type aslState struct {
	Type             string          `json:"Type"`
	Resource         string          `json:"Resource"`
	Parameters       json.RawMessage `json:"Parameters"`
	Arguments        json.RawMessage `json:"Arguments"` // JSONata states
	HeartbeatSeconds json.RawMessage `json:"HeartbeatSeconds"`
	HeartbeatPath    string          `json:"HeartbeatSecondsPath"`
	ItemProcessor    *aslMachine     `json:"ItemProcessor"`
	Iterator         *aslMachine     `json:"Iterator"`
	Branches         []aslMachine    `json:"Branches"`
}

type aslMachine struct {
	States map[string]aslState `json:"States"`
}

func aslSteps(smName string, def []byte) ([]Step, error) {
	steps, _, err := readASL(smName, def)
	return steps, err
}

// readASL lists the putEvents steps of a definition and what is wrong with their
// entries: what EventBridge's PutEvents would refuse when the step runs.
func readASL(smName string, def []byte) ([]Step, []string, error) {
	var m aslMachine
	if err := json.Unmarshal(def, &m); err != nil {
		return nil, nil, fmt.Errorf("state machine %q: not an ASL document: %w", smName, err)
	}
	var steps []Step
	var problems []string
	var walk func(prefix string, m aslMachine)
	walk = func(prefix string, m aslMachine) {
		names := make([]string, 0, len(m.States))
		for name := range m.States {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			st := m.States[name]
			path := prefix + name
			for _, inner := range []*aslMachine{st.ItemProcessor, st.Iterator} {
				if inner != nil {
					walk(path+"/", *inner)
				}
			}
			for _, b := range st.Branches {
				walk(path+"/", b)
			}
			if st.Type != "Task" || !strings.Contains(st.Resource, ":states:::events:putEvents") {
				continue
			}
			params := st.Parameters
			if len(params) == 0 {
				params = st.Arguments
			}
			var p struct {
				Entries []map[string]any `json:"Entries"`
			}
			_ = json.Unmarshal(params, &p) // computed entries ("Entries.$") list nothing
			problems = append(problems, entryProblems(path, params, p.Entries)...)
			for _, e := range p.Entries {
				dt, _ := e["DetailType"].(string)
				src, _ := e["Source"].(string)
				steps = append(steps, Step{
					StateMachine: smName, State: path, DetailType: dt, Source: src,
					WaitsForTask: strings.HasSuffix(st.Resource, ".waitForTaskToken"),
					Heartbeat:    len(st.HeartbeatSeconds) > 0 || st.HeartbeatPath != "",
				})
			}
		}
	}
	walk("", m)
	return steps, problems, nil
}

// entryFields are the fields of a PutEvents entry (each may be given as "<name>.$",
// a path, instead).
var entryFields = []string{"Detail", "DetailType", "EventBusName", "Resources", "Source", "Time", "TraceHeader"}

// entryProblems checks the literal entries of a putEvents step as PutEvents would:
// Source, DetailType and Detail are required (EventBusName is not: the default
// bus), no other field is taken, a source may not start with "aws.", and a call
// takes 1 to 10 entries. Computed values ("Source.$", JSONata "{% %}") pass.
func entryProblems(state string, params json.RawMessage, entries []map[string]any) []string {
	p := &problemList{prefix: fmt.Sprintf("step %s: ", state)}
	if !literalEntries(params, p) {
		return p.list
	}
	if len(entries) == 0 || len(entries) > 10 {
		p.add("has %d entries; PutEvents takes 1 to 10", len(entries))
	}
	for i, e := range entries {
		checkEntry(fmt.Sprintf("entry %d", i+1), e, p)
	}
	return p.list
}

// problemList collects the problems of one step, each prefixed with its name.
type problemList struct {
	prefix string
	list   []string
}

func (p *problemList) add(format string, args ...any) {
	p.list = append(p.list, p.prefix+fmt.Sprintf(format, args...))
}

// literalEntries reports whether params hold a literal list of entries to check.
// When they do not, either the entries are computed ("Entries.$", a JSONata
// expression) and pass, or a problem is added to p.
func literalEntries(params json.RawMessage, p *problemList) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(params, &top) != nil || top == nil {
		p.add("has no Parameters (or Arguments) with Entries")
		return false
	}
	if _, computed := top["Entries.$"]; computed {
		return false
	}
	raw, ok := top["Entries"]
	if !ok {
		p.add("has no Entries")
		return false
	}
	if json.Unmarshal(raw, new([]map[string]any)) != nil {
		if s := strings.TrimSpace(string(raw)); strings.HasPrefix(s, `"{%`) {
			return false // a JSONata expression
		}
		p.add("Entries must be a list of objects")
		return false
	}
	return true
}

// checkEntry adds to p what PutEvents would refuse in the entry e, named where.
func checkEntry(where string, e map[string]any, p *problemList) {
	for _, k := range slices.Sorted(maps.Keys(e)) {
		if !slices.Contains(entryFields, strings.TrimSuffix(k, ".$")) {
			p.add("%s has %q, which PutEvents does not take (fields: %s)", where, k, strings.Join(entryFields, ", "))
		}
	}
	for _, required := range []string{"Source", "DetailType", "Detail"} {
		_, plain := e[required]
		_, path := e[required+".$"]
		if !plain && !path {
			p.add("%s has no %s: PutEvents refuses it (%s is a required argument)", where, required, required)
		}
	}
	if v, ok := e["Source"].(string); ok && strings.HasPrefix(v, "aws.") {
		p.add("%s: source %q starts with \"aws.\", which is reserved for AWS services", where, v)
	}
	for _, f := range []string{"Source", "DetailType"} {
		if v, present := e[f]; present {
			if s, ok := v.(string); !ok || s == "" {
				p.add("%s: %s must be a non-empty string", where, f)
			}
		}
	}
}

// Sources is what a rule of queue q accepts: nil for any source; otherwise the
// sources the topology's state machines put, the worker's own, and the queue's.
func (t *Topology) Sources(q Queue, steps []Step) []string {
	if q.AnySource {
		return nil
	}
	set := map[string]bool{t.Source: true}
	for _, s := range steps {
		if s.Source != "" {
			set[s.Source] = true
		}
	}
	for _, s := range q.Sources {
		set[s] = true
	}
	delete(set, "")
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

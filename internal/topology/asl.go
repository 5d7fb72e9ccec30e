package topology

import (
	"encoding/json"
	"fmt"
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
	var m aslMachine
	if err := json.Unmarshal(def, &m); err != nil {
		return nil, fmt.Errorf("state machine %q: not an ASL document: %w", smName, err)
	}
	var steps []Step
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
	return steps, nil
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

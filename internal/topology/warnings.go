package topology

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Warnings lists what in a valid topology is allowed but risky; `validate` prints
// them and `run` still starts. dashboards are Grafana dashboard JSON documents (may
// be none) checked for a queue that no panel would show.
func (t *Topology) Warnings(dashboards map[string][]byte) []string {
	out := t.deliveryWarnings()
	for _, sm := range t.StateMachines {
		def, err := t.Definition(sm, checkVars)
		if err != nil {
			continue // Check reports it
		}
		for _, state := range unboundedWaits(def) {
			out = append(out, fmt.Sprintf("state machine %q: step %s waits for a task token with neither TimeoutSeconds nor HeartbeatSeconds: a lost token keeps the execution waiting up to a year, and no alarm sees it", sm.Name, state))
		}
	}
	names := make([]string, 0, len(dashboards))
	for name := range dashboards {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		exprs, err := dashboardExprs(dashboards[name])
		if err != nil {
			out = append(out, fmt.Sprintf("dashboard %s: %v", name, err))
			continue
		}
		for _, q := range t.Queues {
			if !anyPanelShows(exprs, q.Name) {
				out = append(out, fmt.Sprintf("queue %q: no panel of dashboard %s shows it (no query groups by queue with matchers that let it through)", q.Name, name))
			}
		}
	}
	return out
}

// unboundedWaits are the waitForTaskToken Task states of an ASL document (nested
// ones as "Map/Inner") that set no timeout and no heartbeat.
func unboundedWaits(def []byte) []string {
	type state struct {
		Type          string            `json:"Type"`
		Resource      string            `json:"Resource"`
		Timeout       json.RawMessage   `json:"TimeoutSeconds"`
		TimeoutPath   string            `json:"TimeoutSecondsPath"`
		Heartbeat     json.RawMessage   `json:"HeartbeatSeconds"`
		HeartbeatPath string            `json:"HeartbeatSecondsPath"`
		ItemProcessor json.RawMessage   `json:"ItemProcessor"`
		Iterator      json.RawMessage   `json:"Iterator"`
		Branches      []json.RawMessage `json:"Branches"`
	}
	var found []string
	var walk func(prefix string, doc []byte)
	walk = func(prefix string, doc []byte) {
		var m struct {
			States map[string]state `json:"States"`
		}
		if json.Unmarshal(doc, &m) != nil {
			return
		}
		names := make([]string, 0, len(m.States))
		for n := range m.States {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			st := m.States[n]
			for _, inner := range append([]json.RawMessage{st.ItemProcessor, st.Iterator}, st.Branches...) {
				if len(inner) > 0 {
					walk(prefix+n+"/", inner)
				}
			}
			if st.Type == "Task" && strings.HasSuffix(st.Resource, ".waitForTaskToken") &&
				len(st.Timeout) == 0 && st.TimeoutPath == "" && len(st.Heartbeat) == 0 && st.HeartbeatPath == "" {
				found = append(found, prefix+n)
			}
		}
	}
	walk("", def)
	return found
}

// dashboardExprs are the PromQL expressions of every panel, rows' nested panels
// included.
func dashboardExprs(doc []byte) ([]string, error) {
	type panel struct {
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("not a dashboard: %w", err)
	}
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p panel
			if json.Unmarshal(raw, &p) != nil {
				continue
			}
			for _, t := range p.Targets {
				exprs = append(exprs, t.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return exprs, nil
}

var (
	// byQueue is an aggregation that keeps the queue label: one series per queue.
	byQueue = regexp.MustCompile(`\bby\s*\([^)]*\bqueue\b[^)]*\)`)
	// queueMatcher is a label matcher on queue in a selector.
	queueMatcher = regexp.MustCompile(`\bqueue\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
)

// anyPanelShows reports whether one expression draws a series per queue and lets
// queue through its queue matchers (a dashboard variable such as $queue matches
// every queue). Read with regular expressions, not a PromQL parser: enough for the
// shapes dashboards use (sum by (queue) (rate(m{queue=~"a|b"}[5m]))).
func anyPanelShows(exprs []string, queue string) bool {
	for _, e := range exprs {
		if !byQueue.MatchString(e) {
			continue
		}
		ok := true
		for _, m := range queueMatcher.FindAllStringSubmatch(e, -1) {
			var v string
			if json.Unmarshal([]byte(`"`+m[2]+`"`), &v) != nil {
				v = m[2]
			}
			if strings.Contains(v, "$") {
				continue // a variable: any queue can be picked
			}
			var match bool
			switch m[1] {
			case "=":
				match = v == queue
			case "!=":
				match = v != queue
			default:
				re, err := regexp.Compile("^(?:" + v + ")$")
				match = err != nil || re.MatchString(queue) // an unreadable regexp is not held against the queue
				if m[1] == "!~" && err == nil {
					match = !match
				}
			}
			ok = ok && match
		}
		if ok {
			return true
		}
	}
	return false
}

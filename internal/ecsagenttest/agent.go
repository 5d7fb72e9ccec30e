// Package ecsagenttest is a stand-in for the ECS container agent's task scale-in
// protection endpoint ($ECS_AGENT_URI/task-protection/v1/state), for tests. One
// Agent serves many tasks, one path prefix each (/<task>/task-protection/v1/state),
// so a test that runs several worker processes knows which of them are protected.
//
// It refuses what the real endpoint refuses: a method other than GET or PUT, a body
// that is not JSON, a missing ProtectionEnabled, an ExpiresInMinutes outside
// 1..2880. Answers have the real shapes: {"protection": {...}} on success,
// {"failure": {...}} (HTTP 200) when ECS refused the update, {"error": {...}} on a
// bad request or a server fault.
package ecsagenttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// statePath is the endpoint's path under ECS_AGENT_URI.
const statePath = "/task-protection/v1/state"

// defaultMinutes is the protection's length when a PUT gives no ExpiresInMinutes.
const defaultMinutes = 120

// Fault is an answer the Agent gives instead of doing an update.
type Fault int

// Faults.
const (
	// FaultFailure answers 200 {"failure": {...}}: ECS refused the update.
	FaultFailure Fault = iota + 1
	// FaultServerError answers 500 {"error": {...}}.
	FaultServerError
)

// Update is one accepted PUT.
type Update struct {
	Task    string
	At      time.Time
	Enabled bool
	Minutes int
}

// Agent is the stand-in; its zero value is not usable, use New. Safe for concurrent use.
type Agent struct {
	mu      sync.Mutex
	until   map[string]time.Time // task → end of its protection; absent: not protected
	updates []Update
	faults  []Fault // answered in order, one per PUT, before any update is done
	refused int
	now     func() time.Time
}

// New returns an Agent with no task protected.
func New() *Agent {
	return &Agent{until: map[string]time.Time{}, now: time.Now}
}

// URI is the ECS_AGENT_URI of task on an Agent served at base (an httptest
// server's URL).
func URI(base, task string) string { return strings.TrimSuffix(base, "/") + "/" + task }

// FailNext makes the next PUTs answer with these faults, one each, in order.
func (a *Agent) FailNext(faults ...Fault) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.faults = append(a.faults, faults...)
}

// Protected reports whether task is protected now (enabled and not expired).
func (a *Agent) Protected(task string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	until, ok := a.until[task]
	return ok && a.now().Before(until)
}

// Updates returns the accepted PUTs so far, in order.
func (a *Agent) Updates() []Update {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Update(nil), a.updates...)
}

// Refused is how many requests were answered with a fault or refused as bad.
func (a *Agent) Refused() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refused
}

type request struct {
	ProtectionEnabled *bool `json:"ProtectionEnabled"`
	ExpiresInMinutes  *int  `json:"ExpiresInMinutes"`
}

type protection struct {
	ExpirationDate    *string `json:"ExpirationDate"`
	ProtectionEnabled bool    `json:"ProtectionEnabled"`
	TaskArn           string  `json:"TaskArn"`
}

type failure struct {
	Arn    string  `json:"Arn"`
	Detail *string `json:"Detail"`
	Reason string  `json:"Reason"`
}

type apiError struct {
	Arn     string `json:"Arn"`
	Code    string `json:"Code"`
	Message string `json:"Message"`
}

// ServeHTTP serves /<task>/task-protection/v1/state.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	task, ok := strings.CutSuffix(r.URL.Path, statePath)
	task = strings.Trim(task, "/")
	if !ok || task == "" || strings.Contains(task, "/") {
		http.NotFound(w, r)
		return
	}
	arn := "arn:aws:ecs:us-east-1:123456789012:task/fleet/" + task
	switch r.Method {
	case http.MethodGet:
		a.mu.Lock()
		p := a.protectionOf(task, arn)
		a.mu.Unlock()
		answer(w, http.StatusOK, map[string]any{"protection": p})
	case http.MethodPut:
		a.update(w, r, task, arn)
	default:
		w.Header().Set("Allow", "GET, PUT")
		a.refuse(w, http.StatusMethodNotAllowed, apiError{Arn: arn, Code: "InvalidRequest", Message: "method not allowed"})
	}
}

// update serves a PUT: a request the agent refuses as bad is refused first, then
// the next fault is answered if one is set, else the protection is changed.
func (a *Agent) update(w http.ResponseWriter, r *http.Request, task, arn string) {
	enabled, minutes, bad := decodeRequest(w, r, arn)
	if bad != nil {
		a.refuse(w, http.StatusBadRequest, *bad)
		return
	}
	a.mu.Lock()
	if len(a.faults) > 0 {
		f := a.faults[0]
		a.faults = a.faults[1:]
		a.refused++
		a.mu.Unlock()
		answerFault(w, f, arn)
		return
	}
	now := a.now()
	if enabled {
		a.until[task] = now.Add(time.Duration(minutes) * time.Minute)
	} else {
		delete(a.until, task)
	}
	a.updates = append(a.updates, Update{Task: task, At: now, Enabled: enabled, Minutes: minutes})
	p := a.protectionOf(task, arn)
	a.mu.Unlock()
	answer(w, http.StatusOK, map[string]any{"protection": p})
}

// decodeRequest reads a PUT's body as the agent does: ProtectionEnabled is
// required, ExpiresInMinutes defaults to defaultMinutes and lies in 1..2880. bad
// is the error the agent answers (400) for a request it refuses.
func decodeRequest(w http.ResponseWriter, r *http.Request, arn string) (enabled bool, minutes int, bad *apiError) {
	var req request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	if err := dec.Decode(&req); err != nil {
		return false, 0, &apiError{Arn: arn, Code: "InvalidRequest", Message: "Invalid request: failed to decode request: " + err.Error()}
	}
	if req.ProtectionEnabled == nil {
		return false, 0, &apiError{Arn: arn, Code: "InvalidRequest", Message: "Invalid request: does not contain 'ProtectionEnabled' field"}
	}
	minutes = defaultMinutes
	if req.ExpiresInMinutes != nil {
		minutes = *req.ExpiresInMinutes
	}
	if minutes < 1 || minutes > 2880 {
		return false, 0, &apiError{Arn: arn, Code: "InvalidParameterException", Message: fmt.Sprintf("expiresInMinutes must be between 1 and 2880, got %d", minutes)}
	}
	return *req.ProtectionEnabled, minutes, nil
}

// answerFault answers a PUT with the fault f instead of acting on it.
func answerFault(w http.ResponseWriter, f Fault, arn string) {
	if f == FaultFailure {
		answer(w, http.StatusOK, map[string]any{"failure": failure{Arn: arn, Reason: "TASK_NOT_VALID"}})
		return
	}
	answer(w, http.StatusInternalServerError, map[string]any{"error": apiError{Arn: arn, Code: "ServerException", Message: "stand-in fault"}})
}

// protectionOf is the protection object of task; a.mu is held.
func (a *Agent) protectionOf(task, arn string) protection {
	until, ok := a.until[task]
	if !ok || !a.now().Before(until) {
		return protection{TaskArn: arn}
	}
	exp := until.UTC().Format(time.RFC3339Nano)
	return protection{ExpirationDate: &exp, ProtectionEnabled: true, TaskArn: arn}
}

func (a *Agent) refuse(w http.ResponseWriter, code int, e apiError) {
	a.mu.Lock()
	a.refused++
	a.mu.Unlock()
	answer(w, code, map[string]any{"error": e})
}

func answer(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

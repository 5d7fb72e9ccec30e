package ecsprotect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// statePath is the task protection endpoint under ECS_AGENT_URI.
const statePath = "/task-protection/v1/state"

// maxAnswer bounds what is read of an answer: the agent's are a few hundred bytes.
const maxAnswer = 64 << 10

// answer is the endpoint's reply: protection on success, failure when ECS refused
// the update (still HTTP 200), error on a bad request or a fault.
type answer struct {
	Protection *struct {
		ProtectionEnabled bool   `json:"ProtectionEnabled"`
		ExpirationDate    string `json:"ExpirationDate"`
	} `json:"protection"`
	Failure *struct {
		Arn    string `json:"Arn"`
		Reason string `json:"Reason"`
	} `json:"failure"`
	Error *struct {
		Code    string `json:"Code"`
		Message string `json:"Message"`
	} `json:"error"`
}

// agent calls the ECS container agent's task protection endpoint.
type agent struct {
	url    string
	client *http.Client
}

// put sets protection on (for minutes) or off; nil only when the agent confirmed it.
func (a agent) put(ctx context.Context, enable bool, minutes int) error {
	body := []byte(`{"ProtectionEnabled":false}`)
	if enable {
		body = fmt.Appendf(nil, `{"ProtectionEnabled":true,"ExpiresInMinutes":%d}`, minutes)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, a.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build task protection request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("put task protection: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("read task protection answer: %w", err)
	}
	var ans answer
	decodeErr := json.Unmarshal(raw, &ans)
	switch {
	case ans.Error != nil:
		return fmt.Errorf("put task protection: HTTP %d: %s: %s", resp.StatusCode, ans.Error.Code, ans.Error.Message)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("put task protection: HTTP %d: %s", resp.StatusCode, snippet(raw))
	case decodeErr != nil:
		return fmt.Errorf("decode task protection answer: %w", decodeErr)
	case ans.Failure != nil:
		return &refusedError{reason: ans.Failure.Reason}
	case ans.Protection == nil:
		return fmt.Errorf("put task protection: answer has neither protection nor failure: %s", snippet(raw))
	case ans.Protection.ProtectionEnabled != enable:
		return fmt.Errorf("put task protection: asked for enabled=%t, agent says %t", enable, ans.Protection.ProtectionEnabled)
	}
	return nil
}

// refusedError is ECS's refusal of an update (HTTP 200 with a failure).
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return "put task protection: refused: " + e.reason }

// permanentReasons are the refusals that no retry changes: TASK_NOT_VALID is a
// task that protection does not apply to (one not in a service, say).
var permanentReasons = map[string]bool{"TASK_NOT_VALID": true}

// isPermanent reports whether err is a refusal that no retry changes.
func isPermanent(err error) bool {
	var r *refusedError
	return errors.As(err, &r) && permanentReasons[r.reason]
}

// snippet is the start of an answer, for an error message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

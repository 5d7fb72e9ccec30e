// Package tasktest runs the jobs of a taskbridge.Registry the way the worker does
// (the same router decides each outcome) with no AWS behind it: for unit tests of
// your own jobs. Step Functions, the bus and SQS are replaced by small recorders
// that refuse what AWS refuses (an empty token, say).
package tasktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge"
	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/checkpoint/checkpointtest"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/registry"
)

// Runner runs a registry's jobs. It is safe for concurrent use.
type Runner struct {
	jobs        []jobs.Job
	mu          sync.Mutex
	closed      map[string]bool // tokens Step Functions no longer knows
	runs        int
	checkpoints *checkpointtest.Store // the data bucket's checkpoints, kept across runs
}

// New returns a Runner for r's jobs. Register them before.
func New(r *taskbridge.Registry) *Runner {
	// A Registry is a registry.Registry; only this module can name the latter.
	return &Runner{jobs: (*registry.Registry)(r).Jobs(), closed: map[string]bool{}, checkpoints: checkpointtest.New()}
}

// Checkpoints returns the checkpoints stored now, by object key, as the data bucket
// would hold them: a task's checkpoint stays there between runs of it until the
// task is done.
func (r *Runner) Checkpoints() map[string]json.RawMessage {
	objects := r.checkpoints.Objects()
	out := make(map[string]json.RawMessage, len(objects))
	for k, v := range objects {
		out[k] = v
	}
	return out
}

// CloseToken makes Step Functions refuse token from now on, as it does a forged
// token or one whose task timed out.
func (r *Runner) CloseToken(token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed[token] = true
}

// Event is an event a job put on the bus (Publish or HandOff).
type Event struct {
	DetailType string
	Detail     json.RawMessage
}

// Result is what became of one delivery.
type Result struct {
	// Succeeded: SendTaskSuccess was sent with Output.
	Succeeded bool
	Output    json.RawMessage
	// Failed: SendTaskFailure was sent with Error ("<job>.<kind>") and Cause.
	Failed       bool
	Error, Cause string
	// DeadLettered: the message goes to the dead-letter queue.
	DeadLettered bool
	// Retried: the message is left for redelivery.
	Retried bool
	// Events the job put on the bus, in order.
	Events []Event
	// Cancelled: the task closed while the job ran (Delivery.CloseAfter), its
	// context was cancelled with taskbridge.ErrTaskClosed and the message deleted.
	Cancelled bool
}

// Delivery describes one message; the zero value is a first delivery of an event
// with a fresh token and an execution ARN.
type Delivery struct {
	DetailType   string // default: the job's name
	Token        string // default "tok-<n>"; NoToken sends none
	NoToken      bool
	ExecutionArn string // default arn:aws:states:us-east-1:123456789012:execution:test:run-<n>
	ReceiveCount int    // default 1
	MaxReceives  int    // default 5
	EventID      string // default "event-<n>"
	Source       string // default "tasktest"
	// CloseAfter > 0 closes the task this long after the job starts, as a stopped
	// execution does: the job's context is cancelled with taskbridge.ErrTaskClosed
	// as its cause.
	CloseAfter time.Duration
}

// Run delivers detail (a JSON object; TaskToken and executionArn are added from d)
// to job and returns what became of it.
func (r *Runner) Run(ctx context.Context, job string, detail any, d Delivery) (Result, error) {
	r.mu.Lock()
	r.runs++
	n := r.runs
	r.mu.Unlock()
	if d.DetailType == "" {
		d.DetailType = job
	}
	if d.Token == "" && !d.NoToken {
		d.Token = fmt.Sprintf("tok-%d", n)
	}
	if d.ExecutionArn == "" {
		d.ExecutionArn = fmt.Sprintf("arn:aws:states:us-east-1:123456789012:execution:test:run-%d", n)
	}
	if d.ReceiveCount == 0 {
		d.ReceiveCount = 1
	}
	if d.MaxReceives == 0 {
		d.MaxReceives = 5
	}
	if d.EventID == "" {
		d.EventID = fmt.Sprintf("event-%d", n)
	}
	if d.Source == "" {
		d.Source = "tasktest"
	}
	fields := map[string]any{}
	if detail != nil {
		b, err := json.Marshal(detail)
		if err != nil {
			return Result{}, fmt.Errorf("encode detail: %w", err)
		}
		if err := json.Unmarshal(b, &fields); err != nil {
			return Result{}, fmt.Errorf("detail must be a JSON object: %w", err)
		}
	}
	if d.Token != "" {
		fields["TaskToken"] = d.Token
	}
	if _, ok := fields["executionArn"]; !ok {
		fields["executionArn"] = d.ExecutionArn
	}
	body, _ := json.Marshal(map[string]any{
		"version": "0", "id": d.EventID, "detail-type": d.DetailType, "source": d.Source, "account": "123456789012",
		"time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1", "resources": []string{}, "detail": fields,
	})
	return r.runBody(ctx, job, d.DetailType, string(body), d.ReceiveCount, d.MaxReceives, d.CloseAfter)
}

// RunBody delivers a raw SQS message body (for malformed input) to job, on a queue
// that takes detailType.
func (r *Runner) RunBody(ctx context.Context, job, detailType, body string, receiveCount, maxReceives int) (Result, error) {
	return r.runBody(ctx, job, detailType, body, receiveCount, maxReceives, 0)
}

func (r *Runner) runBody(ctx context.Context, job, detailType, body string, receiveCount, maxReceives int, closeAfter time.Duration) (Result, error) {
	rec := &recorder{runner: r, closeAfter: closeAfter}
	router, err := jobs.NewRouter(jobs.RouterConfig{
		Routes:      map[string]jobs.Route{job: {Job: job, DetailTypes: []string{detailType}}},
		Checkpoints: r.checkpoints,
	},
		r.withFinisher(), rec, rec, rec, zap.NewNop(), jobs.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		return Result{}, err
	}
	herr := router.Handle(ctx, consumer.Message{ID: "m", Queue: job, Body: body, ReceiveCount: receiveCount, MaxReceiveCount: maxReceives})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	res := rec.res
	res.DeadLettered = consumer.IsDeadLetter(herr)
	res.Retried = herr != nil && !res.DeadLettered
	return res, nil
}

func (r *Runner) withFinisher() []jobs.Job {
	for _, j := range r.jobs {
		if j.Name == jobs.FinisherJob {
			return r.jobs
		}
	}
	return append(append([]jobs.Job(nil), r.jobs...), jobs.Finisher())
}

// recorder stands in for Step Functions and the bus.
type recorder struct {
	runner     *Runner
	closeAfter time.Duration
	mu         sync.Mutex
	res        Result
}

type closedError struct{ code string }

func (e closedError) Error() string    { return e.code }
func (e closedError) TaskClosed() bool { return true }

func (c *recorder) check(token string) error {
	if token == "" {
		return errors.New("ValidationException: taskToken must not be empty") // as AWS refuses it
	}
	c.runner.mu.Lock()
	defer c.runner.mu.Unlock()
	if c.runner.closed[token] {
		return closedError{"InvalidToken"}
	}
	return nil
}

func (c *recorder) Succeed(_ context.Context, token string, output []byte) error {
	if err := c.check(token); err != nil {
		return err
	}
	c.runner.CloseToken(token)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Succeeded, c.res.Output = true, append(json.RawMessage(nil), output...)
	return nil
}

func (c *recorder) Fail(_ context.Context, token, code, cause string) error {
	if err := c.check(token); err != nil {
		return err
	}
	c.runner.CloseToken(token)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Failed, c.res.Error, c.res.Cause = true, code, cause
	return nil
}

func (c *recorder) Heartbeat(_ context.Context, token string) error { return c.check(token) }

// KeepAlive closes the task after closeAfter, if set, as a heartbeat that finds the
// execution stopped does.
func (c *recorder) KeepAlive(ctx context.Context, token, _ string, _ time.Duration, closedCause func(error) error) (context.Context, func()) {
	if c.closeAfter <= 0 {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(c.closeAfter, func() {
		c.runner.CloseToken(token)
		c.mu.Lock()
		c.res.Cancelled = true
		c.mu.Unlock()
		cancel(closedCause(closedError{"TaskTimedOut"}))
	})
	return ctx, func() { timer.Stop(); cancel(nil) }
}

func (c *recorder) Publish(_ context.Context, detailType string, detail any) error {
	b, err := awsjson.Marshal(detail)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Events = append(c.res.Events, Event{DetailType: detailType, Detail: b})
	return nil
}

package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/telemetry"
)

// Heartbeater keeps a task alive while its job runs: KeepAlive sends heartbeats every
// interval until stop is called (stop waits for the sender to end); 0 sends none.
type Heartbeater interface {
	KeepAlive(ctx context.Context, token string, every time.Duration) (stop func())
}

// Route binds a queue to a job and the detail types it takes.
type Route struct {
	Job         string
	DetailTypes []string
}

// RouterConfig maps logical queue names to routes.
type RouterConfig struct {
	Routes         map[string]Route
	HeartbeatEvery time.Duration // 0: no heartbeats
}

// Router is the consumer.Handler of every job queue.
type Router struct {
	cfg      RouterConfig
	jobs     map[string]Job
	reporter Reporter
	beats    Heartbeater
	log      *zap.Logger
	metrics  *Metrics
	nowFunc  func() time.Time
}

// NewRouter checks that every route names a known job.
func NewRouter(cfg RouterConfig, jobs []Job, r Reporter, hb Heartbeater, log *zap.Logger, m *Metrics) (*Router, error) {
	byName := map[string]Job{}
	for _, j := range jobs {
		byName[j.Name] = j
	}
	var errs []error
	for q, route := range cfg.Routes {
		if _, ok := byName[route.Job]; !ok {
			errs = append(errs, fmt.Errorf("route of queue %s: unknown job %q", q, route.Job))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Router{cfg: cfg, jobs: byName, reporter: r, beats: hb, log: log.With(zap.String("component", "jobs")), metrics: m, nowFunc: time.Now}, nil
}

// outcome of one message, for the log line and the metrics.
type outcome struct {
	name   string // success, forwarded, final_failure, retry, dead_letter, task_closed
	err    error  // what the consumer gets back
	reason error  // why, for the log
}

// Handle implements consumer.Handler.
func (r *Router) Handle(ctx context.Context, m consumer.Message) error {
	began := r.nowFunc()
	route := r.cfg.Routes[m.Queue]
	job := r.jobs[route.Job]
	jobName := route.Job
	if jobName == "" {
		jobName = "unrouted"
	}
	t, out := r.decode(ctx, m, route, job)
	if out == nil {
		r.metrics.eventAge.WithLabelValues(jobName).Observe(began.Sub(t.EventTime).Seconds())
		out = r.run(ctx, m, job, t)
	}
	took := r.nowFunc().Sub(began)
	r.metrics.jobs.WithLabelValues(jobName, out.name).Inc()
	r.metrics.duration.WithLabelValues(jobName).Observe(took.Seconds())
	fields := []zap.Field{
		zap.String("queue", m.Queue), zap.String("job", jobName), zap.String("message_id", m.ID),
		zap.Int("receive_count", m.ReceiveCount), zap.String("execution_arn", t.ExecutionArn),
		zap.String("outcome", out.name), zap.Duration("duration", took), telemetry.Token(t.Token),
	}
	switch out.name {
	case "dead_letter":
		r.log.Warn("message dead-lettered", append(fields, zap.NamedError("reason", out.reason))...)
	case "final_failure", "retry":
		r.log.Info("message handled", append(fields, zap.NamedError("reason", out.reason))...)
	default:
		r.log.Info("message handled", fields...)
	}
	return out.err
}

// decode parses the envelope and the common fields; a non-nil outcome means the
// message is bad and has been dealt with.
func (r *Router) decode(ctx context.Context, m consumer.Message, route Route, job Job) (Task, *outcome) {
	t := Task{Queue: m.Queue, ReceiveCount: m.ReceiveCount}
	env, err := event.Parse([]byte(m.Body))
	if err != nil {
		t.Token = looseToken(m.Body)
		return t, r.badInput(ctx, route.Job, t, Invalid("MalformedEvent", err))
	}
	t.DetailType, t.EventTime, t.Detail = env.DetailType, env.Time, env.Detail
	var c common
	_ = json.Unmarshal(env.Detail, &c) // a wrong type leaves the field empty: checked below
	t.Token, t.ExecutionArn = c.TaskToken, c.ExecutionArn
	if t.Token == "" {
		t.Token = looseToken(m.Body)
	}
	switch {
	case job.Run == nil:
		return t, r.badInput(ctx, route.Job, t, Invalid("Unrouted", fmt.Errorf("no job for queue %q", m.Queue)))
	case !slices.Contains(route.DetailTypes, env.DetailType):
		return t, r.badInput(ctx, route.Job, t, invalidf("detail-type %q is not one of %v", env.DetailType, route.DetailTypes))
	case job.NeedsToken && t.Token == "":
		return t, r.badInput(ctx, route.Job, t, Invalid("MissingToken", errNoToken))
	}
	return t, nil
}

// run runs the job and turns its result into an outcome.
func (r *Router) run(ctx context.Context, m consumer.Message, job Job, t Task) *outcome {
	if job.Completes {
		stop := r.beats.KeepAlive(ctx, t.Token, r.cfg.HeartbeatEvery)
		defer stop()
	}
	output, err := r.call(ctx, job, t)
	var panicked *panicError
	switch {
	case errors.As(err, &panicked):
		return r.badInput(ctx, job.Name, t, Invalid("Panic", err))
	case err == nil:
		if !job.Completes {
			if t.Token != "" {
				return &outcome{name: "forwarded"}
			}
			return &outcome{name: "success"}
		}
		return r.succeed(ctx, job, t, output)
	}
	if je, ok := asJobError(err); ok {
		if je.badInput {
			return r.badInput(ctx, job.Name, t, err)
		}
		return r.fail(ctx, job.Name, t, je.kind, err, "final_failure", nil)
	}
	if m.LastAttempt() {
		return r.fail(ctx, job.Name, t, "RetriesExhausted", err, "dead_letter", consumer.DeadLetter(err))
	}
	return &outcome{name: "retry", err: err, reason: err}
}

func (r *Router) succeed(ctx context.Context, job Job, t Task, output any) *outcome {
	b, err := json.Marshal(output)
	if err != nil {
		return r.fail(ctx, job.Name, t, "BadOutput", err, "final_failure", nil)
	}
	switch err := r.reporter.Succeed(ctx, t.Token, b); {
	case err == nil:
		return &outcome{name: "success"}
	case taskClosed(err):
		return &outcome{name: "task_closed", reason: err}
	default:
		return &outcome{name: "retry", err: fmt.Errorf("report success: %w", err), reason: err}
	}
}

// fail reports SendTaskFailure when there is a token; then the message gets then
// (nil: delete; consumer.DeadLetter: DLQ). A failure that could not be reported
// leaves the message for redelivery, so the report is not lost.
func (r *Router) fail(ctx context.Context, jobName string, t Task, kind string, cause error, name string, then error) *outcome {
	if t.Token != "" {
		err := r.reporter.Fail(ctx, t.Token, jobName+"."+kind, cause.Error())
		if err != nil && !taskClosed(err) {
			return &outcome{name: "retry", err: fmt.Errorf("report failure: %w", err), reason: cause}
		}
	}
	return &outcome{name: name, err: then, reason: cause}
}

func (r *Router) badInput(ctx context.Context, jobName string, t Task, err error) *outcome {
	kind := "InvalidInput"
	if je, ok := asJobError(err); ok {
		kind = je.kind
	}
	if jobName == "" {
		jobName = "unrouted"
	}
	return r.fail(ctx, jobName, t, kind, err, "dead_letter", consumer.DeadLetter(err))
}

type panicError struct{ msg string }

func (e *panicError) Error() string { return e.msg }

// call runs the job; a panic becomes an error for this message only.
func (r *Router) call(ctx context.Context, job Job, t Task) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("job panicked", zap.String("job", job.Name), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			err = &panicError{msg: fmt.Sprintf("job %s panicked: %v", job.Name, p)}
		}
	}()
	return job.Run(ctx, t)
}

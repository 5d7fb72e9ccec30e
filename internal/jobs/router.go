package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/tracing"
)

// Heartbeater keeps a task alive while its job runs: KeepAlive sends heartbeats every
// interval until stop is called (stop waits for the sender to end); 0 sends none.
// KeepAlive returns the context the job runs under: ctx itself without heartbeats;
// with them, a child of ctx that stop cancels, and that a heartbeat finding the task
// closed for sure (stopped, timed out, answered elsewhere; executionArn, when
// known, settles an ambiguous answer) cancels with the cause closedCause(reason),
// reason being an error with a TaskClosed method (and a ClosedReason method naming
// it for a metric label). Transient errors never cancel it. Heartbeat sends one,
// for a job that proves its token is live.
type Heartbeater interface {
	KeepAlive(ctx context.Context, token, executionArn string, every time.Duration, closedCause func(reason error) error) (jobCtx context.Context, stop func())
	Heartbeat(ctx context.Context, token string) error
}

// Route binds a queue to a job and the detail types it takes.
type Route struct {
	Job         string
	DetailTypes []string
	// HeartbeatEvery overrides RouterConfig.HeartbeatEvery for this queue when > 0.
	HeartbeatEvery time.Duration
}

// RouterConfig maps logical queue names to routes.
type RouterConfig struct {
	Routes map[string]Route
	// HeartbeatEvery is the heartbeat interval of a Complete job's task (0: no
	// heartbeats). It is also how soon a closed task is noticed and its job
	// cancelled: within one interval plus a call.
	HeartbeatEvery time.Duration
	// ReportTimeout bounds the report made after the job, throttle waits included
	// (default 15 min; each attempt has its own short timeout in the reporter). It
	// runs on a context detached from the job's deadline, so a job that used up its
	// deadline still gets its outcome reported, and a report can wait Step
	// Functions' throttling out while the consumer keeps the message invisible. A
	// cancel of the job's context (the consumer stopping at a drain timeout, or lost
	// visibility) ends the report too.
	ReportTimeout time.Duration
	// Checkpoints stores the tasks' checkpoints (Task.Checkpoint); nil: a job's
	// Checkpoint and LastCheckpoint return an error.
	Checkpoints CheckpointStore
	// FailureNotes, when set, keeps the last failure reported for an execution
	// whose event names it (detail executionArn), where any endpoint can show it
	// (Step Functions emulators drop failure causes). A note that cannot be written
	// is logged, never retried: the failure itself is reported.
	FailureNotes FailureNotes
	// ProveBeforeAnswer sends a proving SendTaskHeartbeat before the outcome of a
	// task whose event is young (Task.young) and whose job did not prove its token
	// itself. Stock moto 5.2.5 and LocalStack 4.14.0 put a callback step's event
	// before they set up its heartbeat wait, and an outcome sent in between is never
	// heard: the task hangs until its HeartbeatSeconds and fails. A heartbeat they
	// accept means the wait is set up, so the outcome after it is heard. AWS does
	// not do this: on AWS it only costs a call per task (the worker turns it on when
	// AWS_ENDPOINT_URL is set).
	ProveBeforeAnswer bool
	// LineSampling thins a busy queue's success lines (see LineSampling); the zero
	// value writes every line.
	LineSampling LineSampling
}

// FailureNotes keeps the last failure of an execution. Called concurrently.
type FailureNotes interface {
	NoteFailure(ctx context.Context, executionArn, job, code, cause string) error
}

// Router is the consumer.Handler of every job queue.
type Router struct {
	cfg      RouterConfig
	jobs     map[string]Job
	reporter Reporter
	beats    Heartbeater
	publish  Publisher
	env      *taskEnv // what every task reaches through the router
	log      *zap.Logger
	// lineLog writes the line of each handled message (writeLine), without the
	// caller (it would always name Handle, and finding it is a stack walk per
	// message) and without a clock read (lineClock).
	lineLog *zap.Logger
	// samplers are the queues' line samplers (nil each with LineSampling off).
	samplers map[string]*lineSampler
	metrics  *Metrics
	// calls are the router's idle job calls (call); one pool a router, as a
	// call's channel belongs to the synctest bubble (in tests) that made it.
	calls sync.Pool
}

// NewRouter checks that every route names a known job. pub may be nil when no job
// publishes events.
func NewRouter(cfg RouterConfig, jobs []Job, r Reporter, hb Heartbeater, pub Publisher, log *zap.Logger, m *Metrics) (*Router, error) {
	if cfg.ReportTimeout <= 0 {
		cfg.ReportTimeout = DefaultReportTimeout
	}
	byName := map[string]Job{}
	var errs []error
	for _, j := range jobs {
		if j.Run == nil {
			errs = append(errs, fmt.Errorf("job %q has no Run function", j.Name))
		}
		byName[j.Name] = j
	}
	for q, route := range cfg.Routes {
		if _, ok := byName[route.Job]; !ok {
			errs = append(errs, fmt.Errorf("route of queue %s: unknown job %q", q, route.Job))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	log = log.With(zap.String("component", "jobs"))
	samplers := map[string]*lineSampler{}
	for q := range cfg.Routes {
		samplers[q] = newLineSampler(cfg.LineSampling)
		m.sampledOut.add(q, samplers[q])
	}
	return &Router{cfg: cfg, jobs: byName, reporter: r, beats: hb, publish: pub, log: log, lineLog: log.WithOptions(zap.WithCaller(false), zap.WithClock(lineClock{})),
		samplers: samplers, metrics: m, env: &taskEnv{publish: pub, beats: hb, checkpoints: cfg.Checkpoints}}, nil
}

// lineFields keeps the field slices of the per-message log lines between
// messages: a slice passed to the logger escapes to the heap, and it was the
// largest allocation of a message. Zap's cores encode the fields, or copy them,
// within the call, so none is held after it.
var lineFields = sync.Pool{New: func() any { s := make([]zap.Field, 0, 10); return &s }}

// outcome of one message, for the log line and the metrics.
type outcome struct {
	name   string // success, forwarded, final_failure, retry, released, dead_letter, task_closed, cancelled, token_refused
	err    error  // what the consumer gets back
	reason error  // why, for the log
}

// Outcomes are never changed once made (withoutToken makes another), so that the
// plain ones, a message's usual, are shared rather than made a message.
var (
	succeeded = &outcome{name: "success"}
	forwarded = &outcome{name: "forwarded"}
)

// withoutToken is o with token redacted from its errors' texts: they become the
// DLQ copy's reason, the span's status and the log line, and a job's error may
// quote its input. errors.Is and errors.As still see through them.
func (o *outcome) withoutToken(token string) *outcome {
	if !quotesToken(o.err, token) && !quotesToken(o.reason, token) {
		return o
	}
	return &outcome{name: o.name, err: redactToken(o.err, token), reason: redactToken(o.reason, token)}
}

// Handle implements consumer.Handler.
func (r *Router) Handle(ctx context.Context, m consumer.Message) error {
	began := m.Started // the Poller's clock read (see consumer.Message.Started)
	if began.IsZero() {
		began = time.Now()
	}
	route := r.cfg.Routes[m.Queue]
	job := r.jobs[route.Job]
	jobName := route.Job
	if jobName == "" {
		jobName = "unrouted"
	}
	// The body is read here, once: the span, the task and the log line take what
	// they need from msg.
	msg, err := event.ParseMessage(m.Body)
	ctx, span := startMessageSpan(ctx, m, jobName, msg)
	h := &handling{m: m, ctx: ctx, began: began, jobName: jobName, span: span, series: r.metrics.forJob(jobName)}
	h.t = &h.task
	out := r.decode(ctx, h.t, m, route, job, msg, err)
	if out == nil {
		h.series.eventAge().Observe(began.Sub(h.t.EventTime).Seconds())
		if out = r.run(h, route, job); out == nil {
			return consumer.ErrDetached // its job's watch finishes it (jobWatch.giveUp)
		}
	}
	return r.finish(h, out)
}

// handling is one message in the router: what finish needs, on whichever goroutine
// it runs (the handler's, or a job watch's that took the message over). Its task
// and its job's watch are in it: one allocation a message for the three.
type handling struct {
	m       consumer.Message
	ctx     context.Context // the message's, with its span
	began   time.Time
	jobName string
	t       *Task // &task
	span    trace.Span
	series  *jobSeries
	task    Task
	watch   jobWatch // a Poller's message's (run)
}

// finish ends a message's handling with its outcome: the task's checkpoint, the
// metrics, the span and the line; it returns what the consumer gets.
func (r *Router) finish(h *handling, out *outcome) error {
	if h.t.mayHaveCheckpoint() && taskDone(out.name) {
		r.clearCheckpoint(h.ctx, h.m, h.t)
	}
	out = out.withoutToken(h.t.Token)
	took := time.Since(h.began)
	h.series.outcome(out.name).Inc()
	tracing.Observe(h.ctx, h.series.duration(), took.Seconds())
	endMessageSpan(h.span, out)
	r.writeLine(h.m, h.jobName, h.t, out, h.began, took)
	return out.err
}

// writeLine writes the message's line: one a message, with its fields, but for
// the success lines LineSampling leaves out. Its time is began + took, the clock
// reads that timed the message (lineLog reads none: see lineClock).
func (r *Router) writeLine(m consumer.Message, jobName string, t *Task, out *outcome, began time.Time, took time.Duration) {
	level, msg := zapcore.InfoLevel, "message handled"
	at := began.Add(took)
	var extra []zap.Field
	switch out.name {
	case "dead_letter", "token_refused":
		level, msg = zapcore.WarnLevel, "message "+out.name
		extra = []zap.Field{zap.String("source", t.Source), zap.NamedError("reason", out.reason)}
	case "final_failure", "retry", "released":
		extra = []zap.Field{zap.NamedError("reason", out.reason)}
	case "success", "forwarded":
		if !r.lineLog.Core().Enabled(level) {
			return // not counted as sampled out: no line would be written
		}
		keep, skipped := r.samplers[m.Queue].keep(began) // no clock read of its own
		if !keep {
			return
		}
		if skipped > 0 {
			extra = []zap.Field{zap.Int64("lines_sampled_out", skipped)}
		}
	}
	ce := r.lineLog.Check(level, msg)
	if ce == nil {
		return
	}
	ce.Time = at
	execution := zap.Skip() // an event without one: no empty field in the line
	if t.ExecutionArn != "" {
		execution = zap.String("execution_arn", t.ExecutionArn)
	}
	fp := lineFields.Get().(*[]zap.Field)
	fields := append((*fp)[:0],
		zap.String("queue", m.Queue), zap.String("job", jobName), zap.String("message_id", m.ID),
		zap.Int("receive_count", m.ReceiveCount), execution,
		zap.String("outcome", out.name), zap.Duration("duration", took), telemetry.Token(t.Token),
	)
	fields = append(fields, extra...)
	ce.Write(fields...)
	clear(fields) // holds nothing of this message while pooled
	*fp = fields[:0]
	lineFields.Put(fp)
}

// lineClock is lineLog's clock: writeLine sets each line's time itself, from the
// clock reads that timed the message, so the logger reads none (time.Now took 40–360
// ns on the benchmark machine, and this is one a message). Anything else logged
// through lineLog would be dated year 1: only writeLine uses it.
type lineClock struct{}

func (lineClock) Now() time.Time                         { return time.Time{} }
func (lineClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

// taskDone are the outcomes after which the message's task is done with here: its
// checkpoint is deleted.
func taskDone(outcome string) bool {
	switch outcome {
	case "success", "forwarded", "final_failure", "dead_letter", "task_closed", "cancelled":
		return true
	}
	return false
}

// checkpointCleanupTimeout bounds the delete of a finished task's checkpoint.
const checkpointCleanupTimeout = 10 * time.Second

// clearCheckpoint deletes a done task's checkpoint, on a context detached from the
// job's (it may have ended: a cancelled job). A failure leaves an object behind, no
// outcome lost: it is logged, and the message's fate stands.
func (r *Router) clearCheckpoint(ctx context.Context, m consumer.Message, t *Task) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkpointCleanupTimeout)
	defer cancel()
	if err := t.clearCheckpoint(cctx); err != nil {
		r.log.Warn("checkpoint of a finished task left behind", zap.String("queue", m.Queue), zap.String("message_id", m.ID), zap.Error(err))
	}
}

// decode fills t, a new task, from m and msg, the message's body read by
// event.ParseMessage (perr its error); a non-nil outcome means the message is bad
// and has been dealt with.
func (r *Router) decode(ctx context.Context, t *Task, m consumer.Message, route Route, job Job, msg event.Message, perr error) *outcome {
	t.Queue, t.Job, t.MessageID, t.ReceiveCount, t.MaxReceiveCount, t.env = m.Queue, route.Job, m.ID, m.ReceiveCount, m.MaxReceiveCount, r.env
	owns := job.Run != nil && job.Mode == Complete // only then is the token this job's to fail
	if owns {
		// A token of the wrong type is no token; a refused body's is still its own.
		t.Token = msg.TaskToken
	}
	if perr != nil {
		return r.badInput(ctx, route.Job, t, Invalid("MalformedEvent", perr))
	}
	env := msg.Envelope
	t.EventID, t.DetailType, t.Source, t.EventTime, t.Detail = env.ID, env.DetailType, env.Source, env.Time, env.Detail
	t.ExecutionArn = msg.ExecutionArn
	switch {
	case job.Run == nil:
		return r.badInput(ctx, route.Job, t, Invalid("Unrouted", fmt.Errorf("no job for queue %q", m.Queue)))
	case !slices.Contains(route.DetailTypes, env.DetailType):
		return r.badInput(ctx, route.Job, t, invalidf("detail-type %q is not one of %v", env.DetailType, route.DetailTypes))
	case owns && t.Token == "":
		return r.badInput(ctx, route.Job, t, Invalid("MissingToken", fmt.Errorf("%w: job %s completes the task of every message", errNoToken, job.Name)))
	}
	return nil
}

// run runs the job and turns its result into an outcome; nil when the job's watch
// took the message over (jobWatch), which then finishes it.
func (r *Router) run(h *handling, route Route, job Job) *outcome {
	ctx, t := h.ctx, h.t
	jctx, stopBeats := ctx, func() {}
	if every := cmp.Or(route.HeartbeatEvery, r.cfg.HeartbeatEvery); job.Mode == Complete {
		// The heartbeats' context is the job's: a closed task cancels both, at no
		// cost per message beyond the heartbeats' own.
		jctx, stopBeats = r.beats.KeepAlive(ctx, t.Token, t.ExecutionArn, every, closedCause)
	}
	jctx, jspan := tracing.Start(jctx, "job", job.Name, trace.SpanKindInternal)
	var output any
	var err error
	if h.m.Detachable() {
		w := &h.watch
		w.r, w.h, w.job, w.jctx, w.stopBeats, w.jspan = r, h, job, jctx, stopBeats, jspan
		var ok bool
		// A job completing its task may have its context end before the handler's
		// (its task closed): its watch is its own. Another's ends with the
		// handler's, which the Poller watches.
		if output, err, ok = w.run(job.Mode == Complete); !ok {
			return nil
		}
	} else {
		// Not from a Poller (a direct call, tasktest): no handler goroutine to take
		// the message off, so the job gets a goroutine of its own.
		output, err = r.call(jctx, job, t)
	}
	tracing.End(jspan, redactToken(err, t.Token))
	out := r.judgeRun(ctx, jctx, h.m, job, t, output, err)
	stopBeats()
	return out
}

// judgeRun turns what a job returned under jctx (ctx's child) into its outcome: a
// cancel if its task closed while it ran, else judge's.
func (r *Router) judgeRun(ctx, jctx context.Context, m consumer.Message, job Job, t *Task, output any, err error) *outcome {
	if jctx.Err() != nil && ctx.Err() == nil { // only then can the task have closed
		if cause := context.Cause(jctx); errors.Is(cause, ErrTaskClosed) {
			return r.cancelled(m, job, cause)
		}
	}
	return r.judge(ctx, m, job, t, output, err)
}

// judge turns what a job returned into its message's outcome: reported, forwarded,
// retried or dead-lettered.
func (r *Router) judge(ctx context.Context, m consumer.Message, job Job, t *Task, output any, err error) *outcome {
	switch {
	case errors.Is(err, ErrTokenRefused):
		// A forged token, or a task that closed before the job could prove it: nothing
		// to report, nothing to retry.
		return &outcome{name: "token_refused", reason: err}
	case isPanic(err):
		return r.badInput(ctx, job.Name, t, Invalid("Panic", err))
	case err == nil && job.Mode == Observe:
		return succeeded
	case err == nil && t.HandedOff():
		return forwarded
	case err == nil:
		return r.succeed(ctx, job, t, output)
	case errors.Is(err, event.ErrTooLarge):
		err = Permanent("EventTooLarge", err) // can never fit: no retry makes it smaller
	}
	return r.jobFailed(ctx, m, job, t, err)
}

// jobFailed is the outcome of a job that returned err: a failure it named (reported
// at once), a stop (released), or one more attempt used (retried, or dead-lettered
// on the last).
func (r *Router) jobFailed(ctx context.Context, m consumer.Message, job Job, t *Task, err error) *outcome {
	if je, ok := asJobError(err); ok {
		if je.badInput {
			return r.badInput(ctx, job.Name, t, err)
		}
		return r.fail(ctx, job.Name, t, je.kind, err, "final_failure", nil)
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// The consumer took the message back (shutdown, lost visibility): not the
		// job's failure, and not an attempt to count against the task.
		return &outcome{name: "released", err: err, reason: err}
	}
	kind := "RetriesExhausted"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		kind = "Timeout"
		err = fmt.Errorf("job %s did not finish within its deadline: %w", job.Name, err)
	}
	if m.LastAttempt() {
		return r.fail(ctx, job.Name, t, kind, err, "dead_letter", consumer.DeadLetter(err))
	}
	return &outcome{name: "retry", err: err, reason: err}
}

// cancelled is the outcome of a job whose task closed while it ran: nothing to
// report (the task is closed), nothing to retry; the message is deleted.
func (r *Router) cancelled(m consumer.Message, job Job, cause error) *outcome {
	reason := "closed"
	var named interface{ ClosedReason() string }
	if errors.As(cause, &named) {
		reason = named.ClosedReason()
	}
	r.metrics.cancelled.WithLabelValues(m.Queue, reason).Inc()
	r.log.Info("job cancelled: its task closed", zap.String("queue", m.Queue), zap.String("job", job.Name),
		zap.String("message_id", m.ID), zap.String("reason", reason), zap.NamedError("cause", cause))
	return &outcome{name: "cancelled", reason: cause}
}

func (r *Router) succeed(ctx context.Context, job Job, t *Task, output any) *outcome {
	b, err := awsjson.Marshal(output)
	if err != nil {
		return r.fail(ctx, job.Name, t, "BadOutput", err, "final_failure", nil)
	}
	rctx, cancel := r.reportContext(ctx)
	defer cancel()
	if err := r.proveBeforeAnswer(rctx, t); err != nil {
		return &outcome{name: "task_closed", reason: err}
	}
	switch err := r.reporter.Succeed(rctx, t.Token, b); {
	case err == nil:
		return succeeded
	case taskClosed(err):
		return &outcome{name: "task_closed", reason: err}
	default:
		return &outcome{name: "retry", err: fmt.Errorf("report success: %w", err), reason: err}
	}
}

// proveBeforeAnswer sends the proving heartbeat of RouterConfig.ProveBeforeAnswer
// when it applies. It returns an error only when Step Functions refused the token
// (the task is closed: there is nothing to answer); any other failure of the
// heartbeat is logged and the outcome is sent anyway.
func (r *Router) proveBeforeAnswer(ctx context.Context, t *Task) error {
	if !r.cfg.ProveBeforeAnswer || t.proved.Load() || !t.young() {
		return nil
	}
	err := t.Heartbeat(ctx)
	if errors.Is(err, ErrTokenRefused) {
		return err
	}
	if err != nil {
		r.log.Debug("proving heartbeat before the outcome failed; sending the outcome anyway", zap.String("queue", t.Queue), zap.Error(err))
	}
	return nil
}

// DefaultReportTimeout is RouterConfig.ReportTimeout's default: long enough to wait
// out a burst at Step Functions' quotas.
const DefaultReportTimeout = 15 * time.Minute

// reportContext outlives the job's deadline: the outcome must still be reported,
// within ReportTimeout. Only a cancel of ctx (the consumer took the message back:
// drain timeout, lost visibility) ends it early. The AfterFunc hangs on ctx, the
// message's own context, so no parent is shared between messages.
func (r *Router) reportContext(ctx context.Context) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ReportTimeout)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	return rctx, func() { stop(); cancel() }
}

// fail reports SendTaskFailure when there is a token; then the message gets then
// (nil: delete; consumer.DeadLetter: DLQ). A failure that could not be reported
// leaves the message for redelivery, so the report is not lost.
func (r *Router) fail(ctx context.Context, jobName string, t *Task, kind string, cause error, name string, then error) *outcome {
	if t.Token != "" {
		rctx, cancel := r.reportContext(ctx)
		defer cancel()
		why := telemetry.RedactToken(cause.Error(), t.Token)
		if err := r.proveBeforeAnswer(rctx, t); err != nil {
			return &outcome{name: name, err: then, reason: cause} // closed: nothing to report
		}
		err := r.reporter.Fail(rctx, t.Token, jobName+"."+kind, why)
		if err != nil && !taskClosed(err) {
			return &outcome{name: "retry", err: fmt.Errorf("report failure: %w", err), reason: cause}
		}
		if err == nil {
			r.noteFailure(rctx, t, jobName+"."+kind, why)
		}
	}
	return &outcome{name: name, err: then, reason: cause}
}

// noteFailure keeps a failure just reported with t's live token (see
// RouterConfig.FailureNotes).
func (r *Router) noteFailure(ctx context.Context, t *Task, code, cause string) {
	if r.cfg.FailureNotes == nil || t.ExecutionArn == "" {
		return
	}
	if err := r.cfg.FailureNotes.NoteFailure(ctx, t.ExecutionArn, t.Job, code, cause); err != nil {
		r.log.Warn("failure note not written; the failure was reported", zap.String("execution_arn", t.ExecutionArn), zap.Error(err))
	}
}

func (r *Router) badInput(ctx context.Context, jobName string, t *Task, err error) *outcome {
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

// isPanic reports whether err is a job's panic (runJob).
func isPanic(err error) bool {
	var p *panicError
	return err != nil && errors.As(err, &p)
}

type result struct {
	out any
	err error
}

// giveUpAfter is how long call waits, once ctx has ended, for a job that does watch
// ctx to return its own error: as long as the Poller waits for a handler.
const giveUpAfter = consumer.StuckAfter

// States of one call's job goroutine; whoever moves it off callRunning first owns
// the ending (see call).
const (
	callRunning int32 = iota
	callReturned
	callAbandoned
)

// jobWatch runs a job on its message's handler goroutine and watches it: a job
// still running giveUpAfter (a closed task's: its StopGrace) after its context
// ended must not keep its task from being reported, nor hold a handler. The watch
// then takes the message over (giveUp): it judges it as a job that did not return,
// finishes it and settles it through consumer.Detach, and leaves the held goroutine
// to the job (worker_job_abandoned_total, worker_job_abandoned_running, a warning).
// The Poller does the watching (consumer.WatchHandler, Rescue) when the job's
// context ends with the handler's; a context.AfterFunc on the job's context, which
// cost 7 allocations a message, only when it can end first (a closed task).
// A goroutine a call (Router.call, which a message not from a Poller still takes)
// grew a fresh stack for every job: a job using 32 KiB of stack cost 7.8 µs a
// call that way, 0.7 µs on the handler's grown one (BenchmarkJobCall).
type jobWatch struct {
	r         *Router
	h         *handling
	job       Job
	jctx      context.Context
	stopBeats func()
	jspan     trace.Span
	state     atomic.Int32 // callRunning, then whoever moves it first owns the ending
}

// run runs the job; ok is false when the watch took the message over meanwhile.
// With ownEnd, jctx may end before the handler's context, and the watch is a
// context.AfterFunc on it; else the Poller watches (consumer.WatchHandler), which
// costs no timer and no context a message.
func (w *jobWatch) run(ownEnd bool) (output any, err error, ok bool) {
	if ownEnd {
		stop := context.AfterFunc(w.jctx, w.ended)
		output, err = w.r.runJob(w.jctx, w.job, w.h.t)
		stop()
	} else {
		consumer.WatchHandler(w.h.m, w)
		output, err = w.r.runJob(w.jctx, w.job, w.h.t)
	}
	if !w.state.CompareAndSwap(callRunning, callReturned) {
		w.h.series.lingering().Dec() // abandoned: it has now ended
		return nil, nil, false
	}
	return output, err, true
}

// ended runs once the job's context has ended while it runs: the job gets its
// moment to return its own error.
func (w *jobWatch) ended() {
	wait := giveUpAfter
	if errors.Is(context.Cause(w.jctx), ErrTaskClosed) {
		wait = max(w.job.StopGrace, giveUpAfter) // an exec job's group is being stopped
	}
	time.AfterFunc(wait, func() { w.giveUp(wait) })
}

// Rescue is the Poller's call (consumer.WatchHandler): the job is still running
// consumer.StuckAfter past its context's end.
func (w *jobWatch) Rescue(waited time.Duration) { w.giveUp(waited) }

// giveUp takes the message over from a job that is still running.
func (w *jobWatch) giveUp(waited time.Duration) {
	r, h, job, t := w.r, w.h, w.job, w.h.t
	if w.state.Load() != callRunning {
		return // it returned, as most do once their context ends
	}
	lingering := h.series.lingering()
	lingering.Inc() // before the swap, so that run's Dec comes after it
	if !w.state.CompareAndSwap(callRunning, callAbandoned) {
		lingering.Dec() // it returned at this moment: run goes on
		return
	}
	r.metrics.abandoned.WithLabelValues(job.Name).Inc()
	r.log.Warn("job still running after its context ended; no longer waited for",
		zap.String("queue", t.Queue), zap.String("job", job.Name), zap.String("message_id", t.MessageID),
		zap.Duration("waited", waited), zap.NamedError("reason", context.Cause(w.jctx)))
	err := fmt.Errorf("job %s still running: %w", job.Name, w.jctx.Err())
	tracing.End(w.jspan, redactToken(err, t.Token))
	out := r.judgeRun(h.ctx, w.jctx, h.m, job, t, nil, err)
	w.stopBeats()
	settle := consumer.Detach(h.m)
	settle(r.finish(h, out))
}

// runJob runs the job on the calling goroutine; a panic becomes an error for this
// message only.
func (r *Router) runJob(ctx context.Context, job Job, t *Task) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("job panicked", zap.String("job", job.Name), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			out, err = nil, &panicError{msg: fmt.Sprintf("job %s panicked: %v", job.Name, p)}
		}
	}()
	return job.Run(ctx, t)
}

// call runs the job in its own goroutine, for a message not from a Poller (no
// handler goroutine to take it off: see jobWatch), and waits for it or for ctx: a
// job that ignores its context must not keep the task from being reported at its
// deadline (its goroutine is left to end on its own, counted in
// worker_job_abandoned_total and, while it runs, worker_job_abandoned_running, and
// logged once). A panic becomes an error for this message only.
func (r *Router) call(ctx context.Context, job Job, t *Task) (any, error) {
	c, _ := r.calls.Get().(*jobCall)
	if c == nil {
		c = &jobCall{done: make(chan result, 1)}
	}
	c.r, c.job, c.t, c.ctx, c.lingering = r, job, t, ctx, r.metrics.forJob(job.Name).lingering()
	c.state.Store(callRunning)
	go c.run()
	select {
	case res := <-c.done:
		c.reuse()
		return res.out, res.err
	case <-ctx.Done():
	}
	// Give a job that does watch ctx a moment to return its own error; a job whose
	// task closed gets its StopGrace (an exec job's group is being stopped), so that
	// its slot is freed only when it is done.
	wait := giveUpAfter
	if errors.Is(context.Cause(ctx), ErrTaskClosed) {
		wait = max(job.StopGrace, giveUpAfter)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case res := <-c.done:
		c.reuse()
		return ctxResult(res)
	case <-timer.C:
	}
	c.lingering.Inc() // before the swap, so that the goroutine's Dec comes after it
	if !c.state.CompareAndSwap(callRunning, callAbandoned) {
		c.lingering.Dec() // it returned at this moment: its result is on its way
		res := <-c.done
		c.reuse()
		return ctxResult(res)
	}
	// Abandoned: c now belongs to its goroutine, and is never reused.
	r.metrics.abandoned.WithLabelValues(job.Name).Inc()
	r.log.Warn("job still running after its context ended; no longer waited for",
		zap.String("queue", t.Queue), zap.String("job", job.Name), zap.String("message_id", t.MessageID),
		zap.Duration("waited", wait), zap.NamedError("reason", context.Cause(ctx)))
	return nil, fmt.Errorf("job %s still running: %w", job.Name, ctx.Err())
}

// jobCall is one run of a job on a goroutine of its own (call). Calls are pooled
// (Router.calls): the three allocations each made (its channel, its state, the
// goroutine's closure) were a quarter of a direct call's in the router. A call
// whose job returned is reused; an abandoned one is left to its goroutine.
type jobCall struct {
	r         *Router
	job       Job
	t         *Task
	ctx       context.Context
	lingering prometheus.Gauge
	done      chan result // buffered: the goroutine never waits on it
	state     atomic.Int32
}

// run is the job's goroutine.
func (c *jobCall) run() {
	out, err := c.r.runJob(c.ctx, c.job, c.t)
	c.finish(result{out: out, err: err})
}

// finish hands the job's result to call, unless call abandoned it: whoever moves
// the state off callRunning first owns the ending. The send is the goroutine's
// last touch of c: call may reuse c as soon as it has the result.
func (c *jobCall) finish(res result) {
	if !c.state.CompareAndSwap(callRunning, callReturned) {
		c.lingering.Dec() // abandoned: it has now ended
		return
	}
	c.done <- res
}

// reuse puts a call whose result was taken back in its router's pool, holding
// nothing of its message.
func (c *jobCall) reuse() {
	r := c.r
	c.r, c.job, c.t, c.ctx, c.lingering = nil, Job{}, nil, nil, nil
	r.calls.Put(c)
}

// ctxResult is the result of a job that returned after its context ended: its
// output only with no error.
func ctxResult(res result) (any, error) {
	if res.err == nil {
		return res.out, nil
	}
	return nil, res.err
}

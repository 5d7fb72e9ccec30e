package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/taskbridge/taskbridge/internal/batch"
	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/callback"
	"github.com/taskbridge/taskbridge/internal/checkpoint"
	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/ecsprotect"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/failnote"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/lease"
	"github.com/taskbridge/taskbridge/internal/registry"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/throttle"
	"github.com/taskbridge/taskbridge/internal/topology"
	"github.com/taskbridge/taskbridge/internal/tracing"
)

var (
	_ consumer.Handler     = (*jobs.Router)(nil)
	_ consumer.Handler     = (*batch.Batcher)(nil)
	_ batch.Publisher      = (*event.Publisher)(nil)
	_ jobs.Reporter        = (*callback.StepFunctions)(nil)
	_ jobs.Heartbeater     = (*callback.StepFunctions)(nil)
	_ jobs.CheckpointStore = (*checkpoint.Store)(nil)
	_ jobs.Publisher       = (*event.Publisher)(nil)
)

// wiring is what every component of `worker run` is built from.
type wiring struct {
	setup
	stack     bootstrap.Output
	log       *zap.Logger
	reg       *prometheus.Registry // served on /metrics
	metrics   *consumer.Metrics
	ready     *telemetry.Readiness
	publisher *event.Publisher
	protector *ecsprotect.Protector // nil off ECS: does nothing
	// sfn and sfnLimits serve the per-message Step Functions calls (SendTask*,
	// StartExecution): one limiter per API per process.
	sfn       *sfn.Client
	sfnLimits *throttle.Set
	// hardStop ends at a second signal (NotifyStop): the pollers' drain ends at once.
	hardStop context.Context
}

// runWorker is `worker run`: set up, wire the components of the worker's roles, and
// run them until ctx ends and they have stopped.
func runWorker(ctx context.Context, registered Jobs, args []string) error {
	if len(args) > 0 {
		return UsageError{fmt.Errorf("run takes no arguments, got %v", args)}
	}
	return Run(ctx, registered)
}

// Run is `worker run` for registered (its Env, its Logs): it serves the
// topology's queues until ctx ends, then stops as at a first SIGTERM and returns.
// It owns everything it starts (clients, tracer, metrics registry, server) and
// sets no process-wide state, so that several Runs can share a process.
func Run(ctx context.Context, registered Jobs) error {
	registered = registered.withBuiltins()
	s, err := newSetup(ctx, registered)
	if err != nil {
		return err
	}
	defer s.conns.Close() // last: after the stop's flushes and the tracer's
	logs := registered.Logs
	if logs == nil {
		logs = os.Stderr
	}
	log, closeLog, err := telemetry.NewLoggerTo(logs, s.cfg.LogLevel, s.cfg.LogFormat, Version)
	if err != nil {
		return err
	}
	defer closeLog()
	// The first line says what runs, before anything can fail on the way.
	log.Info("worker starting", zap.String("stack", s.cfg.Stack), zap.String("topology", topologyName(s.topo)),
		zap.Strings("roles", s.cfg.Roles))
	ctx, stopTracing, err := tracing.Setup(ctx, tracing.Config{
		Exporters: s.cfg.Tracing.Exporters, OTLPProtocol: s.cfg.Tracing.OTLPProtocol, ConsolePath: s.cfg.TraceFile, Version: Version,
		FlushTimeout: s.cfg.Stop().TracingFlush,
	}, log)
	if err != nil {
		return err
	}
	defer stopTracing() // after the drain: flushes the last spans

	w, err := newWiring(ctx, s, log)
	if err != nil {
		return err
	}
	components, err := w.components(ctx, registered)
	if err != nil {
		return err
	}
	if wait := pollWait(s.cfg); wait < s.cfg.PollWait {
		// Said once for the process: every poller caps the same way (consumer.PollWaitWithin).
		log.Info("poll wait capped to fit the shutdown timeout: a receive in flight at a stop must return within the drain, or SQS may keep its messages invisible for a visibility timeout",
			zap.Duration("poll_wait", s.cfg.PollWait), zap.Duration("capped_to", wait), zap.Duration("shutdown_timeout", s.cfg.ShutdownTimeout))
	}
	log.Info("worker wired", zap.Int("components", len(components)), zap.Duration("poll_wait", pollWait(s.cfg)))
	return w.serve(ctx, components)
}

// newWiring resolves the stack and builds what the components share: metrics,
// readiness, the publisher, the Step Functions client and limits, the protector.
func newWiring(ctx context.Context, s setup, log *zap.Logger) (wiring, error) {
	reg := telemetry.NewRegistry(Version)
	stack, err := s.bootstrapper().Resolve(ctx)
	if err != nil {
		return wiring{}, err
	}
	w := wiring{
		setup: s, stack: stack, log: log, reg: reg,
		metrics:   consumer.NewMetrics(reg),
		ready:     telemetry.NewReadiness(2*s.cfg.PollWait+30*time.Second, reg),
		publisher: event.NewPublisher(event.PublisherConfig{EventBus: stack.EventBus, Source: s.topo.Source}, s.clients.EventBridge, log, reg),
		sfn:       limitedSFN(s.aws),
		sfnLimits: sfnLimits(s.cfg, reg),
		hardStop:  hardStopOf(ctx),
	}
	// One scale-in protection per process (task), held while any poller has a
	// message in hand.
	if s.cfg.ECSAgentURI != "" && s.cfg.TaskProtectionMinutes > 0 {
		w.protector, err = ecsprotect.New(ecsprotect.Config{
			AgentURI: s.cfg.ECSAgentURI, Minutes: s.cfg.TaskProtectionMinutes, Grace: s.cfg.TaskProtectionGrace, DropTimeout: s.cfg.Stop().ProtectionDrop,
		}, log, ecsprotect.NewMetrics(reg))
		if err != nil {
			return wiring{}, err
		}
	}
	return w, nil
}

// components wires the pollers of the worker's roles (WORKER_ROLES), then the
// protector and the DLQ gauge.
func (w wiring) components(ctx context.Context, registered Jobs) ([]component, error) {
	var components []component
	if w.cfg.HasRole(config.RoleJobs) {
		// The jobs' own setup (their clients), once, before any message is polled.
		env := registry.Env{AWS: w.aws, S3PathStyle: w.pathStyle(), Stack: w.cfg.Stack, EventBus: w.stack.EventBus, DataBucket: w.stack.DataBucket, LandingBucket: w.stack.LandingBucket}
		for _, hook := range registered.OnStart {
			if err := hook(ctx, env); err != nil {
				return nil, fmt.Errorf("start jobs: %w", err)
			}
		}
		ps, err := w.jobPollers(registered)
		if err != nil {
			return nil, err
		}
		components = append(components, ps...)
	}
	if w.cfg.HasRole(config.RoleBatch) {
		cs, err := w.batchComponents()
		if err != nil {
			return nil, err
		}
		components = append(components, cs...)
	}
	if len(components) == 0 {
		return nil, fmt.Errorf("nothing to run: the topology has no queue for WORKER_ROLES=%v", w.cfg.Roles)
	}
	// Scale-in protection (its Run returns at once when it is nil, off ECS); DLQ
	// depth for the dashboard and the DLQ alerts, and every queue's size (a queue
	// under SQS's 1 MiB is warned about).
	gauge := telemetry.QueueGaugeConfig{DLQs: dlqsToWatch(w.stack), Queues: w.stack.Queues}
	return append(components, w.protector, telemetry.NewQueueGauge(gauge, w.clients.SQS, w.reg, w.log)), nil
}

// serve runs the components and the metrics server under one errgroup until ctx
// ends, then waits for them to stop, at most the shutdown timeout.
func (w wiring) serve(ctx context.Context, components []component) error {
	// The metrics port is taken before any poller starts: a port in use fails the
	// start at once, not after a long poll and a drain.
	var srv *telemetry.Server
	if w.cfg.MetricsAddr != "" {
		srv = telemetry.NewServer(w.cfg.MetricsAddr, w.reg, w.ready.Ready, w.log)
		srv.StopTimeout = w.cfg.Stop().ServerStop
		if err := srv.Listen(); err != nil {
			return fmt.Errorf("metrics server (WORKER_METRICS_ADDR=%s; set a free address, or empty to turn it off): %w", w.cfg.MetricsAddr, err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	if srv != nil {
		g.Go(func() error { return srv.Run(gctx) })
	}
	for _, c := range components {
		g.Go(func() error { return c.Run(gctx) })
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	// Stopping: everything above is bounded by the stop's budget; its last guard
	// (budget.Shutdown from the signal) ends the wait, so ECS never has to SIGKILL
	// a worker that is stuck.
	budget := w.cfg.Stop()
	guard := time.NewTimer(budget.Shutdown)
	defer guard.Stop()
	w.log.Info("stopping: waiting for the long polls in flight to return and for running jobs to finish; signal again to stop at once",
		zap.Duration("poll_wait", pollWait(w.cfg)), zap.Duration("drain_timeout", budget.Drain), zap.Duration("shutdown_timeout", budget.Shutdown))
	select {
	case err := <-done:
		w.log.Info("stopped")
		return err
	case <-w.hardStop.Done():
	case <-guard.C:
		return fmt.Errorf("shutdown did not finish within %s; unfinished messages will be redelivered", budget.Shutdown)
	}
	// A second signal: the pollers cancel their jobs and release what they hold
	// (their drain ended with it); give that the flush's time, no more, and never
	// past the last guard.
	w.log.Warn("second signal: stopping at once; cancelling running jobs and releasing the messages in hand", zap.Duration("within", budget.Flush))
	released := time.NewTimer(budget.SecondSignal)
	defer released.Stop()
	select {
	case err := <-done:
		w.log.Info("stopped")
		return err
	case <-released.C:
	case <-guard.C:
	}
	return errors.New("stopped at a second signal before every message was released; those come back after their visibility timeout")
}

// topologyName says which topology runs; the embedded one, which nobody chose, is
// named with why it runs.
func topologyName(t *topology.Topology) string {
	if t.Path == "" {
		return "embedded cookies topology (WORKER_TOPOLOGY is not set)"
	}
	return t.Path
}

// pollWait is WORKER_POLL_WAIT capped so that a receive in flight at the stop
// returns within the drain.
func pollWait(cfg config.Config) time.Duration {
	return min(cfg.PollWait, consumer.PollWaitWithin(cfg.Stop().Drain))
}

// jobPollers wires every queue of the topology but the batcher's: one poller per
// queue, all feeding one router.
func (w wiring) jobPollers(registered Jobs) ([]component, error) {
	reporter := callback.New(callback.Config{DataBucket: w.stack.DataBucket, Limits: w.sfnLimits}, w.sfn, w.clients.S3, w.log, callback.NewMetrics(w.reg))
	all := append([]jobs.Job(nil), registered.Jobs...)
	routes := map[string]jobs.Route{}
	timeouts := map[string]time.Duration{}
	kinds := newKindBuilder(w, reporter.Fit)
	var queues []topology.Queue
	for _, q := range w.topo.Queues {
		if q.S3Batch != nil {
			continue // the batcher's
		}
		jobName, timeout := q.Job, w.cfg.JobTimeout
		if q.Job == "" {
			job, t, err := kinds.build(q)
			if err != nil {
				return nil, err
			}
			all = append(all, job)
			jobName, timeout = job.Name, t
		}
		routes[q.Name] = jobs.Route{Job: jobName, DetailTypes: q.DetailTypes, HeartbeatEvery: q.HeartbeatInterval.Duration}
		timeouts[q.Name] = timeout
		queues = append(queues, q)
	}
	if len(queues) == 0 {
		return nil, nil
	}
	router, err := jobs.NewRouter(jobs.RouterConfig{
		Routes: routes, HeartbeatEvery: w.cfg.HeartbeatEvery, ReportTimeout: w.cfg.ReportTimeout,
		ProveBeforeAnswer: w.proveBeforeAnswer(),
		LineSampling:      jobs.LineSampling{First: w.cfg.LogSampleFirst, Thereafter: w.cfg.LogSampleThereafter},
		FailureNotes:      failnote.New(w.clients.S3, w.stack.DataBucket),
		Checkpoints:       checkpoint.New(w.stack.DataBucket, w.clients.S3),
	}, all, reporter, reporter, w.publisher, w.log, jobs.NewMetrics(w.reg))
	if err != nil {
		return nil, err
	}
	var pollers []component
	handOver := w.handOver()
	for _, q := range queues {
		pc := w.pollerConfig(q)
		pc.HandlerTimeout = timeouts[q.Name]
		if pc.HandlerTimeout > handOver.After() {
			// Only a queue whose jobs may outlive SQS's cap pays for the hand-over
			// (a message attribute asked for per receive, a loop per queue).
			pc.HandOver = handOver
		}
		p, err := consumer.NewPoller(pc, w.clients.SQS, router, w.log, w.metrics)
		if err != nil {
			return nil, err
		}
		pollers = append(pollers, w.stoppable(p))
	}
	return pollers, nil
}

// handOver is the hand-over of job queues whose jobs may run past SQS's
// visibility cap: leases in the data bucket that live LeaseTTL(cap).
func (w wiring) handOver() *consumer.HandOver {
	visCap := w.cfg.VisibilityCap
	return &consumer.HandOver{Cap: visCap, Leases: lease.NewStore(w.clients.S3, w.stack.DataBucket, LeaseTTL(visCap)).ForConsumer()}
}

// LeaseTTL is how long a long job's lease lives past its last renewal: a worker
// killed mid-job is replaced within about that (and a receive). 5 min under
// SQS's 12 h cap; an eighth of a test's scaled-down cap.
func LeaseTTL(visibilityCap time.Duration) time.Duration {
	return min(5*time.Minute, visibilityCap/8)
}

// batchComponents wires the batcher to the s3Batch queue, if the topology has one.
func (w wiring) batchComponents() ([]component, error) {
	var landing *topology.Queue
	for _, q := range w.topo.Queues {
		if q.S3Batch != nil {
			landing = &q
		}
	}
	if landing == nil {
		return nil, nil
	}
	cfg := w.batchConfig(*landing)
	pc := w.pollerConfig(*landing)
	b, err := batch.New(cfg, w.clients.S3, w.clients.Glue, w.publisher, w.log, batch.NewMetrics(w.reg))
	if err != nil {
		return nil, err
	}
	pc.Concurrency = cfg.PollerConcurrency(pc.Concurrency)
	pc.HandlerTimeout = cfg.HandlerTimeout()
	p, err := consumer.NewPoller(pc, w.clients.SQS, b, w.log, w.metrics)
	if err != nil {
		return nil, err
	}
	return []component{b, w.stoppable(p)}, nil
}

// batchConfig is the batcher's Config: the environment's settings, the topology's
// s3Batch settings winning where set.
func (w wiring) batchConfig(landing topology.Queue) batch.Config {
	cfg := batch.Config{
		LandingBucket: w.stack.LandingBucket, KeyPrefix: w.cfg.BatchKeyPrefix, DataBucket: w.stack.DataBucket, GlueJob: w.stack.GlueJob,
		MaxFiles: w.cfg.BatchMaxFiles, Window: w.cfg.BatchWindow, GluePollInterval: w.cfg.GluePollInterval,
		// A batch's claims hold as long as its messages do without renewal (claim.go).
		Lease:       max(time.Duration(landing.VisibilityTimeoutSeconds)*time.Second, 20*time.Second),
		StopTimeout: w.cfg.Stop().BatchFlush, // inside the landing poller's drain
	}
	if b := landing.S3Batch; b != nil { // the topology's settings win over the environment's
		if b.MaxFiles > 0 {
			cfg.MaxFiles = b.MaxFiles
		}
		if b.Window.Duration > 0 {
			cfg.Window = b.Window.Duration
		}
		if b.KeyPrefix != "" {
			cfg.KeyPrefix = b.KeyPrefix
		}
	}
	return cfg
}

// component is a long-lived part of the worker.
type component interface {
	Run(ctx context.Context) error
}

// stoppable runs a poller whose drain a second signal ends (wiring.hardStop).
func (w wiring) stoppable(p *consumer.Poller) component { return pollerRun{p, w.hardStop} }

type pollerRun struct {
	p    *consumer.Poller
	hard context.Context
}

// Run works until ctx ends; its work context keeps ctx's values and ends with hard.
func (r pollerRun) Run(ctx context.Context) error {
	workCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(r.hard, cancel)()
	return r.p.Work(ctx, workCtx)
}

func (w wiring) pollerConfig(q topology.Queue) consumer.Config {
	concurrency := q.Concurrency
	if w.cfg.Concurrency != nil {
		concurrency = *w.cfg.Concurrency
	}
	budget := w.cfg.Stop()
	ready := w.ready
	return consumer.Config{
		Queue: q.Name, QueueURL: w.stack.Queues[q.Name], DLQURL: w.stack.DLQs[q.Name],
		Concurrency: concurrency, VisibilityTimeout: time.Duration(q.VisibilityTimeoutSeconds) * time.Second,
		MaxReceiveCount: q.MaxReceiveCount, PollWait: pollWait(w.cfg), HandlerTimeout: w.cfg.JobTimeout,
		DrainTimeout: budget.Drain, FlushTimeout: budget.Flush,
		MaxPollers:        w.cfg.MaxPollers,
		ReceiveResultFunc: func(err error) { ready.ObserveReceive(q.Name, err) },
		StoppedFunc:       func() { ready.SetPolling(q.Name, false) },
		Activity:          w.activity(),
	}
}

// activity is what pollers tell of messages in hand: the protector, or nothing.
func (w wiring) activity() consumer.Activity {
	if w.protector == nil {
		return nil
	}
	return w.protector
}

func runHealthcheck(ctx context.Context, registered Jobs) error {
	cfg, err := config.LoadFrom(registered.lookup())
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	return telemetry.Healthcheck(ctx, cfg.MetricsAddr)
}

// dlqsToWatch are the DLQs whose depth the gauge reports: each queue's, and the
// stack's events DLQ as queue "eventbridge" (so TaskbridgeDLQGrowing sees both).
func dlqsToWatch(stack bootstrap.Output) map[string]string {
	out := maps.Clone(stack.DLQs)
	if stack.EventsDLQ != "" {
		out[topology.EventsDLQName] = stack.EventsDLQ
	}
	return out
}

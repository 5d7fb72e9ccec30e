package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/taskbridge/taskbridge/internal/batch"
	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/callback"
	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/ecsprotect"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/registry"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/throttle"
	"github.com/taskbridge/taskbridge/internal/topology"
	"github.com/taskbridge/taskbridge/internal/tracing"
)

var (
	_ consumer.Handler = (*jobs.Router)(nil)
	_ consumer.Handler = (*batch.Batcher)(nil)
	_ batch.Publisher  = (*event.Publisher)(nil)
	_ jobs.Reporter    = (*callback.StepFunctions)(nil)
	_ jobs.Heartbeater = (*callback.StepFunctions)(nil)
	_ jobs.Publisher   = (*event.Publisher)(nil)
)

// flushReserve is kept from the shutdown timeout for what runs after the drain:
// releasing unfinished messages and flushing deletes (the pollers' FlushTimeout,
// three quarters of it), then stopping the HTTP server before the last guard.
const flushReserve = 4 * time.Second

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
}

// runWorker is `worker run`: set up, wire the components of the worker's roles, and
// run them until ctx ends and they have stopped.
func runWorker(ctx context.Context, registered Jobs, args []string) error {
	if len(args) > 0 {
		return UsageError{fmt.Errorf("run takes no arguments, got %v", args)}
	}
	s, err := newSetup(ctx, registered)
	if err != nil {
		return err
	}
	log, closeLog, err := telemetry.NewLogger(s.cfg.LogLevel, s.cfg.LogFormat, Version)
	if err != nil {
		return err
	}
	defer closeLog()
	stopTracing, err := tracing.Setup(ctx, tracing.Config{ConsolePath: s.cfg.TraceFile, Version: Version}, log)
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
	log.Info("worker starting", zap.String("stack", s.cfg.Stack), zap.String("topology", topologyName(s.topo)),
		zap.Strings("roles", s.cfg.Roles), zap.Int("components", len(components)))
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
	}
	// One scale-in protection per process (task), held while any poller has a
	// message in hand.
	if agentURI := os.Getenv("ECS_AGENT_URI"); agentURI != "" && s.cfg.TaskProtectionMinutes > 0 {
		w.protector, err = ecsprotect.New(ecsprotect.Config{AgentURI: agentURI, Minutes: s.cfg.TaskProtectionMinutes, Grace: s.cfg.TaskProtectionGrace}, log, ecsprotect.NewMetrics(reg))
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
	// depth for the dashboard and the DLQ alerts.
	return append(components, w.protector, telemetry.NewDLQGauge(telemetry.DLQGaugeConfig{DLQs: w.stack.DLQs}, w.clients.SQS, w.reg, w.log)), nil
}

// serve runs the components and the metrics server under one errgroup until ctx
// ends, then waits for them to stop, at most the shutdown timeout.
func (w wiring) serve(ctx context.Context, components []component) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range components {
		g.Go(func() error { return c.Run(gctx) })
	}
	if w.cfg.MetricsAddr != "" {
		srv := telemetry.NewServer(w.cfg.MetricsAddr, w.reg, w.ready.Ready, w.log)
		g.Go(func() error { return srv.Run(gctx) })
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	// Stopping: everything above is bounded by the shutdown timeout; this is the
	// last guard, so ECS never has to SIGKILL a worker that is stuck.
	w.log.Info("stopping", zap.Duration("shutdown_timeout", w.cfg.ShutdownTimeout))
	select {
	case err := <-done:
		w.log.Info("stopped")
		return err
	case <-time.After(w.cfg.ShutdownTimeout):
		return fmt.Errorf("shutdown did not finish within %s; unfinished messages will be redelivered", w.cfg.ShutdownTimeout)
	}
}

func topologyName(t *topology.Topology) string {
	if t.Path == "" {
		return "embedded"
	}
	return t.Path
}

// jobPollers wires every queue of the topology but the batcher's: one poller per
// queue, all feeding one router.
func (w wiring) jobPollers(registered Jobs) ([]component, error) {
	reporter := callback.New(callback.Config{DataBucket: w.stack.DataBucket, Limits: w.sfnLimits}, w.sfn, w.clients.S3, w.log, callback.NewMetrics(w.reg))
	all := append([]jobs.Job(nil), registered.Jobs...)
	routes := map[string]jobs.Route{}
	timeouts := map[string]time.Duration{}
	kinds := newKindBuilder(w)
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
		routes[q.Name] = jobs.Route{Job: jobName, DetailTypes: q.DetailTypes}
		timeouts[q.Name] = timeout
		queues = append(queues, q)
	}
	if len(queues) == 0 {
		return nil, nil
	}
	router, err := jobs.NewRouter(jobs.RouterConfig{Routes: routes, HeartbeatEvery: w.cfg.HeartbeatEvery, ReportTimeout: w.cfg.ReportTimeout}, all, reporter, reporter, w.publisher, w.log, jobs.NewMetrics(w.reg))
	if err != nil {
		return nil, err
	}
	var pollers []component
	for _, q := range queues {
		pc := w.pollerConfig(q)
		pc.HandlerTimeout = timeouts[q.Name]
		p, err := consumer.NewPoller(pc, w.clients.SQS, router, w.log, w.metrics)
		if err != nil {
			return nil, err
		}
		pollers = append(pollers, p)
	}
	return pollers, nil
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
	// The batcher's stop ends inside the poller's drain, so the landing messages
	// it settles are deleted or released before the poller gives up on them.
	cfg.StopTimeout = pc.DrainTimeout * 3 / 4
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
	return []component{b, p}, nil
}

// batchConfig is the batcher's Config: the environment's settings, the topology's
// s3Batch settings winning where set.
func (w wiring) batchConfig(landing topology.Queue) batch.Config {
	cfg := batch.Config{
		LandingBucket: w.stack.LandingBucket, KeyPrefix: w.cfg.BatchKeyPrefix, DataBucket: w.stack.DataBucket, GlueJob: w.stack.GlueJob,
		MaxFiles: w.cfg.BatchMaxFiles, Window: w.cfg.BatchWindow, GluePollInterval: w.cfg.GluePollInterval,
		// A batch's claims hold as long as its messages do without renewal (claim.go).
		Lease: max(time.Duration(landing.VisibilityTimeoutSeconds)*time.Second, 20*time.Second),
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

func (w wiring) pollerConfig(q topology.Queue) consumer.Config {
	concurrency := q.Concurrency
	if w.cfg.Concurrency != nil {
		concurrency = *w.cfg.Concurrency
	}
	// The stop's budget: DrainTimeout for in-flight receives and jobs, then
	// FlushTimeout for releases and the last deletes, all together; the rest of the
	// reserve is the margin before runWorker's last guard.
	drain := max(w.cfg.ShutdownTimeout-flushReserve, w.cfg.ShutdownTimeout/2)
	flush := (w.cfg.ShutdownTimeout - drain) * 3 / 4
	ready := w.ready
	return consumer.Config{
		Queue: q.Name, QueueURL: w.stack.Queues[q.Name], DLQURL: w.stack.DLQs[q.Name],
		Concurrency: concurrency, VisibilityTimeout: time.Duration(q.VisibilityTimeoutSeconds) * time.Second,
		MaxReceiveCount: q.MaxReceiveCount, PollWait: w.cfg.PollWait, HandlerTimeout: w.cfg.JobTimeout,
		DrainTimeout: drain, FlushTimeout: flush,
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

func runHealthcheck(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	return telemetry.Healthcheck(ctx, cfg.MetricsAddr)
}

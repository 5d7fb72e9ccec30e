package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/taskbridge/taskbridge/internal/batch"
	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/callback"
	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/topology"
)

var (
	_ consumer.Handler = (*jobs.Router)(nil)
	_ consumer.Handler = (*batch.Batcher)(nil)
	_ batch.Publisher  = (*event.Publisher)(nil)
	_ jobs.Reporter    = (*callback.StepFunctions)(nil)
	_ jobs.Heartbeater = (*callback.StepFunctions)(nil)
	_ jobs.Publisher   = (*event.Publisher)(nil)
	_ jobs.Fetcher     = (*jobs.URLGuard)(nil)
)

// flushReserve is kept from the shutdown timeout for what runs after the drain:
// releasing unfinished messages and flushing deletes.
const flushReserve = 4 * time.Second

func runWorker(ctx context.Context, args []string, _ io.Writer) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("run takes no arguments, got %v", args)}
	}
	s, err := newSetup(ctx)
	if err != nil {
		return err
	}
	log, err := telemetry.NewLogger(s.cfg.LogLevel, s.cfg.LogFormat, version)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	reg := telemetry.NewRegistry(version)
	ready := telemetry.NewReadiness(2*s.cfg.PollWait+30*time.Second, reg)
	stack, err := s.bootstrapper().Resolve(ctx)
	if err != nil {
		return err
	}
	cm := consumer.NewMetrics(reg)
	publisher := event.NewPublisher(event.PublisherConfig{EventBus: stack.EventBus, Source: s.topo.Source}, s.clients.EventBridge, log, reg)
	var components []component
	if s.cfg.HasRole(config.RoleJobs) {
		ps, err := jobPollers(ctx, s, stack, publisher, log, reg, cm, ready)
		if err != nil {
			return err
		}
		components = append(components, ps...)
	}
	if s.cfg.HasRole(config.RoleBatch) {
		cs, err := batchComponents(s, stack, publisher, log, reg, cm, ready)
		if err != nil {
			return err
		}
		components = append(components, cs...)
	}
	if len(components) == 0 {
		return errors.New("nothing to run: WORKER_ROLES names no role with queues")
	}
	// DLQ depth for the dashboard and the DLQ alerts.
	components = append(components, telemetry.NewDLQGauge(telemetry.DLQGaugeConfig{DLQs: stack.DLQs}, s.clients.SQS, reg, log))

	log.Info("worker starting", zap.String("stack", s.cfg.Stack), zap.Strings("roles", s.cfg.Roles), zap.Int("components", len(components)))
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range components {
		g.Go(func() error { return c.Run(gctx) })
	}
	if s.cfg.MetricsAddr != "" {
		srv := telemetry.NewServer(s.cfg.MetricsAddr, reg, ready.Ready, log)
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
	log.Info("stopping", zap.Duration("shutdown_timeout", s.cfg.ShutdownTimeout))
	select {
	case err := <-done:
		log.Info("stopped")
		return err
	case <-time.After(s.cfg.ShutdownTimeout):
		return fmt.Errorf("shutdown did not finish within %s; unfinished messages will be redelivered", s.cfg.ShutdownTimeout)
	}
}

// jobPollers wires the callback jobs: one poller per job queue of the topology, all
// feeding one router.
func jobPollers(ctx context.Context, s setup, stack bootstrap.Output, publisher *event.Publisher, log *zap.Logger, reg prometheus.Registerer, cm *consumer.Metrics, ready *telemetry.Readiness) ([]component, error) {
	router, queues, err := jobRouter(ctx, s, stack, publisher, log, reg)
	if err != nil {
		return nil, err
	}
	var pollers []component
	for _, q := range queues {
		p, err := consumer.NewPoller(pollerConfig(s.cfg, q, stack, ready), s.clients.SQS, router, log, cm)
		if err != nil {
			return nil, err
		}
		pollers = append(pollers, p)
	}
	return pollers, nil
}

// jobRouter builds the router of the cookies jobs and returns it with the job queues
// it serves (every queue of the topology but the batcher's).
func jobRouter(ctx context.Context, s setup, stack bootstrap.Output, publisher *event.Publisher, log *zap.Logger, reg prometheus.Registerer) (*jobs.Router, []topology.Queue, error) {
	reporter := callback.New(callback.Config{DataBucket: stack.DataBucket}, s.clients.SFN, s.clients.S3, log, callback.NewMetrics(reg))
	presign := s3.NewPresignClient(s.clients.S3)
	const probeKey = "taskbridge-presign-probe"
	probe, err := presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(stack.DataBucket), Key: aws.String(probeKey)})
	if err != nil {
		return nil, nil, fmt.Errorf("presign probe: %w", err)
	}
	guard, err := jobs.NewURLGuard(probe.URL, probeKey)
	if err != nil {
		return nil, nil, err
	}
	cookies := jobs.NewCookies(jobs.CookiesConfig{DataBucket: stack.DataBucket}, s.clients.S3, presign, publisher, guard)

	routes := map[string]jobs.Route{}
	var queues []topology.Queue
	for _, q := range s.topo.Queues {
		if q.S3ObjectCreated {
			continue // the batcher's
		}
		routes[q.Name] = jobs.Route{Job: q.Job, DetailTypes: q.DetailTypes}
		queues = append(queues, q)
	}
	router, err := jobs.NewRouter(jobs.RouterConfig{Routes: routes, HeartbeatEvery: s.cfg.HeartbeatEvery}, cookies.Jobs(), reporter, reporter, log, jobs.NewMetrics(reg))
	return router, queues, err
}

// batchComponents wires the batcher to the landing queue: its poller holds up to a
// full batch (and the start of the next) of messages while the batch is open, each
// kept invisible by the consumer until the run starts.
func batchComponents(s setup, stack bootstrap.Output, publisher *event.Publisher, log *zap.Logger, reg prometheus.Registerer, cm *consumer.Metrics, ready *telemetry.Readiness) ([]component, error) {
	var landing *topology.Queue
	for _, q := range s.topo.Queues {
		if q.S3ObjectCreated {
			landing = &q
		}
	}
	if landing == nil {
		return nil, errors.New("the topology has no s3ObjectCreated queue for the batcher")
	}
	const startTimeout = 5 * time.Minute
	b, err := batch.New(batch.Config{
		LandingBucket: stack.LandingBucket, KeyPrefix: s.cfg.BatchKeyPrefix, DataBucket: stack.DataBucket, GlueJob: stack.GlueJob,
		MaxFiles: s.cfg.BatchMaxFiles, Window: s.cfg.BatchWindow, StartTimeout: startTimeout, GluePollInterval: s.cfg.GluePollInterval,
	}, s.clients.S3, s.clients.Glue, publisher, log, batch.NewMetrics(reg))
	if err != nil {
		return nil, err
	}
	pc := pollerConfig(s.cfg, *landing, stack, ready)
	pc.Concurrency = s.cfg.BatchMaxFiles + 10
	pc.HandlerTimeout = s.cfg.BatchWindow + startTimeout + time.Minute
	p, err := consumer.NewPoller(pc, s.clients.SQS, b, log, cm)
	if err != nil {
		return nil, err
	}
	return []component{b, p}, nil
}

// component is a long-lived part of the worker.
type component interface {
	Run(ctx context.Context) error
}

func pollerConfig(cfg config.Config, q topology.Queue, stack bootstrap.Output, ready *telemetry.Readiness) consumer.Config {
	concurrency := q.Concurrency
	if cfg.Concurrency != nil {
		concurrency = *cfg.Concurrency
	}
	drain := max(cfg.ShutdownTimeout-flushReserve, cfg.ShutdownTimeout/2)
	return consumer.Config{
		Queue: q.Name, QueueURL: stack.Queues[q.Name], DLQURL: stack.DLQs[q.Name],
		Concurrency: concurrency, VisibilityTimeout: time.Duration(q.VisibilityTimeoutSeconds) * time.Second,
		MaxReceiveCount: q.MaxReceiveCount, PollWait: cfg.PollWait, HandlerTimeout: cfg.JobTimeout, DrainTimeout: drain,
		MaxPollers: cfg.MaxPollers,
		ReceiveResultFunc: func(err error) {
			ready.SetPolling(q.Name, true)
			ready.ObserveAWS(err)
		},
	}
}

func runHealthcheck(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	return telemetry.Healthcheck(ctx, cfg.MetricsAddr)
}

package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/taskbridge/taskbridge"
	"github.com/taskbridge/taskbridge/examples/cookies"
	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/bootstrap"
	"github.com/taskbridge/taskbridge/internal/callback"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/loadtest"
	"github.com/taskbridge/taskbridge/internal/registry"
	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/topology"
)

// cookiesLoad is what one run of the cookies workflow measured.
type cookiesLoad struct {
	messages    int64
	sqsRequests int64
	wall, cpu   time.Duration
	peakRSS     int64
	latencies   []time.Duration
	byAPI       map[string]float64 // the pollers' own count of their SQS requests
}

// BenchmarkCookiesAgainstEmulator runs the cookies workflow on moto (real Step
// Functions executions, EventBridge rules and SQS queues) with the worker's own job
// router, once behind the taskbridge pollers and once behind the naive consumer with
// the same concurrency per queue. It reports messages per second, CPU time of this
// process per message, SQS requests per message, callback latency (TaskStarted to
// TaskSucceeded in the executions' histories, p50 and p99) and peak RSS.
func BenchmarkCookiesAgainstEmulator(b *testing.B) {
	executions, people := 4, 48 // 4 × (48 + 2) = 200 callback tasks a run
	if testing.Short() {
		executions, people = 1, 3
	}
	for _, kind := range []string{"taskbridge", "naive"} {
		b.Run(kind, func(b *testing.B) {
			var total cookiesLoad
			for range b.N {
				r := runCookiesLoad(b, kind, executions, people)
				total.messages += r.messages
				total.sqsRequests += r.sqsRequests
				total.wall += r.wall
				total.cpu += r.cpu
				total.peakRSS = max(total.peakRSS, r.peakRSS)
				total.latencies = append(total.latencies, r.latencies...)
				b.Logf("%s: SQS requests by API (the pollers' count): %v", kind, r.byAPI)
			}
			b.ReportMetric(float64(total.messages)/total.wall.Seconds(), "msgs/s")
			b.ReportMetric(float64(total.cpu.Microseconds())/float64(total.messages), "cpu-µs/msg")
			b.ReportMetric(float64(total.sqsRequests)/float64(total.messages), "sqs-req/msg")
			b.ReportMetric(float64(loadtest.Percentile(total.latencies, 50).Milliseconds()), "callback-p50-ms")
			b.ReportMetric(float64(loadtest.Percentile(total.latencies, 99).Milliseconds()), "callback-p99-ms")
			b.ReportMetric(float64(total.peakRSS)/(1<<20), "peak-rss-MiB")
			b.Logf("%s: %d messages, %d callbacks, %d SQS requests, wall %s, cpu %s", kind, total.messages, len(total.latencies), total.sqsRequests, total.wall.Round(time.Millisecond), total.cpu.Round(time.Millisecond))
		})
	}
}

// runCookiesLoad bootstraps a fresh stack, starts the consumers, runs the executions
// to their end and measures. Bootstrapping is not measured.
func runCookiesLoad(b *testing.B, kind string, executions, people int) cookiesLoad {
	ctx := context.Background()
	awstest.Reset(b) // each run on an empty emulator, whichever ran before
	for _, kv := range awstest.Env(b) {
		k, v, _ := strings.Cut(kv, "=")
		b.Setenv(k, v)
	}
	stackName := awstest.Stack(b)
	cfg := awstest.Config(b)
	topo, err := topology.Load("")
	if err != nil {
		b.Fatal(err)
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	clients := bootstrap.Clients{
		SQS: sqs.NewFromConfig(cfg), EventBridge: eventbridge.NewFromConfig(cfg), S3: s3c,
		SFN: sfn.NewFromConfig(cfg), Glue: glue.NewFromConfig(cfg), STS: sts.NewFromConfig(cfg),
	}
	boot := bootstrap.New(topo, bootstrap.Stack{Names: topology.Names{Stack: stackName}}, clients, awstest.Region)
	stack, err := boot.Apply(ctx)
	if err != nil {
		b.Fatal(err)
	}
	stateMachine := stack.StateMachines["cookies"]
	log, reg := zap.NewNop(), prometheus.NewRegistry()
	publisher := event.NewPublisher(event.PublisherConfig{EventBus: stack.EventBus, Source: topo.Source}, clients.EventBridge, log, reg)
	// The cookies jobs as `worker run` wires them: registered on the public API,
	// behind the worker's router.
	deps, err := cookies.NewDeps(ctx, taskbridge.Stack{AWS: cfg, S3PathStyle: true, Name: stackName, EventBus: stack.EventBus, DataBucket: stack.DataBucket})
	if err != nil {
		b.Fatal(err)
	}
	programJobs := taskbridge.NewRegistry()
	cookies.RegisterWith(programJobs, deps)
	reporter := callback.New(callback.Config{DataBucket: stack.DataBucket}, clients.SFN, clients.S3, log, callback.NewMetrics(reg))
	routes := map[string]jobs.Route{}
	var queues []topology.Queue
	for _, q := range topo.Queues {
		if q.Job != "" {
			routes[q.Name] = jobs.Route{Job: q.Job, DetailTypes: q.DetailTypes}
			queues = append(queues, q)
		}
	}
	router, err := jobs.NewRouter(jobs.RouterConfig{Routes: routes}, append((*registry.Registry)(programJobs).Jobs(), jobs.Finisher()), reporter, reporter, publisher, log, jobs.NewMetrics(reg))
	if err != nil {
		b.Fatal(err)
	}
	const pollWait = 20 * time.Second
	var handled atomic.Int64
	counted := consumer.HandlerFunc(func(ctx context.Context, m consumer.Message) error {
		err := router.Handle(ctx, m)
		if err == nil {
			handled.Add(1)
		}
		return err
	})
	var requests loadtest.RequestCounter
	client := sqs.NewFromConfig(cfg, requests.Apply)
	ready := telemetry.NewReadiness(time.Minute, reg)
	metrics := consumer.NewMetrics(reg)

	if err := loadtest.ResetPeakRSS(); err != nil {
		b.Fatal(err)
	}
	cpu0, t0 := loadtest.CPUTime(), time.Now()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, q := range queues {
		if kind == "naive" {
			nq := loadtest.NaiveQueue{Name: q.Name, URL: stack.Queues[q.Name], Concurrency: q.Concurrency, Wait: pollWait}
			wg.Go(func() { loadtest.RunNaive(runCtx, client, nq, counted) })
			continue
		}
		p, err := consumer.NewPoller(consumer.Config{
			Queue: q.Name, QueueURL: stack.Queues[q.Name], DLQURL: stack.DLQs[q.Name], Concurrency: q.Concurrency,
			VisibilityTimeout: time.Duration(q.VisibilityTimeoutSeconds) * time.Second, MaxReceiveCount: q.MaxReceiveCount,
			PollWait: pollWait, MaxPollers: 4, DrainTimeout: 20 * time.Second,
			ReceiveResultFunc: func(err error) { ready.SetPolling(q.Name, true); ready.ObserveAWS(err) },
		}, client, counted, log, metrics)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { _ = p.Run(runCtx) })
	}
	arns := make([]string, executions)
	for i := range arns {
		out, err := clients.SFN.StartExecution(ctx, &sfn.StartExecutionInput{
			StateMachineArn: aws.String(stateMachine), Name: aws.String(fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)), Input: aws.String(fmt.Sprintf(`{"count":%d}`, people)),
		})
		if err != nil {
			b.Fatal(err)
		}
		arns[i] = aws.ToString(out.ExecutionArn)
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, 10*time.Minute)
	defer cancelWait()
	for _, arn := range arns {
		if err := waitSucceeded(waitCtx, clients.SFN, arn); err != nil {
			b.Fatal(err)
		}
	}
	r := cookiesLoad{wall: time.Since(t0)}
	stop()
	wg.Wait() // the pollers' last deletes are flushed and counted
	r.cpu = loadtest.CPUTime() - cpu0
	r.messages, r.sqsRequests = handled.Load(), requests.Count()
	mem, err := loadtest.ProcessMemory("self")
	if err != nil {
		b.Fatal(err)
	}
	r.peakRSS = mem.PeakRSS
	r.byAPI = sqsRequestsByAPI(b, reg)
	for _, arn := range arns {
		ls, err := loadtest.CallbackLatencies(ctx, clients.SFN, arn)
		if err != nil {
			b.Fatal(err)
		}
		r.latencies = append(r.latencies, ls...)
	}
	return r
}

func sqsRequestsByAPI(b *testing.B, reg *prometheus.Registry) map[string]float64 {
	families, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "worker_sqs_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "api" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// waitSucceeded polls an execution until it ends; an end other than success is an
// error.
func waitSucceeded(ctx context.Context, client *sfn.Client, arn string) error {
	for {
		d, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		if err != nil {
			return fmt.Errorf("describe execution: %w", err)
		}
		switch d.Status {
		case sfntypes.ExecutionStatusSucceeded:
			return nil
		case sfntypes.ExecutionStatusRunning:
		default:
			return fmt.Errorf("execution %s ended %s: %s", arn, d.Status, aws.ToString(d.Cause))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

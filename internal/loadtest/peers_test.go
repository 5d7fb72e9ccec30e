//go:build elasticmq

package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/telemetry"
)

// The side-by-side comparison of issue 13 (`make bench-peers`): the raw loop and the
// worker's consumer, each in a process of its own (this test binary run again as
// TestPeerChild), drain the same number of no-op messages from ElasticMQ on
// loopback. It prints medians and ratios to the raw loop; it never fails on a figure.
//
// Settings (environment): PEERS_MESSAGES (5000), PEERS_ROUNDS (5), PEERS_WARMUP
// (30000 messages per consumer first, not counted), PEERS_IDLE (60s,
// the idle window; 0 skips it), PEERS_PROFILE (a directory: CPU and allocation
// profiles of each consumer's last drain, one folder per consumer), PEERS_KINDS
// (raw,poller,worker), PEERS_CONCURRENCY (20, the Poller's).
//
// The consumers: raw is the hand-tuned loop; poller is consumer.Poller with a no-op
// handler; worker is what `worker run` does with a message: consumer.Poller →
// jobs.Router (envelope checks, metrics, one JSON log line a message) → a no-op
// Observe job.

// peerFigures is what a child reports on its stdout, as one JSON line.
type peerFigures struct {
	Kind     string        `json:"kind"`
	Messages int           `json:"messages"`
	Wall     time.Duration `json:"wall"`
	CPU      time.Duration `json:"cpu"`
	Requests int64         `json:"requests"`
	// What went wrong, if anything: a drain that waited for a redelivery says why.
	Failed       int64 `json:"failed"`        // requests without a 200
	DeleteFailed int64 `json:"delete_failed"` // entries a DeleteMessageBatch refused
}

const peerResultPrefix = "PEER-RESULT "

// peerVisibility is the visibility timeout of the drained queues (ElasticMQ's
// default, and the Poller's setting).
const peerVisibility = 30 * time.Second

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

func envString(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

func peerConfig(endpoint string) aws.Config {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64 // as many as the consumers keep busy
	return aws.Config{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint), HTTPClient: &http.Client{Transport: transport},
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
}

func TestPeers(t *testing.T) {
	endpoint := os.Getenv("TASKBRIDGE_ELASTICMQ_ENDPOINT")
	if endpoint == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("TASKBRIDGE_ELASTICMQ_ENDPOINT is not set (CI=true, so this fails): run make bench-peers")
		}
		t.Skip("TASKBRIDGE_ELASTICMQ_ENDPOINT is not set: run make bench-peers")
	}
	messages, rounds := envInt("PEERS_MESSAGES", 5000), envInt("PEERS_ROUNDS", 5)
	idle := envDuration("PEERS_IDLE", time.Minute)
	profile := os.Getenv("PEERS_PROFILE")
	cfg := peerConfig(endpoint)
	setup := sqs.NewFromConfig(cfg)
	t.Cleanup(cfg.HTTPClient.(*http.Client).CloseIdleConnections) // the leak check follows

	kinds := strings.Split(envString("PEERS_KINDS", "raw,poller,worker"), ",")
	// Warm-up, not counted: the JVM of ElasticMQ compiles its hot paths in the first
	// tens of thousands of requests, and the first consumer measured would pay for it.
	warmup := envInt("PEERS_WARMUP", 30000)
	for _, kind := range kinds {
		url := peerQueue(t, setup, fmt.Sprintf("peers-warmup-%s-%d", kind, time.Now().UnixNano()))
		peerFill(t, setup, url, warmup)
		f := runPeer(t, []string{"PEER_KIND=" + kind, "PEER_URL=" + url, "PEER_N=" + strconv.Itoa(warmup), "PEER_ENDPOINT=" + endpoint})
		t.Logf("warm-up %s: %d msgs in %s", kind, f.Messages, f.Wall.Round(time.Millisecond))
	}
	runs := map[string][]peerFigures{}
	stalls := 0
	for round := range rounds {
		order := kinds
		if round%2 == 1 {
			order = slices.Clone(kinds)
			slices.Reverse(order)
		}
		for _, kind := range order {
			for attempt := 1; ; attempt++ {
				url := peerQueue(t, setup, fmt.Sprintf("peers-%s-%d", kind, time.Now().UnixNano()))
				peerFill(t, setup, url, messages)
				env := []string{"PEER_KIND=" + kind, "PEER_URL=" + url, "PEER_N=" + strconv.Itoa(messages), "PEER_ENDPOINT=" + endpoint}
				if profile != "" && round == rounds-1 {
					env = append(env, "PEER_PROFILE="+filepath.Join(profile, kind))
				}
				f := runPeer(t, env)
				t.Logf("round %d %s: %d msgs in %s, cpu %s, %d requests (%d without a 200), %d deletes failed", round+1, kind, f.Messages, f.Wall.Round(time.Millisecond), f.CPU.Round(time.Millisecond), f.Requests, f.Failed, f.DeleteFailed)
				// ElasticMQ 1.7.1 now and then keeps a few received messages from a
				// drain, whichever consumer (the raw loop too; every request answered
				// 200, no delete failed): they come back after the 30 s visibility
				// timeout. Such a drain measures that wait, not the consumer, so it
				// is run again (twice at most).
				if f.Wall < peerVisibility || attempt == 3 {
					runs[kind] = append(runs[kind], f)
					break
				}
				stalls++
				t.Logf("round %d %s waited for a redelivery; running it again", round+1, kind)
			}
		}
	}
	idlePerMin := map[string]float64{}
	if idle > 0 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, kind := range kinds {
			url := peerQueue(t, setup, fmt.Sprintf("peers-idle-%s-%d", kind, time.Now().UnixNano()))
			wg.Go(func() {
				f := runPeer(t, []string{"PEER_KIND=" + kind, "PEER_URL=" + url, "PEER_IDLE=" + idle.String(), "PEER_ENDPOINT=" + endpoint})
				mu.Lock()
				idlePerMin[kind] = float64(f.Requests) / f.Wall.Minutes()
				mu.Unlock()
			})
		}
		wg.Wait()
	}

	type row struct{ rate, cpu, req float64 }
	med := map[string]row{}
	for kind, fs := range runs {
		var rates, cpus, reqs []float64
		for _, f := range fs {
			rates = append(rates, float64(f.Messages)/f.Wall.Seconds())
			cpus = append(cpus, float64(f.CPU.Microseconds())/float64(f.Messages))
			reqs = append(reqs, float64(f.Requests)/float64(f.Messages))
		}
		med[kind] = row{median(rates), median(cpus), median(reqs)}
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "consumer (%d msgs, median of %d)\tmsgs/s\tCPU µs/msg\tSQS req/msg\tidle receives/min\tmsgs/s ÷ raw\tCPU ÷ raw\t\n", messages, rounds)
	names := map[string]string{
		"raw":    "raw loop, 4 goroutines, receive 10 + DeleteMessageBatch",
		"poller": fmt.Sprintf("taskbridge Poller, concurrency %d, up to 4 pollers", peerConcurrency()),
		"worker": fmt.Sprintf("worker: Poller (concurrency %d) → Router → no-op Observe job, info logs sampled as run does", peerConcurrency()),
	}
	for _, kind := range kinds {
		r := med[kind]
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.3f\t%.1f\t%.2f\t%.2f\t\n", names[kind], r.rate, r.cpu, r.req, idlePerMin[kind], r.rate/med["raw"].rate, r.cpu/med["raw"].cpu)
	}
	require.NoError(t, tw.Flush())
	fmt.Print(buf.String())
	if stalls > 0 {
		fmt.Printf("%d drains waited for a redelivery by ElasticMQ and were run again\n", stalls)
	}
	if profile != "" {
		fmt.Printf("profiles of the last drains: %s/{%s}/{cpu,allocs}.pprof\n", profile, strings.Join(kinds, ","))
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func peerQueue(t *testing.T, client *sqs.Client, name string) string {
	t.Helper()
	q, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	require.NoError(t, err)
	url := aws.ToString(q.QueueUrl)
	t.Cleanup(func() {
		_, _ = client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	})
	return url
}

// peerFill sends n messages in batches of 10 from 8 goroutines (setup, not measured).
func peerFill(t *testing.T, client *sqs.Client, url string, n int) {
	t.Helper()
	batches := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for i := range batches {
				var entries []types.SendMessageBatchRequestEntry
				for j := i; j < min(i+10, n); j++ {
					entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(peerBody(j))})
				}
				if _, err := client.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries}); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := 0; i < n; i += 10 {
		batches <- i
	}
	close(batches)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// peerConcurrency is the Poller's concurrency (PEERS_CONCURRENCY, 20): at most that
// many messages in hand. The raw loop holds up to 40 (4 goroutines × 10).
func peerConcurrency() int { return envInt("PEERS_CONCURRENCY", 20) }

// peerBody is an EventBridge envelope as a rule delivers it, so that every consumer
// drains the same bytes and the worker's router accepts them.
func peerBody(n int) string {
	return `{"version":"0","id":"` + fmt.Sprintf("00000000-0000-4000-8000-%012d", n) + `","detail-type":"peers","source":"bench","account":"000000000000",` +
		`"time":"2026-11-24T00:00:00Z","region":"us-east-1","resources":[],"detail":{"n":` + strconv.Itoa(n) + `}}`
}

// runPeer runs this test binary as TestPeerChild with env and returns its figures.
func runPeer(t *testing.T, env []string) peerFigures {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeerChild$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "peer %v: %s%s", env, stdout.String(), stderr.String())
	for _, line := range strings.Split(stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, peerResultPrefix); ok {
			var f peerFigures
			require.NoError(t, json.Unmarshal([]byte(rest), &f))
			return f
		}
	}
	t.Fatalf("peer %v reported nothing: %s%s", env, stdout.String(), stderr.String())
	return peerFigures{}
}

// TestPeerChild is one consumer's process of TestPeers; it does nothing unless
// PEER_KIND is set. It reports its figures and exits at once, without stopping its
// consumer: the drain, not the stop, is measured.
func TestPeerChild(t *testing.T) {
	kind := os.Getenv("PEER_KIND")
	if kind == "" {
		t.Skip("run by TestPeers")
	}
	url, n := os.Getenv("PEER_URL"), envInt("PEER_N", 0)
	idle := envDuration("PEER_IDLE", 0)
	var counter RequestCounter
	client := sqs.NewFromConfig(peerConfig(os.Getenv("PEER_ENDPOINT")), counter.Apply)
	dc := NewDeleteCounter(client, int64(n))
	ctx := context.Background()
	var stopProfile func()
	if dir := os.Getenv("PEER_PROFILE"); dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
		require.NoError(t, err)
		require.NoError(t, pprof.StartCPUProfile(f))
		stopProfile = func() {
			pprof.StopCPUProfile()
			_ = f.Close()
			m, err := os.Create(filepath.Join(dir, "allocs.pprof"))
			require.NoError(t, err)
			require.NoError(t, pprof.Lookup("allocs").WriteTo(m, 0))
			_ = m.Close()
		}
	}
	c0, t0 := CPUTime(), time.Now()
	switch kind {
	case "raw":
		loop := RawLoop{URL: url, Goroutines: 4, Wait: time.Second}
		go loop.Run(ctx, dc, func(types.Message) error { return nil })
	case "poller":
		p, err := consumer.NewPoller(consumer.Config{Queue: "peers", QueueURL: url, Concurrency: peerConcurrency(), MaxPollers: 4, VisibilityTimeout: peerVisibility, PollWait: 20 * time.Second},
			dc, consumer.HandlerFunc(func(context.Context, consumer.Message) error { return nil }), zap.NewNop(), consumer.NewMetrics(prometheus.NewRegistry()))
		require.NoError(t, err)
		go func() { _ = p.Run(ctx) }()
	case "worker":
		reg := prometheus.NewRegistry()
		log, _, err := telemetry.NewLogger("info", "json", "bench")
		require.NoError(t, err)
		noop := jobs.Job{Name: "noop", Mode: jobs.Observe, Run: func(context.Context, *jobs.Task) (any, error) { return nil, nil }}
		router, err := jobs.NewRouter(jobs.RouterConfig{Routes: map[string]jobs.Route{"peers": {Job: "noop", DetailTypes: []string{"peers"}}},
			LineSampling: jobs.DefaultLineSampling}, // as worker run has it (WORKER_LOG_SAMPLE_*)
			[]jobs.Job{noop}, nil, nil, noPublisher{}, log, jobs.NewMetrics(reg))
		require.NoError(t, err)
		p, err := consumer.NewPoller(consumer.Config{Queue: "peers", QueueURL: url, Concurrency: peerConcurrency(), MaxPollers: 4, VisibilityTimeout: peerVisibility, PollWait: 20 * time.Second},
			dc, router, log, consumer.NewMetrics(reg))
		require.NoError(t, err)
		go func() { _ = p.Run(ctx) }()
	default:
		t.Fatalf("unknown PEER_KIND %q", kind)
	}
	if idle > 0 {
		time.Sleep(idle) // the window itself
	} else {
		select {
		case <-dc.Done:
		case <-time.After(5 * time.Minute):
			t.Fatalf("%s: %d messages not drained in 5 minutes", kind, n)
		}
	}
	f := peerFigures{Kind: kind, Messages: n, Wall: time.Since(t0), CPU: CPUTime() - c0, Requests: counter.Count(), Failed: counter.Failed(), DeleteFailed: dc.Failed.Load()}
	if stopProfile != nil {
		stopProfile()
	}
	b, _ := json.Marshal(f)
	fmt.Println(peerResultPrefix + string(b))
	os.Exit(0) // no stop, no leak check: the process ends here
}

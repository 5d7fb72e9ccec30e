//go:build elasticmq

package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/callback"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/telemetry"
)

// TestCallbackOverhead is the callback-overhead benchmark of issue 13 (`make
// bench-callback`): the time the worker adds to a callback task, from a message
// being put on the queue (just before SendMessage) to its SendTaskSuccess reaching
// a stub Step Functions endpoint on loopback that answers at once. The worker side
// (consumer → jobs.Router → callback, a no-op job, info logs as JSON) runs in a
// process of its own (TestCallbackChild); this process puts the messages and runs
// the stub. Phases: no load (one message every 20 ms), 1,000 and 5,000 msgs/s; the
// worker's peak RSS at the end. The same phases run first against a reference
// process, a raw receive loop that POSTs each token to the stub with net/http:
// what ElasticMQ, the sender and loopback cost, so that the worker's own share is
// the difference. It prints figures and never fails on them.
func TestCallbackOverhead(t *testing.T) {
	endpoint := os.Getenv("TASKBRIDGE_ELASTICMQ_ENDPOINT")
	if endpoint == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("TASKBRIDGE_ELASTICMQ_ENDPOINT is not set (CI=true, so this fails): run make bench-callback")
		}
		t.Skip("TASKBRIDGE_ELASTICMQ_ENDPOINT is not set: run make bench-callback")
	}
	cfg := peerConfig(endpoint)
	t.Cleanup(cfg.HTTPClient.(*http.Client).CloseIdleConnections)
	client := sqs.NewFromConfig(cfg)

	// The stub Step Functions: records when each token's SendTaskSuccess arrived.
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	duplicates := 0
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		var in struct{ TaskToken string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".SendTaskSuccess") {
			mu.Lock()
			if _, dup := arrived[in.TaskToken]; dup {
				duplicates++ // a redelivery: the first report counts
			} else {
				arrived[in.TaskToken] = at
			}
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(stub.Close)

	for _, kind := range []string{"reference", "worker"} {
		fmt.Printf("== %s\n", map[string]string{
			"reference": "reference: a raw receive loop that POSTs each token to the stub with net/http (what ElasticMQ and loopback cost)",
			"worker":    "worker: consumer.Poller (concurrency 32, up to 4 pollers) → jobs.Router → callback.StepFunctions, no-op job",
		}[kind])
		url := peerQueue(t, client, fmt.Sprintf("callback-%s-%d", kind, time.Now().UnixNano()))
		callbackRun(t, client, url, kind, endpoint, stub.URL, &mu, arrived)
		mu.Lock()
		fmt.Printf("%s: %d SendTaskSuccess for tokens already reported (redeliveries)\n", kind, duplicates)
		duplicates = 0
		mu.Unlock()
	}
}

// callbackRun starts the child of kind on url and runs the phases against it.
func callbackRun(t *testing.T, client *sqs.Client, url, kind, endpoint, stubURL string, mu *sync.Mutex, arrived map[string]time.Time) {
	child := exec.Command(os.Args[0], "-test.run=^TestCallbackChild$", "-test.count=1", "-test.v=false")
	child.Env = append(os.Environ(), "CALLBACK_KIND="+kind, "CALLBACK_QUEUE_URL="+url, "CALLBACK_SFN_URL="+stubURL, "PEER_ENDPOINT="+endpoint)
	stdin, err := child.StdinPipe()
	require.NoError(t, err)
	stdout, err := child.StdoutPipe()
	require.NoError(t, err)
	child.Stderr = io.Discard // the worker's logs
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = stdin.Close(); _ = child.Wait() })
	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "the worker process starts")
	require.Equal(t, "READY", lines.Text())

	seq := 0
	prefix := kind + "-"
	type sent struct {
		token string
		at    time.Time
	}
	// put sends n messages in batches of 10 (1 when n is 1) and records when.
	put := func(n int) []sent {
		out := make([]sent, 0, n)
		for i := 0; i < n; i += 10 {
			var entries []types.SendMessageBatchRequestEntry
			for j := i; j < min(i+10, n); j++ {
				seq++
				token := prefix + strconv.Itoa(seq)
				body, _ := json.Marshal(map[string]any{
					"version": "0", "id": token, "detail-type": "bench", "source": "bench", "account": "123456789012",
					"time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1", "resources": []string{},
					"detail": map[string]any{"TaskToken": token},
				})
				entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j - i)), MessageBody: aws.String(string(body))})
				out = append(out, sent{token: token})
			}
			at := time.Now()
			_, err := client.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
			require.NoError(t, err)
			for k := len(out) - len(entries); k < len(out); k++ {
				out[k].at = at
			}
		}
		return out
	}
	// phase puts rate msgs/s for d (batches of 10 every 10 ms per 1,000 msgs/s),
	// or one message every interval when rate is 0, and returns the latencies.
	phase := func(name string, rate int, d time.Duration) {
		var all []sent
		var amu sync.Mutex
		start := time.Now()
		if rate == 0 {
			for time.Since(start) < d {
				all = append(all, put(1)...)
				time.Sleep(20 * time.Millisecond) // the pace of the no-load phase
			}
		} else {
			var wg sync.WaitGroup
			for range rate / 1000 {
				wg.Go(func() {
					tick := time.NewTicker(10 * time.Millisecond)
					defer tick.Stop()
					for time.Since(start) < d {
						s := put(10)
						amu.Lock()
						all = append(all, s...)
						amu.Unlock()
						<-tick.C
					}
				})
			}
			wg.Wait()
		}
		putFor := time.Since(start)
		var lat []time.Duration
		deadline := time.Now().Add(time.Minute)
		for {
			lat = lat[:0]
			mu.Lock()
			for _, s := range all {
				if at, ok := arrived[s.token]; ok {
					lat = append(lat, at.Sub(s.at))
				}
			}
			mu.Unlock()
			if len(lat) == len(all) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond) // the worker catches up; no signal from another process
		}
		fmt.Printf("%-22s %6d msgs at %6.0f msgs/s: put → SendTaskSuccess p50 %7s  p99 %7s  max %7s  (%d not reported)\n", name, len(all), float64(len(all))/putFor.Seconds(),
			Percentile(lat, 50).Round(10*time.Microsecond), Percentile(lat, 99).Round(10*time.Microsecond), Percentile(lat, 100).Round(10*time.Microsecond), len(all)-len(lat))
		// The process's own share: from the receive that brought a message back in
		// its hands to its SendTaskSuccess at the stub.
		_, err := io.WriteString(stdin, "DUMP\n")
		require.NoError(t, err)
		first := map[string]time.Time{} // a redelivery is stamped again: the first receive counts
		for lines.Scan() && lines.Text() != "END" {
			token, ns, _ := strings.Cut(lines.Text(), " ")
			n, err := strconv.ParseInt(ns, 10, 64)
			require.NoError(t, err)
			if _, seen := first[token]; !seen {
				first[token] = time.Unix(0, n)
			}
		}
		var own []time.Duration
		mu.Lock()
		for token, in := range first {
			if at, ok := arrived[token]; ok {
				own = append(own, at.Sub(in))
			}
		}
		mu.Unlock()
		fmt.Printf("%-22s %6d msgs in hand → SendTaskSuccess (the process's own share): p50 %7s  p99 %7s  max %7s\n", "", len(own),
			Percentile(own, 50).Round(10*time.Microsecond), Percentile(own, 99).Round(10*time.Microsecond), Percentile(own, 100).Round(10*time.Microsecond))
	}
	phase("warm-up (not counted)", 1000, 5*time.Second)
	phase("no load", 0, 10*time.Second)
	phase("1,000 msgs/s", 1000, 10*time.Second)
	phase("5,000 msgs/s", 5000, 10*time.Second)
	mem, err := ProcessMemory(strconv.Itoa(child.Process.Pid))
	require.NoError(t, err)
	fmt.Printf("%s process: peak RSS %.1f MiB, RSS now %.1f MiB\n", kind, float64(mem.PeakRSS)/(1<<20), float64(mem.RSS)/(1<<20))
}

// TestCallbackChild is the worker side of TestCallbackOverhead; it does nothing
// unless CALLBACK_QUEUE_URL is set, and exits when its stdin closes.
func TestCallbackChild(t *testing.T) {
	url := os.Getenv("CALLBACK_QUEUE_URL")
	if url == "" {
		t.Skip("run by TestCallbackOverhead")
	}
	if os.Getenv("CALLBACK_KIND") == "reference" {
		stub := os.Getenv("CALLBACK_SFN_URL")
		loop := RawLoop{URL: url, Goroutines: 4, Wait: 20 * time.Second}
		stamper := &receiveStamper{Client: sqs.NewFromConfig(peerConfig(os.Getenv("PEER_ENDPOINT")))}
		go loop.Run(context.Background(), stamper, func(m types.Message) error {
			var env struct {
				Detail struct{ TaskToken string } `json:"detail"`
			}
			_ = json.Unmarshal([]byte(aws.ToString(m.Body)), &env)
			body, _ := json.Marshal(map[string]string{"TaskToken": env.Detail.TaskToken, "Output": "{}"})
			req, _ := http.NewRequest(http.MethodPost, stub, strings.NewReader(string(body)))
			req.Header.Set("X-Amz-Target", "AWSStepFunctions.SendTaskSuccess")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		})
		fmt.Println("READY")
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			w := bufio.NewWriter(os.Stdout)
			for _, st := range stamper.take() {
				fmt.Fprintf(w, "%s %d\n", st.token, st.at)
			}
			fmt.Fprintln(w, "END")
			_ = w.Flush()
		}
		os.Exit(0)
	}
	reg := prometheus.NewRegistry()
	log, _, err := telemetry.NewLogger("info", "json", "bench")
	require.NoError(t, err)
	sqsClient := &receiveStamper{Client: sqs.NewFromConfig(peerConfig(os.Getenv("PEER_ENDPOINT")))}
	sfnClient := sfn.NewFromConfig(aws.Config{
		Region: "us-east-1", BaseEndpoint: aws.String(os.Getenv("CALLBACK_SFN_URL")),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	reporter := callback.New(callback.Config{DataBucket: "bench"}, sfnClient, nil, log, callback.NewMetrics(reg))
	noop := jobs.Job{Name: "noop", Mode: jobs.Complete, Run: func(context.Context, *jobs.Task) (any, error) { return struct{}{}, nil }}
	router, err := jobs.NewRouter(jobs.RouterConfig{Routes: map[string]jobs.Route{"bench": {Job: "noop", DetailTypes: []string{"bench"}}},
		LineSampling: jobs.DefaultLineSampling}, // as worker run has it (WORKER_LOG_SAMPLE_*)
		[]jobs.Job{noop}, reporter, reporter, noPublisher{}, log, jobs.NewMetrics(reg))
	require.NoError(t, err)
	p, err := consumer.NewPoller(consumer.Config{Queue: "bench", QueueURL: url, Concurrency: 32, MaxPollers: 4, VisibilityTimeout: 30 * time.Second, PollWait: 20 * time.Second},
		sqsClient, router, log, consumer.NewMetrics(reg))
	require.NoError(t, err)
	go func() { _ = p.Run(context.Background()) }()
	fmt.Println("READY")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() { // DUMP: the receive times so far, one "token unix-nanoseconds" a line
		w := bufio.NewWriter(os.Stdout)
		for _, st := range sqsClient.take() {
			fmt.Fprintf(w, "%s %d\n", st.token, st.at)
		}
		fmt.Fprintln(w, "END")
		_ = w.Flush()
	}
	os.Exit(0) // no stop, no leak check: the process ends here
}

// receiveStamper records when each message was in the worker's hands: when the
// ReceiveMessage that brought it returned. The token is cut from the body without
// decoding it, so that the stamp costs the measured path next to nothing.
type receiveStamper struct {
	*sqs.Client
	mu     sync.Mutex
	stamps []stamp // kept small: the process's peak RSS is measured too
}

type stamp struct {
	token string // cloned, so that the message body is not kept
	at    int64  // Unix nanoseconds
}

func (r *receiveStamper) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := r.Client.ReceiveMessage(ctx, in, optFns...)
	if err != nil || len(out.Messages) == 0 {
		return out, err
	}
	at := time.Now().UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range out.Messages {
		if _, rest, ok := strings.Cut(aws.ToString(m.Body), `"TaskToken":"`); ok {
			if token, _, ok := strings.Cut(rest, `"`); ok {
				r.stamps = append(r.stamps, stamp{token: strings.Clone(token), at: at})
			}
		}
	}
	return out, nil
}

// take returns the stamps so far and forgets them.
func (r *receiveStamper) take() []stamp {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stamps
	r.stamps = nil
	return s
}

type noPublisher struct{}

func (noPublisher) Publish(context.Context, string, any) error { return nil }

package main_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// waitReady waits until /readyz answers 200: every consumer's long poll is accepted.
func (w *workerProc) waitReady(within time.Duration) {
	w.t.Helper()
	eventually(w.t, within, "worker /readyz answers 200", func() bool {
		resp, err := http.Get("http://" + w.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitExit waits for the worker to end and returns its exit code.
func (w *workerProc) waitExit(within time.Duration) int {
	w.t.Helper()
	select {
	case <-w.done:
	case <-time.After(within):
		w.t.Fatalf("worker did not exit within %s", within)
	}
	return w.cmd.ProcessState.ExitCode()
}

// TestE2ERestartStrandsNoMessage is issue 12 item 10: a long poll cancelled at a
// SIGTERM can still take messages on the server, which then stay invisible for the
// queue's visibility timeout (60 s here). Messages put just after the SIGTERM must
// be handled within seconds by the next worker.
func TestE2ERestartStrandsNoMessage(t *testing.T) {
	st := newStack(t, "WORKER_POLL_WAIT=10s", "WORKER_ROLES=jobs")
	a := st.startWorker()
	// Readiness says every consumer's long poll is in flight and accepted (issue 12
	// item 12: well before the 20 s poll returns).
	a.waitReady(15 * time.Second)

	a.signal(syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond) // the stop is under way; no signal to wait on in another process
	const n = 5
	for i := range n {
		st.sendRaw("getMultiple", "not JSON "+strconv.Itoa(i)) // bad input: straight to the DLQ
	}
	require.Zero(t, a.waitExit(30*time.Second), "exit 0 after a SIGTERM")

	st.startWorker()
	start := time.Now()
	eventually(t, 10*time.Second, "the messages put during the restart are handled by the next worker", func() bool {
		return st.queueDepth(st.out.Queues["getMultiple"]) == 0 && st.queueDepth(st.out.DLQs["getMultiple"]) == n
	})
	t.Logf("handled %s after the next worker started", time.Since(start).Round(100*time.Millisecond))
}

// slowProxy is an HTTP proxy on loopback in front of the emulator that holds the
// requests of slowed APIs (by X-Amz-Target, e.g. "AWSStepFunctions.SendTaskSuccess")
// for delay before forwarding them: AWS answering slowly.
type slowProxy struct {
	url   string
	mu    sync.Mutex
	slow  map[string]bool
	delay time.Duration
}

func newSlowProxy(t *testing.T, delay time.Duration) *slowProxy {
	t.Helper()
	target, err := url.Parse(awstest.Endpoint(t))
	require.NoError(t, err)
	p := &slowProxy{slow: map[string]bool{}, delay: delay}
	quit := make(chan struct{})
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // requests cut by the worker's timeouts
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.isSlow(r.Header.Get("X-Amz-Target")) {
			select {
			case <-time.After(p.delay):
			case <-r.Context().Done():
				return
			case <-quit:
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { close(quit); srv.CloseClientConnections(); srv.Close() })
	p.url = srv.URL
	return p
}

func (p *slowProxy) slowDown(targets ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range targets {
		p.slow[t] = true
	}
}

func (p *slowProxy) isSlow(target string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.slow[target]
}

// TestE2EStopFitsTheShutdownTimeoutWhenAWSIsSlow is issue 12 item 11: with Step
// Functions and SQS answering in a minute while a stop settles messages, the worker
// still exits 0 within its shutdown timeout instead of hitting the last guard.
func TestE2EStopFitsTheShutdownTimeoutWhenAWSIsSlow(t *testing.T) {
	proxy := newSlowProxy(t, time.Minute)
	const shutdown = 8 * time.Second
	st := newStack(t, "WORKER_ROLES=jobs", "WORKER_POLL_WAIT=20s")
	// GORACE: no race-detector sleep of 1 s at exit, which the timing below would count.
	w := st.startWorker("AWS_ENDPOINT_URL="+proxy.url, "WORKER_SHUTDOWN_TIMEOUT="+shutdown.String(), "GORACE=atexit_sleep_ms=0")
	w.waitReady(15 * time.Second)

	// Jobs whose SendTaskSuccess hangs (its report runs on a detached context), and
	// bad input whose delete is pending when the stop comes; then SQS turns slow too.
	proxy.slowDown("AWSStepFunctions.SendTaskSuccess", "AWSStepFunctions.SendTaskFailure")
	for i := range 3 {
		st.sendRaw("finisher", envelope("taskFinished", map[string]any{"TaskToken": "token-" + strconv.Itoa(i), "ok": true}))
	}
	eventually(t, 10*time.Second, "the worker took the finisher messages", func() bool {
		return visibleCount(st, "finisher") == 0
	})
	st.sendRaw("getMultiple", "not JSON")
	eventually(t, 10*time.Second, "the bad input went to the DLQ", func() bool {
		return st.queueDepth(st.out.DLQs["getMultiple"]) == 1
	})
	proxy.slowDown("AmazonSQS.DeleteMessageBatch", "AmazonSQS.ChangeMessageVisibility", "AmazonSQS.ChangeMessageVisibilityBatch", "AmazonSQS.SendMessage")
	stopped := time.Now()
	w.signal(syscall.SIGTERM)
	code := w.waitExit(shutdown + 20*time.Second)
	took := time.Since(stopped)
	t.Logf("exit %d after %s", code, took.Round(100*time.Millisecond))
	require.Zero(t, code, "exit 0: the stop fits its budget; the unsettled messages come back after their visibility timeout\n%s", tail(w.Logs(), 4096))
	require.Less(t, took, shutdown)
}

// visibleCount is a queue's ApproximateNumberOfMessages.
func visibleCount(st *stackEnv, queue string) int {
	st.t.Helper()
	out, err := st.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(st.out.Queues[queue]), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages},
	})
	require.NoError(st.t, err)
	n, _ := strconv.Atoi(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	return n
}

package httpjob_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/httpjob"
	"github.com/taskbridge/taskbridge/internal/jobs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "AAAAKgAAAAIAAAAAAAAAAVerySecretTaskToken"

func task() *jobs.Task {
	return &jobs.Task{
		Queue: "score-queue", Job: "score", MessageID: "m-1", EventID: "ev-1", DetailType: "score",
		ExecutionArn: "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
		Token:        token,
		Detail:       json.RawMessage(`{"TaskToken":"` + token + `","name":"<a & b>","n":1}`),
		ReceiveCount: 2, MaxReceiveCount: 5,
	}
}

type bundle struct {
	m *httpjob.Metrics
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return &bundle{m: httpjob.NewMetrics(prometheus.NewRegistry())}
}

func (b *bundle) job(t *testing.T, cfg httpjob.Config) *httpjob.Job {
	t.Helper()
	j, err := httpjob.New("score", cfg, zaptest.NewLogger(t), b.m)
	require.NoError(t, err)
	t.Cleanup(j.Close)
	return j
}

// server answers every request with status and body.
func server(t *testing.T, status int, body string, header ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		body     string
		header   []string
		cfg      httpjob.Config
		want     string // output, when it succeeds
		kind     string // jobs.KindOf, when it fails for good
		retry    bool
		contains string
		class    string
	}{
		{name: "200 json", status: 200, body: `{"score": 0.9, "html": "<&>"}`, want: `{"score": 0.9, "html": "<&>"}`, class: "2xx"},
		{name: "200 empty", status: 200, want: `{}`, class: "2xx"},
		{name: "204", status: 204, want: `{}`, class: "2xx"},
		{name: "201 whitespace", status: 201, body: " \n", want: `{}`, class: "2xx"},
		{name: "200 not json", status: 200, body: "<html>hi</html>", kind: "InvalidOutput", contains: "not JSON", class: "2xx"},
		{name: "200 over the cap", status: 200, body: `"` + strings.Repeat("x", 2000) + `"`, cfg: httpjob.Config{MaxResponse: 1000}, kind: "ResponseTooLarge", contains: "more than 1000 bytes", class: "2xx"},
		{name: "404", status: 404, body: "no such model", kind: "HTTP404", contains: "answered 404: no such model", class: "4xx"},
		{name: "400 long body", status: 400, body: strings.Repeat("é", 2000), kind: "HTTP400", contains: "éé…", class: "4xx"},
		{name: "408", status: 408, retry: true, contains: "answered 408", class: "4xx"},
		{name: "429", status: 429, body: "slow down", retry: true, contains: "answered 429: slow down", class: "4xx"},
		{name: "500", status: 500, body: "boom", retry: true, contains: "answered 500: boom", class: "5xx"},
		{name: "503", status: 503, retry: true, contains: "(empty body)", class: "5xx"},
		{name: "302", status: 302, header: []string{"Location", "https://elsewhere.example/x?X-Amz-Signature=secret"}, kind: "HTTP302", contains: "redirects to https://elsewhere.example/x: not followed", class: "3xx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			srv := server(t, tt.status, tt.body, tt.header...)
			tt.cfg.URL = srv.URL + "/score?api_key=secret"
			out, err := b.job(t, tt.cfg).Run(context.Background(), task())
			require.Equal(t, 1.0, testutil.ToFloat64(b.m.Responses("score", tt.class)), "class %s", tt.class)
			if tt.want != "" {
				require.NoError(t, err)
				require.JSONEq(t, tt.want, string(out.(json.RawMessage)))
				return
			}
			require.Error(t, err)
			require.NotContains(t, err.Error(), "secret", "no token, query string or signature in errors")
			require.Contains(t, err.Error(), tt.contains)
			kind, badInput, final := jobs.KindOf(err)
			require.Equal(t, !tt.retry, final, "final: %v", err)
			require.False(t, badInput)
			require.Equal(t, tt.kind, kind)
		})
	}
}

func TestRequestCarriesTheDetailWithoutToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var got struct {
		method string
		header http.Header
		body   []byte
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.header = r.Method, r.Header.Clone()
		got.body, _ = io.ReadAll(r.Body)
		_, _ = io.WriteString(w, `{"ok": true}`)
	}))
	t.Cleanup(srv.Close)
	j := b.job(t, httpjob.Config{URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer sidecar"}})
	out, err := j.Run(context.Background(), task())
	require.NoError(t, err)
	require.JSONEq(t, `{"ok": true}`, string(out.(json.RawMessage)))

	require.Equal(t, http.MethodPost, got.method)
	require.JSONEq(t, `{"name":"<a & b>","n":1}`, string(got.body))
	require.Contains(t, string(got.body), "<a & b>", "not HTML-escaped")
	require.Equal(t, "application/json", got.header.Get("Content-Type"))
	require.Equal(t, "Bearer sidecar", got.header.Get("Authorization"))
	for name, want := range map[string]string{
		"X-Taskbridge-Job": "score", "X-Taskbridge-Detail-Type": "score", "X-Taskbridge-Receive-Count": "2",
		"X-Taskbridge-Execution-Arn": "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
		"X-Taskbridge-Message-Id":    "m-1", "X-Taskbridge-Event-Id": "ev-1",
	} {
		require.Equal(t, want, got.header.Get(name), name)
	}
	for name, values := range got.header {
		require.NotContains(t, strings.Join(values, ","), token, name)
	}
}

func TestServerErrorThenSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, `{"second": true}`)
	}))
	t.Cleanup(srv.Close)
	j := b.job(t, httpjob.Config{URL: srv.URL})

	_, err := j.Run(context.Background(), task())
	require.ErrorContains(t, err, "answered 500")
	_, _, final := jobs.KindOf(err)
	require.False(t, final, "a 500 is retried")

	out, err := j.Run(context.Background(), task())
	require.NoError(t, err)
	require.JSONEq(t, `{"second": true}`, string(out.(json.RawMessage)))
	require.Equal(t, 1.0, testutil.ToFloat64(b.m.Responses("score", "5xx")))
	require.Equal(t, 1.0, testutil.ToFloat64(b.m.Responses("score", "2xx")))
}

// hanging is a server whose handler waits until the request ends.
func hanging(t *testing.T) (*httptest.Server, <-chan struct{}) {
	t.Helper()
	arrived := make(chan struct{}, 16)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices a closed connection only once the body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: Close waits for the handlers
	return srv, arrived
}

func TestSlowServerTimesOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv, _ := hanging(t)
	started := time.Now()
	_, err := b.job(t, httpjob.Config{URL: srv.URL, Timeout: 200 * time.Millisecond}).Run(context.Background(), task())
	require.Error(t, err)
	_, _, final := jobs.KindOf(err)
	require.False(t, final, "a timeout is retried: %v", err)
	require.Less(t, time.Since(started), 5*time.Second)
	require.Equal(t, 1.0, testutil.ToFloat64(b.m.Responses("score", "error")))
}

func TestCancelEndsTheRequest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv, arrived := hanging(t)
	j := b.job(t, httpjob.Config{URL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := j.Run(ctx, task()); done <- err }()
	<-arrived
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

func TestConnectionRefusedRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = b.job(t, httpjob.Config{URL: "http://" + addr + "/x?key=secret"}).Run(context.Background(), task())
	require.ErrorContains(t, err, "refused")
	require.NotContains(t, err.Error(), "secret")
	_, _, final := jobs.KindOf(err)
	require.False(t, final)
	require.Equal(t, 1.0, testutil.ToFloat64(b.m.Responses("score", "error")))
}

func TestConnectionResetRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.(*net.TCPConn).SetLinger(0) // close with RST
		_ = c.Close()
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	_, err = b.job(t, httpjob.Config{URL: "http://" + ln.Addr().String()}).Run(context.Background(), task())
	require.Error(t, err)
	_, _, final := jobs.KindOf(err)
	require.False(t, final, "%v", err)
}

// A hung endpoint holds up only its own queue: another job's requests go through
// while every connection of the first is stuck.
func TestHungEndpointHoldsOnlyItsOwnJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hung, arrived := hanging(t)
	ok := server(t, 200, `{"ok": 1}`)
	slow := b.job(t, httpjob.Config{URL: hung.URL})
	fast := b.job(t, httpjob.Config{URL: ok.URL})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = slow.Run(ctx, task()) }()
	}
	for range 8 {
		<-arrived
	}
	for range 8 {
		out, err := fast.Run(context.Background(), task())
		require.NoError(t, err)
		require.JSONEq(t, `{"ok": 1}`, string(out.(json.RawMessage)))
	}
	cancel()
	wg.Wait()
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := httpjob.Config{
		URL: "ftp://host/x?sig=secret", Timeout: -1, MaxResponse: -1,
		Headers: map[string]string{"X-Taskbridge-Job": "x", "content-type": "text/plain", "Bad Name": "x", "X-Ok": "a\r\nb"},
	}.Validate()
	require.Error(t, err)
	for _, want := range []string{"scheme must be http or https", "timeout", "maxResponse", "X-Taskbridge-Job is the worker's", "Content-Type is the worker's", `"Bad Name"`, "X-Ok"} {
		require.Contains(t, err.Error(), want)
	}
	require.NotContains(t, err.Error(), "secret")
	require.ErrorContains(t, httpjob.Config{}.Validate(), "url is empty")
	require.ErrorContains(t, httpjob.Config{URL: "http:///path"}.Validate(), "no host")
	require.NoError(t, httpjob.Config{URL: "http://127.0.0.1:8080/score"}.Validate())
	_, err = httpjob.New("j", httpjob.Config{}, zaptest.NewLogger(t), nil)
	require.Error(t, err)
}

func TestHandlerTimeout(t *testing.T) {
	t.Parallel()
	require.Equal(t, 35*time.Second, httpjob.Config{}.HandlerTimeout())
	require.Equal(t, 7*time.Second, httpjob.Config{Timeout: 2 * time.Second}.HandlerTimeout())
}

func TestSeriesExistBeforeTheFirstRequest(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := httpjob.New("score", httpjob.Config{URL: "http://127.0.0.1:1"}, zaptest.NewLogger(t), httpjob.NewMetrics(reg))
	require.NoError(t, err)
	require.Equal(t, 5, testutil.CollectAndCount(reg, "worker_http_responses_total"))
	require.Equal(t, 1, testutil.CollectAndCount(reg, "worker_http_duration_seconds"))
}

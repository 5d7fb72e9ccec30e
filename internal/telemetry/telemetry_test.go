package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReadiness(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	type step struct {
		do      func(r *Readiness, now *time.Time)
		wantErr string // "" means ready
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{name: "nothing started", steps: []step{{do: func(*Readiness, *time.Time) {}, wantErr: "no consumer started"}}},
		{name: "polling but no call succeeded", steps: []step{
			{do: func(r *Readiness, _ *time.Time) { r.SetPolling("q", true) }, wantErr: "consumer q: no receive accepted yet"},
		}},
		{name: "ready, then a failed call, then recovered", steps: []step{
			{do: func(r *Readiness, _ *time.Time) { r.SetPolling("q", true); r.ObserveAWS(nil) }},
			{do: func(r *Readiness, _ *time.Time) { r.ObserveAWS(errors.New("connection refused")) }, wantErr: "last AWS call failed: connection refused"},
			{do: func(r *Readiness, _ *time.Time) { r.ObserveAWS(nil) }},
		}},
		{name: "stale after the window, fresh again on success", steps: []step{
			{do: func(r *Readiness, _ *time.Time) { r.SetPolling("q", true); r.ObserveAWS(nil) }},
			{do: func(_ *Readiness, now *time.Time) { *now = now.Add(time.Minute) }}, // exactly the window: still fresh
			{do: func(_ *Readiness, now *time.Time) { *now = now.Add(time.Second) }, wantErr: "consumer q: no AWS answer for 1m1s"},
			{do: func(r *Readiness, _ *time.Time) { r.ObserveAWS(nil) }},
		}},
		{name: "every poller must poll", steps: []step{
			{do: func(r *Readiness, _ *time.Time) { r.SetPolling("a", true); r.SetPolling("b", false); r.ObserveAWS(nil) }, wantErr: "consumer b is not polling"},
			{do: func(r *Readiness, _ *time.Time) { r.SetPolling("b", true) }},
		}},
		// Issue 12 item 12: each consumer on its own.
		{name: "one queue failing is not hidden by another's success", steps: []step{
			{do: func(r *Readiness, _ *time.Time) { r.ObserveReceive("a", nil); r.ObserveReceive("b", nil) }},
			{do: func(r *Readiness, _ *time.Time) { r.ObserveReceive("a", errors.New("AccessDenied")) }, wantErr: "consumer a: last receive failed: AccessDenied"},
			{do: func(r *Readiness, _ *time.Time) { r.ObserveReceive("b", nil) }, wantErr: "consumer a: last receive failed: AccessDenied"},
			{do: func(r *Readiness, _ *time.Time) { r.ObserveReceive("a", nil) }},
		}},
		{name: "a consumer that stopped polling is not ready", steps: []step{
			{do: func(r *Readiness, _ *time.Time) { r.ObserveReceive("a", nil); r.ObserveReceive("b", nil) }},
			{do: func(r *Readiness, _ *time.Time) { r.SetPolling("b", false) }, wantErr: "consumer b is not polling"},
			{do: func(r *Readiness, _ *time.Time) { r.ObserveReceive("a", nil) }, wantErr: "consumer b is not polling"},
		}},
		{name: "a queue gone quiet is stale while another is fresh", steps: []step{
			{do: func(r *Readiness, _ *time.Time) { r.ObserveReceive("a", nil); r.ObserveReceive("b", nil) }},
			{do: func(r *Readiness, now *time.Time) { *now = now.Add(2 * time.Minute); r.ObserveReceive("b", nil) }, wantErr: "consumer a: no AWS answer for 2m0s"},
		}},
		{name: "every failing queue is named", steps: []step{
			{do: func(r *Readiness, _ *time.Time) {
				r.ObserveReceive("b", errors.New("x"))
				r.ObserveReceive("a", errors.New("y"))
			}, wantErr: "consumer a: last receive failed: y\nconsumer b: last receive failed: x"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			r := NewReadiness(time.Minute, reg)
			now := start
			r.now = func() time.Time { return now }
			for i, s := range tc.steps {
				s.do(r, &now)
				want := 1.0
				if s.wantErr == "" {
					require.NoError(t, r.Ready(), "step %d", i)
				} else {
					require.EqualError(t, r.Ready(), s.wantErr, "step %d", i)
					want = 0
				}
				require.Equal(t, want, gaugeValue(t, reg, "worker_ready"), "step %d: worker_ready says what /readyz says", i)
			}
		})
	}
}

func TestReadinessExportsLastSuccess(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	r := NewReadiness(time.Minute, reg)
	r.now = func() time.Time { return time.Unix(1234, 0) }
	r.ObserveAWS(nil)
	r.now = func() time.Time { return time.Unix(9999, 0) }
	r.ObserveAWS(errors.New("boom")) // a failure does not move it
	require.Equal(t, 1234.0, gaugeValue(t, reg, "worker_last_aws_success_timestamp_seconds"))
}

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not exported", name)
	return 0
}

// startServer runs a Server on a free loopback port until the test ends.
func startServer(t *testing.T, ready func() error) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	srv := NewServer(addr, NewRegistry("test"), ready, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done, "clean shutdown")
	})
	require.Eventually(t, func() bool { return Healthcheck(context.Background(), addr) == nil }, 5*time.Second, 10*time.Millisecond)
	return addr
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	t.Parallel()
	reason := errors.New("consumer q is not polling")
	addr := startServer(t, func() error { return reason })

	code, body := get(t, "http://"+addr+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	code, body = get(t, "http://"+addr+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.JSONEq(t, `{"status":"not ready","reason":"consumer q is not polling"}`, body)

	code, body = get(t, "http://"+addr+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `worker_build_info{goversion="go`)
	require.Contains(t, body, "go_goroutines")
	require.Contains(t, body, "process_start_time_seconds")

	code, _ = get(t, "http://"+addr+"/nothing")
	require.Equal(t, http.StatusNotFound, code)
	resp, err := http.Post("http://"+addr+"/healthz", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestServerReadyAnswersOK(t *testing.T) {
	t.Parallel()
	addr := startServer(t, func() error { return nil })
	code, body := get(t, "http://"+addr+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ready"}`, body)
}

func TestServerRunFailsOnABusyAddress(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	srv := NewServer(l.Addr().String(), NewRegistry("test"), func() error { return nil }, zaptest.NewLogger(t))
	require.ErrorContains(t, srv.Run(context.Background()), "listen on")
	require.ErrorContains(t, srv.Listen(), "listen on", "Listen finds a taken port before Run")
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer ts.Close()
	_, port, err := net.SplitHostPort(ts.Listener.Addr().String())
	require.NoError(t, err)

	for _, tc := range []struct {
		addr, wantErr string
		status        int
	}{
		{addr: ":" + port, status: http.StatusOK},                // the worker's own ":9090" form: this host
		{addr: "0.0.0.0:" + port, status: http.StatusOK},         // wildcard listen address
		{addr: "127.0.0.1:" + port, status: http.StatusOK},       // explicit host
		{addr: ":" + port, status: 500, wantErr: "healthz: 500"}, // alive but unhealthy
		{addr: "no-port", status: http.StatusOK, wantErr: "metrics address"},
		{addr: "127.0.0.1:1", status: http.StatusOK, wantErr: "healthz:"}, // nothing listens
	} {
		status.Store(int32(tc.status))
		err := Healthcheck(context.Background(), tc.addr)
		if tc.wantErr == "" {
			require.NoError(t, err, tc.addr)
		} else {
			require.ErrorContains(t, err, tc.wantErr, tc.addr)
		}
	}
}

func TestTokenHashNeverShowsTheToken(t *testing.T) {
	t.Parallel()
	tok := "AAAAKHNlY3JldC10b2tlbg=="
	h := TokenHash(tok)
	require.Len(t, h, 12)
	require.NotContains(t, tok, h)
	require.Equal(t, h, TokenHash(tok), "stable")
	require.NotEqual(t, h, TokenHash(tok+"x"))
	require.Empty(t, TokenHash(""))
}

func TestLoggerJSONLines(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := newLogger("info", "json", "v1.2.3", zapcore.AddSync(&buf))
	require.NoError(t, err)
	log.Debug("hidden below the level")
	log.Info("message handled", zap.String("execution_arn", "arn:aws:states:x"), zap.Duration("duration", 1500*time.Millisecond),
		Token("secret-task-token"))
	require.NoError(t, log.Sync())

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1, "debug is filtered at info")
	var l map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &l))
	for _, key := range []string{"ts", "level", "msg", "caller", "version", "execution_arn", "duration", "token_hash"} {
		require.Contains(t, l, key)
	}
	require.Equal(t, "info", l["level"])
	require.Equal(t, "v1.2.3", l["version"])
	require.Equal(t, 1.5, l["duration"], "durations in seconds")
	_, err = time.Parse("2006-01-02T15:04:05.000Z0700", l["ts"].(string))
	require.NoError(t, err, "ISO 8601 time")
	require.NotContains(t, lines[0], "secret-task-token")
}

func TestLoggerConsole(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := newLogger("debug", "console", "v", zapcore.AddSync(&buf))
	require.NoError(t, err)
	log.Debug("shown at debug")
	require.Contains(t, buf.String(), "shown at debug")
	require.False(t, json.Valid(bytes.TrimSpace(buf.Bytes())), "console is not JSON")
}

func TestNewLoggerRejectsBadSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ level, format, wantErr string }{
		{"loud", "json", "log level"},
		{"info", "xml", `log format "xml"`},
	} {
		_, _, err := NewLogger(tc.level, tc.format, "v")
		require.ErrorContains(t, err, tc.wantErr)
	}
	_, closeLog, err := NewLogger("warn", "json", "v")
	require.NoError(t, err)
	closeLog()
}

func TestLoggerBuffersLinesUntilTheFlushIntervalOrClose(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	log, closeLog, err := newBufferedLogger("info", "json", "v", zapcore.AddSync(&buf))
	require.NoError(t, err)
	log.Info("first")
	require.Empty(t, buf.String(), "a line waits in the buffer")
	require.Eventually(t, func() bool { return strings.Contains(buf.String(), `"msg":"first"`) },
		10*logFlushInterval, logFlushInterval/10, "written within the flush interval")
	log.Info("last")
	closeLog()
	require.Contains(t, buf.String(), `"msg":"last"`, "close writes what is left")
}

// syncBuffer is a bytes.Buffer for one writer and one reader at a time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Register shares one collector among all who register it, and panics on a clash
// that is not the same metric.
func TestRegisterReturnsTheCollectorAlreadyRegistered(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "worker_things_total", Help: "Things."}
	first := Register(reg, prometheus.NewCounterVec(opts, []string{"job"}))
	second := Register(reg, prometheus.NewCounterVec(opts, []string{"job"}))
	require.Same(t, first, second)
	require.Panics(t, func() { Register(reg, prometheus.NewCounterVec(opts, []string{"queue"})) }, "same name, other labels")
}

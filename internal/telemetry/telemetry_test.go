package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReadiness(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	r := NewReadiness(time.Minute, reg)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	require.ErrorContains(t, r.Ready(), "no consumer started")
	r.SetPolling("q", true)
	require.ErrorContains(t, r.Ready(), "no AWS call succeeded yet")
	r.ObserveAWS(nil)
	require.NoError(t, r.Ready())
	n, err := testutil.GatherAndCount(reg, "worker_ready")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	r.ObserveAWS(errors.New("connection refused"))
	require.ErrorContains(t, r.Ready(), "connection refused")
	r.ObserveAWS(nil)
	now = now.Add(2 * time.Minute)
	require.ErrorContains(t, r.Ready(), "no AWS call succeeded for 2m0s")
}

func TestServerAndHealthcheck(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	reg := NewRegistry("test")
	notReady := errors.New("consumer q is not polling")
	srv := NewServer(addr, reg, func() error { return notReady }, zaptest.NewLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	require.Eventually(t, func() bool { return Healthcheck(context.Background(), addr) == nil }, 5*time.Second, 20*time.Millisecond)

	resp, err := http.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	resp, err = http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(body), `worker_build_info{goversion=`)
	require.Contains(t, string(body), "go_goroutines")

	cancel()
	require.NoError(t, <-done)
	require.Error(t, Healthcheck(context.Background(), addr), "nothing answers after shutdown")
	require.Error(t, Healthcheck(context.Background(), "no-port"))
}

func TestTokenHashNeverShowsTheToken(t *testing.T) {
	t.Parallel()
	tok := "AAAAKHNlY3JldC10b2tlbg=="
	h := TokenHash(tok)
	require.Len(t, h, 12)
	require.NotContains(t, tok, h)
	require.Equal(t, h, TokenHash(tok), "stable")
	require.Empty(t, TokenHash(""))
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"json", "console"} {
		_, err := NewLogger("debug", f, "v")
		require.NoError(t, err)
	}
	_, err := NewLogger("loud", "json", "v")
	require.Error(t, err)
}

package main_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/config"
	"github.com/taskbridge/taskbridge/internal/ecsagenttest"
)

// blackHole accepts connections and never answers: an OTLP collector that hangs,
// so the tracing flush at the stop takes all of its bound.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never read or answered
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// TestE2EStopFitsItsBudget (issue 31): a stop spends at most the budget that
// config.StopBudget gives WORKER_SHUTDOWN_TIMEOUT (the last guard, then the tracing
// flush), with every part of the stop at its slowest: tracing on towards a collector
// that never answers, scale-in protection held at an agent whose drop hangs, and a
// batch open whose flush the stop makes. It exits 0 and the open batch is written.
func TestE2EStopFitsItsBudget(t *testing.T) {
	const shutdown = 6 * time.Second
	budget := config.NewStopBudget(shutdown)

	agent := ecsagenttest.New()
	var drops atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"ProtectionEnabled":false`) {
			drops.Add(1)
			<-r.Context().Done() // the drop hangs: the worker's bound must end it
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		agent.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=10m", "WORKER_BATCH_MAX_FILES=1000")
	// GORACE: no race-detector sleep of 1 s at exit, which the timing below would count.
	w := st.startWorker("WORKER_SHUTDOWN_TIMEOUT="+shutdown.String(), "GORACE=atexit_sleep_ms=0",
		"ECS_AGENT_URI="+ecsagenttest.URI(srv.URL, "task-1"),
		"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT="+blackHole(t))
	w.waitReady(15 * time.Second)
	require.Contains(t, w.Logs(), "tracing on")

	st.putFiles("budget", 3)
	// Every file in the open batch before the stop: the bus delivers the events one
	// by one, and a receive that returns after the stop gives its messages back (the
	// next worker's, not this batch's).
	eventually(t, time.Minute, "the batcher holds every file", func() bool { return w.metric(`worker_batch_open_files`) == 3 })
	eventually(t, time.Minute, "the batch's messages are in hand: protection held", func() bool { return agent.Protected("task-1") })
	require.Empty(t, st.manifests(), "the batch is open")

	stopped := time.Now()
	w.signal(syscall.SIGTERM)
	code := w.waitExit(budget.ECSStopTimeout() + 30*time.Second)
	took := time.Since(stopped)
	t.Logf("exit %d after %s (budget %s: last guard %s, tracing flush %s)", code, took.Round(10*time.Millisecond), budget.Exit(), budget.Shutdown, budget.TracingFlush)
	logs := w.Logs()
	require.Zero(t, code, "exit 0\n%s", tail(logs, 4096))
	// Each part took its whole bound: the drop and the tracing flush timed out.
	require.Contains(t, logs, "drop task protection at stop failed")
	require.Contains(t, logs, "tracing shutdown: spans may be lost")
	require.Less(t, took, budget.Exit(), "the stop fits its budget")
	require.Less(t, budget.Exit(), budget.ECSStopTimeout())

	ms := st.manifests()
	require.Len(t, ms, 1, "the open batch was flushed at the stop")
	require.Len(t, ms[0].Files, 3)
	require.Equal(t, int32(1), drops.Load(), "the stop dropped protection (the agent hung)")
}

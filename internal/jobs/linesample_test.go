package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// sampledRouter routes queues a and b to a job that succeeds, except for a message
// whose id starts with "fail" (a retry); its lines go to logs at level.
func sampledRouter(t *testing.T, s LineSampling, level zapcore.Level) (*Router, *observer.ObservedLogs, *Metrics) {
	t.Helper()
	core, logs := observer.New(level)
	m := NewMetrics(prometheus.NewRegistry())
	job := Job{Name: "j", Mode: Observe, Run: func(_ context.Context, t *Task) (any, error) {
		if len(t.MessageID) >= 4 && t.MessageID[:4] == "fail" {
			return nil, errors.New("boom")
		}
		return nil, nil
	}}
	routes := map[string]Route{"a": {Job: "j", DetailTypes: []string{"work"}}, "b": {Job: "j", DetailTypes: []string{"work"}}}
	r, err := NewRouter(RouterConfig{Routes: routes, LineSampling: s}, []Job{job}, nil, nil, nil, zap.New(core), m)
	require.NoError(t, err)
	return r, logs, m
}

// handleAt handles n messages of queue, each started at start + i µs (one second
// holds them all when n < 1e6).
func handleAt(t *testing.T, r *Router, queue, idPrefix string, n int, start time.Time) {
	t.Helper()
	body := envelope("work", map[string]any{"n": 1})
	for i := range n {
		m := consumer.Message{ID: idPrefix + strconv.Itoa(i), Queue: queue, Body: body, ReceiveCount: 1, MaxReceiveCount: 5, Started: start.Add(time.Duration(i) * time.Microsecond)}
		_ = r.Handle(context.Background(), m)
	}
}

// sampledOut sums the lines_sampled_out fields of lines.
func sampledOut(lines []observer.LoggedEntry) int64 {
	var sum int64
	for _, l := range lines {
		if v, ok := l.ContextMap()["lines_sampled_out"]; ok {
			sum += v.(int64)
		}
	}
	return sum
}

// In one second a queue writes its first First success lines, then one in
// Thereafter; every line left out is counted by the next line written and by the
// metric; the next second starts again; each queue counts its own.
func TestLineSamplingThinsABusyQueuesSuccessLines(t *testing.T) {
	t.Parallel()
	r, logs, m := sampledRouter(t, LineSampling{First: 10, Thereafter: 7}, zapcore.InfoLevel)
	sec := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	handleAt(t, r, "a", "m", 1000, sec)
	lines := logs.FilterMessage("message handled").All()
	// 10 first, then messages 17, 24, ... 997 of the 990 after them: 141.
	require.Len(t, lines, 10+990/7)
	for i, l := range lines[:10] {
		require.Equal(t, "m"+strconv.Itoa(i), l.ContextMap()["message_id"], "the first lines are written in order")
		require.NotContains(t, l.ContextMap(), "lines_sampled_out")
	}
	require.Equal(t, int64(6), lines[10].ContextMap()["lines_sampled_out"], "the first line after the first ten says 6 were left out")
	written, pending := int64(len(lines)), int64(990%7) // the last ones after message 997
	require.Equal(t, 1000-written-pending, sampledOut(lines), "every line left out is counted by a later line, but for the pending")
	require.Equal(t, float64(1000-written), m.sampledOut.value("a"))

	// Queue b has a window of its own: its first ten lines are written.
	handleAt(t, r, "b", "b", 10, sec)
	require.Len(t, logs.FilterMessage("message handled").FilterField(zap.String("queue", "b")).All(), 10)

	// The next second of a starts again; its first line carries those pending.
	logs.TakeAll()
	handleAt(t, r, "a", "n", 10, sec.Add(time.Second))
	next := logs.FilterMessage("message handled").All()
	require.Len(t, next, 10)
	require.Equal(t, pending, next[0].ContextMap()["lines_sampled_out"])
	require.Equal(t, float64(1000-written), m.sampledOut.value("a"), "nothing left out in the new second")

	// A scrape reads the same, one series a routed queue.
	require.NoError(t, testutil.CollectAndCompare(m.sampledOut, strings.NewReader(fmt.Sprintf(`
# HELP worker_log_lines_sampled_out_total Success lines ("message handled") left out of the log by its sampling (WORKER_LOG_SAMPLE_FIRST a second a queue, then one in WORKER_LOG_SAMPLE_THEREAFTER), by queue. worker_jobs_total counts every message.
# TYPE worker_log_lines_sampled_out_total counter
worker_log_lines_sampled_out_total{queue="a"} %d
worker_log_lines_sampled_out_total{queue="b"} 0
`, 1000-written))))
}

// Only success lines are sampled: a retry's line (and every other outcome's) is
// always written, whatever the rate.
func TestLineSamplingKeepsEveryOtherOutcome(t *testing.T) {
	t.Parallel()
	r, logs, _ := sampledRouter(t, LineSampling{First: 1, Thereafter: 1000}, zapcore.InfoLevel)
	sec := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	handleAt(t, r, "a", "m", 50, sec)
	handleAt(t, r, "a", "fail", 50, sec)
	require.Len(t, logs.FilterField(zap.String("outcome", "success")).All(), 1)
	require.Len(t, logs.FilterField(zap.String("outcome", "retry")).All(), 50)
}

// Sampling off (First 0, the zero value) writes every line; a level above info
// writes no success line and counts none as sampled out.
func TestLineSamplingOffAndLevelAboveInfo(t *testing.T) {
	t.Parallel()
	sec := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	r, logs, m := sampledRouter(t, LineSampling{}, zapcore.InfoLevel)
	handleAt(t, r, "a", "m", 500, sec)
	require.Len(t, logs.FilterMessage("message handled").All(), 500)
	require.Equal(t, 0.0, m.sampledOut.value("a"))

	r, logs, m = sampledRouter(t, DefaultLineSampling, zapcore.WarnLevel)
	handleAt(t, r, "a", "m", 500, sec)
	require.Zero(t, logs.Len())
	require.Equal(t, 0.0, m.sampledOut.value("a"))
}

// Handlers of one queue sampled at once keep exactly the lines the rule allows
// and account for every other (run with -race).
func TestLineSamplingConcurrentHandlers(t *testing.T) {
	t.Parallel()
	r, logs, m := sampledRouter(t, LineSampling{First: 100, Thereafter: 10}, zapcore.InfoLevel)
	sec := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() { handleAt(t, r, "a", "g"+strconv.Itoa(g)+"-", 250, sec) })
	}
	wg.Wait()
	lines := logs.FilterMessage("message handled").All()
	require.Len(t, lines, 100+1900/10)
	require.Equal(t, float64(2000-len(lines)), m.sampledOut.value("a"))
}

package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/telemetry/promtest"
)

// cookiesWithKinds is the cookies topology plus a queue of each job kind, so that
// every dashboard panel has a series.
func cookiesWithKinds(t *testing.T) string {
	t.Helper()
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"ok":true}`)) }))
	t.Cleanup(svc.Close)
	return cookiesTopology(t, func(topo map[string]any) {
		topo["queues"] = append(topo["queues"].([]any),
			map[string]any{"name": "obsExec", "detailTypes": []string{"obsExec"}, "exec": map[string]any{"command": []string{"cat"}}},
			map[string]any{"name": "obsHTTP", "detailTypes": []string{"obsHTTP"}, "http": map[string]any{"url": svc.URL}},
			map[string]any{"name": "obsStart", "detailTypes": []string{"obsStart"}, "startExecution": map[string]any{"stateMachine": "cookies"}},
		)
	})
}

func TestE2EObservabilityOnARealPrometheus(t *testing.T) {
	const rules = "../../deploy/observability/alerts.yml"
	promtest.Binary(t, "promtool")
	proxy := awstest.NewProxy(t)
	st := newStack(t, "WORKER_BATCH_WINDOW=2s", "WORKER_GLUE_POLL_INTERVAL=1s", "WORKER_TOPOLOGY="+cookiesWithKinds(t))
	w := st.startWorker("AWS_ENDPOINT_URL=" + proxy.URL())
	prom := promtest.Start(t, w.addr, rules)
	prom.WaitForScrape(30 * time.Second)

	// Work for every panel: a cookies execution, a batch, a bad message.
	arn := st.startExecution(`{"count": 4}`)
	keys, _ := st.putFiles("obs", 3)
	st.sendRaw("getMultiple", "not JSON at all")
	// and one message for each job kind (a closed token: the run counts, the answer is task_closed)
	st.sendRaw("obsExec", envelope("obsExec", map[string]any{"TaskToken": "closed-token"}))
	st.sendRaw("obsHTTP", envelope("obsHTTP", map[string]any{"TaskToken": "closed-token"}))
	st.sendRaw("obsStart", envelope("obsStart", map[string]any{"count": 0}))
	eventually(t, time.Minute, "each kind ran", func() bool {
		return w.metric(`worker_exec_exits_total{code="0",job="obsExec"}`) >= 1 && w.metric(`worker_http_responses_total{class="2xx",job="obsHTTP"}`) >= 1 &&
			w.metric(`worker_start_executions_total{job="obsStart",outcome="started"}`) >= 1
	})
	d := st.waitExecution(arn, 3*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "%s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	eventually(t, time.Minute, "the batch's run ended", func() bool { return w.metric(`worker_glue_runs_total{state="SUCCEEDED"}`) >= 1 })
	require.Len(t, keys, 3)
	time.Sleep(4 * time.Second) // a few more 1 s scrapes, so rate() has points after the work

	// The exposition passes promtool's lint.
	resp, err := http.Get("http://" + w.addr + "/metrics")
	require.NoError(t, err)
	exposition, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	report, err := promtest.CheckMetrics(t, exposition)
	require.NoError(t, err)
	require.Empty(t, report, "promtool check metrics reports nothing")
	for _, family := range []string{"worker_messages_received_total", "worker_messages_handled_total", "worker_job_duration_seconds", "worker_callbacks_total", "worker_jobs_in_flight"} {
		require.Contains(t, string(exposition), family)
	}
	for _, job := range []string{"getMultiple", "processSingle", "postProcessSingle", "sideEffect", "postProcessAll"} {
		require.Positive(t, w.metric(fmt.Sprintf(`worker_messages_received_total{queue=%q}`, job)), job)
		require.Positive(t, w.metric(fmt.Sprintf(`worker_job_duration_seconds_count{job=%q}`, job)), job)
	}
	require.Positive(t, w.metric(`worker_callbacks_total{api="SendTaskSuccess",outcome="ok"}`))

	require.NoError(t, promtest.CheckRules(t, rules))
	queries, err := promtest.Queries("../../deploy/observability/grafana/dashboards/taskbridge.json", rules)
	require.NoError(t, err)
	for _, r := range prom.EvalAll(queries) {
		require.NoError(t, r.Err, "%s evaluates", r.Source)
		if r.Dashboard {
			require.Positive(t, r.Series, "%s returns data: %s", r.Source, r.Expr)
		}
	}

	// One grep of the execution ARN collects every job's line, sideEffect included.
	var jobsSeen = map[string]bool{}
	for _, line := range strings.Split(w.Logs(), "\n") {
		if !strings.Contains(line, arn) {
			continue
		}
		var l struct {
			Job string `json:"job"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Job != "" {
			jobsSeen[l.Job] = true
		}
	}
	for _, job := range []string{"getMultiple", "processSingle", "postProcessSingle", "sideEffect", "postProcessAll"} {
		require.True(t, jobsSeen[job], "grep of the execution ARN finds %s", job)
	}

	// /readyz follows the emulator; the process stays alive.
	readyz := func() int {
		resp, err := http.Get("http://" + w.addr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, readyz())
	proxy.Cut()
	eventually(t, time.Minute, "/readyz turns not ready with the emulator cut off", func() bool { return readyz() == http.StatusServiceUnavailable })
	resp, err = http.Get("http://" + w.addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "alive while AWS is unreachable")
	proxy.Restore()
	eventually(t, time.Minute, "/readyz is ready again", func() bool { return readyz() == http.StatusOK })
}

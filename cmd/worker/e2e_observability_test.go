package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/telemetry/promtest"
)

func TestE2EObservabilityOnARealPrometheus(t *testing.T) {
	const rules = "../../deploy/observability/alerts.yml"
	promtest.Binary(t, "promtool")
	proxy := awstest.NewProxy(t)
	st := newStack(t, "WORKER_BATCH_WINDOW=2s", "WORKER_GLUE_POLL_INTERVAL=1s")
	w := st.startWorker("AWS_ENDPOINT_URL=" + proxy.URL())
	prom := promtest.Start(t, w.addr, rules)
	prom.WaitForScrape(30 * time.Second)

	// Work for every panel: a cookies execution, a batch, a bad message.
	arn := st.startExecution(`{"count": 4}`)
	keys, _ := st.putFiles("obs", 3)
	st.sendRaw("getMultiple", "not JSON at all")
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

package promtest_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/telemetry"
	"github.com/taskbridge/taskbridge/internal/telemetry/promtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	dashboard = "../../../deploy/observability/grafana/dashboards/taskbridge.json"
	alerts    = "../../../deploy/observability/alerts.yml"
)

var queues = []string{"getMultiple", "processSingle", "postProcessSingle", "sideEffect", "postProcessAll", "finisher", "landing"}

// fakeWorker registers the worker's metric families, as the packages that own them
// name them, and returns a func that does one round of "work".
func fakeWorker(reg prometheus.Registerer) func() {
	counter := func(name string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: name + "."}, labels)
		reg.MustRegister(c)
		return c
	}
	hist := func(name string, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: name + ".", Buckets: prometheus.ExponentialBuckets(0.01, 4, 8)}, labels)
		reg.MustRegister(h)
		return h
	}
	gauge := func(name string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: name + "."}, labels)
		reg.MustRegister(g)
		return g
	}
	received, handled := counter("worker_messages_received_total", "queue"), counter("worker_messages_handled_total", "queue", "outcome")
	handlerDur, inFlight := hist("worker_handler_duration_seconds", "queue"), gauge("worker_jobs_in_flight", "queue")
	receives, deletes := counter("worker_receive_calls_total", "queue", "result"), counter("worker_sqs_deletes_total", "queue", "result")
	visibility, requests := counter("worker_visibility_changes_total", "queue", "kind", "result"), counter("worker_sqs_requests_total", "queue", "api")
	jobs, jobDur, age := counter("worker_jobs_total", "job", "outcome"), hist("worker_job_duration_seconds", "job"), hist("worker_event_age_seconds", "job")
	callbacks, cbDur, claims := counter("worker_callbacks_total", "api", "outcome"), hist("worker_callback_duration_seconds", "api"), counter("worker_claim_checks_total")
	published := counter("worker_events_published_total", "detail_type", "result")
	files, flushes, open := hist("worker_batch_files"), counter("worker_batch_flushes_total", "reason"), gauge("worker_batch_open_files")
	retries, startFailures, runs := counter("worker_glue_start_retries_total"), counter("worker_batch_start_failures_total"), counter("worker_glue_runs_total", "state")
	execDur, execExits, execKilled := hist("worker_exec_duration_seconds", "job"), counter("worker_exec_exits_total", "job", "code"), counter("worker_exec_killed_total", "job", "reason")
	httpResp, httpDur := counter("worker_http_responses_total", "job", "class"), hist("worker_http_duration_seconds", "job")
	starts := counter("worker_start_executions_total", "job", "outcome")
	return func() {
		for _, q := range queues {
			received.WithLabelValues(q).Add(3)
			handled.WithLabelValues(q, "deleted").Add(2)
			handled.WithLabelValues(q, "dead_lettered").Inc()
			handlerDur.WithLabelValues(q).Observe(0.2)
			inFlight.WithLabelValues(q).Set(1)
			receives.WithLabelValues(q, "messages").Inc()
			receives.WithLabelValues(q, "empty").Inc()
			deletes.WithLabelValues(q, "ok").Inc()
			visibility.WithLabelValues(q, "extend", "ok").Inc()
			requests.WithLabelValues(q, "ReceiveMessage").Add(2)
			requests.WithLabelValues(q, "DeleteMessageBatch").Inc()
			jobs.WithLabelValues(q, "success").Add(2)
			jobs.WithLabelValues(q, "final_failure").Inc()
			jobDur.WithLabelValues(q).Observe(0.15)
			age.WithLabelValues(q).Observe(1.5)
		}
		callbacks.WithLabelValues("SendTaskSuccess", "ok").Inc()
		callbacks.WithLabelValues("SendTaskFailure", "error").Inc()
		cbDur.WithLabelValues("SendTaskSuccess").Observe(0.03)
		claims.WithLabelValues().Inc()
		published.WithLabelValues("sideEffect", "ok").Inc()
		files.WithLabelValues().Observe(3)
		flushes.WithLabelValues("window").Inc()
		open.WithLabelValues().Set(2)
		retries.WithLabelValues().Inc()
		startFailures.WithLabelValues()
		runs.WithLabelValues("SUCCEEDED").Inc()
		runs.WithLabelValues("FAILED").Inc()
		execDur.WithLabelValues("resize").Observe(2)
		execExits.WithLabelValues("resize", "0").Inc()
		execKilled.WithLabelValues("resize", "timeout").Inc()
		httpResp.WithLabelValues("score", "2xx").Inc()
		httpDur.WithLabelValues("score").Observe(0.05)
		starts.WithLabelValues("next", "started").Inc()
	}
}

// dlqSQS answers every DLQ depth read with 2, on a queue of 1 MiB.
type dlqSQS struct{}

func (dlqSQS) GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"ApproximateNumberOfMessages": "2", "MaximumMessageSize": "1048576"}}, nil
}

// TestDashboardAndRulesOnARealPrometheus serves the worker's families through the
// telemetry server, lets a real Prometheus scrape it with the project's rules, and
// checks: promtool is happy with the exposition and the rules, every rule evaluates,
// and every dashboard query evaluates and returns data.
func TestDashboardAndRulesOnARealPrometheus(t *testing.T) {
	t.Parallel()
	log := zaptest.NewLogger(t)
	reg := telemetry.NewRegistry("test")
	ready := telemetry.NewReadiness(time.Minute, reg)
	ready.SetPolling("getMultiple", true)
	ready.ObserveAWS(nil)
	work := fakeWorker(reg)
	dlqs := map[string]string{}
	for _, q := range queues {
		dlqs[q] = "https://sqs/" + q + "-dlq"
	}
	gauge := telemetry.NewQueueGauge(telemetry.QueueGaugeConfig{DLQs: dlqs, Interval: time.Second}, dlqSQS{}, reg, log)

	addr := freeAddr(t)
	srv := telemetry.NewServer(addr, reg, ready.Ready, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	go func() { done <- srv.Run(ctx) }()
	go func() { done <- gauge.Run(ctx) }()
	go func() { // the "worker" keeps working while Prometheus scrapes it
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			work()
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			require.NoError(t, <-done)
		}
	})

	prom := promtest.Start(t, addr, alerts)
	prom.WaitForScrapes(4, time.Minute) // rate() needs two points; a few more for margin

	exposition := scrape(t, "http://"+addr+"/metrics")
	report, err := promtest.CheckMetrics(t, exposition)
	require.NoError(t, err)
	require.Empty(t, report, "promtool check metrics reports nothing")
	require.NoError(t, promtest.CheckRules(t, alerts))

	qs, err := promtest.Queries(dashboard, alerts)
	require.NoError(t, err)
	for _, r := range prom.EvalAll(qs) {
		require.NoError(t, r.Err, r.Source)
		if r.Dashboard {
			require.Positive(t, r.Series, "%s returns data: %s", r.Source, r.Expr)
		}
	}
	require.Eventually(t, func() bool { return prom.RuleHealth() == nil }, 10*time.Second, 200*time.Millisecond,
		"every rule evaluates on the server")
	// The failure counters above must show up as alerts (pending: `for:` holds them).
	require.Eventually(t, func() bool {
		got, err := prom.Alerts()
		return err == nil && containsAll(strings.Join(got, ","), "TaskbridgeJobFailureRatioHigh", "TaskbridgeCallbacksFailing", "TaskbridgeGlueRunsFailing", "TaskbridgeDLQGrowing")
	}, 10*time.Second, 200*time.Millisecond, "alerts follow the failures")
	got, err := prom.Alerts()
	require.NoError(t, err)
	require.NotContains(t, strings.Join(got, ","), "TaskbridgeNotReady", "the worker is ready")
}

// TestAlertsFireOnTheirFailures runs the rules' unit tests: each alert fires on the
// failure it is about and stays quiet on a healthy worker.
func TestAlertsFireOnTheirFailures(t *testing.T) {
	t.Parallel()
	require.NoError(t, promtest.TestRules(t, "../../../deploy/observability/alerts_test.yml"))
}

func TestComposePrometheusConfigIsValid(t *testing.T) {
	t.Parallel()
	require.NoError(t, promtest.CheckConfig(t, "../../../deploy/observability/prometheus.yml"))
	require.Error(t, promtest.CheckConfig(t, "promtest.go"), "not a config")
}

func TestCheckMetricsReportsLintProblems(t *testing.T) {
	t.Parallel()
	// A counter without _total and without help: promtool must say so.
	report, err := promtest.CheckMetrics(t, []byte("# TYPE requests counter\nrequests 1\n"))
	require.NoError(t, err)
	require.Contains(t, report, "requests")
}

func TestCheckRulesRejectsABadExpression(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(rate(x[5m])\n"), 0o600))
	require.Error(t, promtest.CheckRules(t, bad))
}

func TestEvalReportsAParseError(t *testing.T) {
	t.Parallel()
	prom := promtest.Start(t, "127.0.0.1:1") // nothing listens there: fine for parse errors
	_, err := prom.Eval("sum(rate(worker_jobs_total[5m])")
	require.ErrorContains(t, err, "bad_data")
	n, err := prom.Eval("vector(1)")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = prom.Eval("scalar(vector(1))")
	require.NoError(t, err)
	require.Equal(t, 1, n, "a scalar is one value")
}

func scrape(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// needTool finds a binary the test cannot do without: with CI=true its absence is a
// failure (scripts/prometheus.sh installs it), elsewhere a skip.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true, so this fails; scripts/prometheus.sh installs it)", name)
		}
		t.Skipf("%s not installed; run scripts/prometheus.sh", name)
	}
	return p
}

// prometheusServer runs a real Prometheus on loopback that scrapes target every second
// and loads the project's alert rules.
type prometheusServer struct {
	t   *testing.T
	url string
}

func startPrometheus(t *testing.T, target string) *prometheusServer {
	t.Helper()
	bin := needTool(t, "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs("../../deploy/observability/alerts.yml")
	require.NoError(t, err)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [%q]\nscrape_configs:\n  - job_name: worker\n    static_configs:\n      - targets: [%q]\n", rules, target)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600))
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", tail(logs.String(), 4096))
		}
	})
	p := &prometheusServer{t: t, url: "http://" + addr}
	eventually(t, 30*time.Second, "prometheus scrapes the worker", func() bool {
		n, err := p.eval(`up{job="worker"} == 1`)
		return err == nil && n == 1
	})
	return p
}

// eval runs an instant query and returns how many series it returned.
func (p *prometheusServer) eval(q string) (int, error) {
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	if out.Status != "success" {
		return 0, fmt.Errorf("query %q: %s", q, out.Error)
	}
	return len(out.Data.Result), nil
}

func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/observability/grafana/dashboards/taskbridge.json")
	require.NoError(t, err)
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	var qs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, tg.Expr)
		}
	}
	require.NotEmpty(t, qs)
	return qs
}

func alertQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/observability/alerts.yml")
	require.NoError(t, err)
	var r struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &r))
	var qs []string
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			qs = append(qs, rule.Expr)
		}
	}
	return qs
}

func TestE2EObservabilityOnARealPrometheus(t *testing.T) {
	promtool := needTool(t, "promtool")
	proxy := awstest.NewProxy(t)
	st := newStack(t, "WORKER_BATCH_WINDOW=2s", "WORKER_GLUE_POLL_INTERVAL=1s")
	w := st.startWorker("AWS_ENDPOINT_URL=" + proxy.URL())
	prom := startPrometheus(t, w.addr)

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
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(exposition)
	out, err := check.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "promtool check metrics reports nothing")
	for _, family := range []string{"worker_messages_received_total", "worker_messages_handled_total", "worker_job_duration_seconds", "worker_callbacks_total", "worker_jobs_in_flight"} {
		require.Contains(t, string(exposition), family)
	}
	for _, job := range []string{"getMultiple", "processSingle", "postProcessSingle", "sideEffect", "postProcessAll"} {
		require.Positive(t, w.metric(fmt.Sprintf(`worker_messages_received_total{queue=%q}`, job)), job)
		require.Positive(t, w.metric(fmt.Sprintf(`worker_job_duration_seconds_count{job=%q}`, job)), job)
	}
	require.Positive(t, w.metric(`worker_callbacks_total{api="SendTaskSuccess",outcome="ok"}`))

	out, err = exec.Command(promtool, "check", "rules", "../../deploy/observability/alerts.yml").CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)

	for _, q := range alertQueries(t) {
		_, err := prom.eval(q)
		require.NoError(t, err, "alert rule evaluates")
	}
	for _, q := range dashboardQueries(t) {
		n, err := prom.eval(q)
		require.NoError(t, err, "dashboard query evaluates")
		require.Positive(t, n, "dashboard query returns data: %s", q)
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

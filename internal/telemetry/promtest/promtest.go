// Package promtest runs a real Prometheus for tests: it scrapes a target on loopback,
// loads alert rules, and evaluates the dashboard's and the rules' queries through the
// HTTP API, so a test proves that every query parses, evaluates and finds data.
// It also runs promtool on an exposition and on rule files.
//
// The binaries come from Debian's prometheus package (scripts/prometheus.sh). When
// they are missing a test fails with CI=true and is skipped otherwise.
package promtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Job is the job label of the scraped target.
const Job = "worker"

// Binary returns the path of a Prometheus tool (prometheus, promtool). Without it the
// test fails when CI=true and is skipped otherwise.
func Binary(t testing.TB, name string) string {
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

// Prometheus is a Prometheus server owned by one test. Its methods are safe for
// concurrent use.
type Prometheus struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:41234.
	URL    string
	t      testing.TB
	client *http.Client
	logs   *syncBuffer
}

// Start runs Prometheus on a free loopback port, scraping target (host:port, path
// /metrics) every second with job label Job, and evaluating ruleFiles every second.
// It returns once the server answers /-/ready; the process is killed when the test
// ends, and its log is printed if the test failed.
func Start(t testing.TB, target string, ruleFiles ...string) *Prometheus {
	t.Helper()
	bin := Binary(t, "prometheus")
	dir := t.TempDir()
	cfg := config{
		Global:      map[string]string{"scrape_interval": "1s", "evaluation_interval": "1s"},
		ScrapeConfs: []scrapeConfig{{JobName: Job, StaticConfigs: []staticConfig{{Targets: []string{target}}}}},
	}
	for _, f := range ruleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatalf("rule file %s: %v", f, err)
		}
		cfg.RuleFiles = append(cfg.RuleFiles, abs)
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("prometheus config: %v", err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus log (tail):\n%s", tail(logs.String(), 4096))
		}
	})
	p := &Prometheus{URL: "http://" + addr, t: t, client: &http.Client{Timeout: 10 * time.Second}, logs: logs}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("prometheus exited at start:\n%s", tail(logs.String(), 4096))
		default:
		}
		if resp, err := p.client.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s:\n%s", tail(logs.String(), 4096))
		}
		time.Sleep(100 * time.Millisecond) // polling a separate process; no event to wait on
	}
}

// WaitForScrapes waits until Prometheus has scraped the target successfully n times
// (n ≥ 2 gives rate() two points), or fails the test after timeout.
func (p *Prometheus) WaitForScrapes(n int, timeout time.Duration) {
	p.t.Helper()
	q := fmt.Sprintf(`sum_over_time(up{job=%q}[1h]) >= %d`, Job, n)
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		got, err := p.Eval(q)
		if err == nil && got > 0 {
			return
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond) // Prometheus scrapes on its own clock
	}
	p.t.Fatalf("prometheus did not scrape the target %d times in %s (last error: %v); targets: %s", n, timeout, lastErr, p.targets())
}

// WaitForScrape waits for the first successful scrape of the target.
func (p *Prometheus) WaitForScrape(timeout time.Duration) { p.t.Helper(); p.WaitForScrapes(1, timeout) }

// Eval runs query as an instant query now and returns how many series (or, for a
// scalar or string, 1) it returned. An error means the query did not parse or
// evaluate.
func (p *Prometheus) Eval(query string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("query %q: %w", query, err)
	}
	defer resp.Body.Close()
	var out struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, fmt.Errorf("query %q: decode answer (HTTP %d): %w", query, resp.StatusCode, err)
	}
	if out.Status != "success" {
		return 0, fmt.Errorf("query %q: %s: %s", query, out.ErrorType, out.Error)
	}
	switch out.Data.ResultType {
	case "vector", "matrix":
		var series []json.RawMessage
		if err := json.Unmarshal(out.Data.Result, &series); err != nil {
			return 0, fmt.Errorf("query %q: decode %s: %w", query, out.Data.ResultType, err)
		}
		return len(series), nil
	default: // scalar, string: always one value
		return 1, nil
	}
}

// Result is what one query gave: series found, or the error.
type Result struct {
	Query
	Series int
	Err    error
}

// EvalAll evaluates every query; the caller decides which results are failures.
func (p *Prometheus) EvalAll(qs []Query) []Result {
	out := make([]Result, 0, len(qs))
	for _, q := range qs {
		n, err := p.Eval(q.Expr)
		out = append(out, Result{Query: q, Series: n, Err: err})
	}
	return out
}

// Alerts returns the alerts the server's rules are firing or holding as pending.
func (p *Prometheus) Alerts() ([]string, error) {
	resp, err := p.client.Get(p.URL + "/api/v1/alerts")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode alerts: %w", err)
	}
	var names []string
	for _, a := range out.Data.Alerts {
		names = append(names, a.Labels["alertname"]+" ("+a.State+")")
	}
	return names, nil
}

// RuleHealth returns an error naming every rule the server could not evaluate.
func (p *Prometheus) RuleHealth() error {
	resp, err := p.client.Get(p.URL + "/api/v1/rules")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("decode rules: %w", err)
	}
	var errs []error
	n := 0
	for _, g := range out.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				errs = append(errs, fmt.Errorf("rule %s: %s", r.Name, r.LastError))
			}
		}
	}
	if n == 0 {
		return errors.New("no rules loaded")
	}
	return errors.Join(errs...)
}

func (p *Prometheus) targets() string {
	resp, err := p.client.Get(p.URL + "/api/v1/targets")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return tail(b.String(), 2048)
}

// CheckMetrics runs `promtool check metrics` on an exposition and returns what it
// reports (empty when the exposition is clean) or an error when promtool could not
// run at all. promtool exits non-zero on lint problems; that is a report, not an
// error.
func CheckMetrics(t testing.TB, exposition []byte) (string, error) {
	t.Helper()
	cmd := exec.Command(Binary(t, "promtool"), "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return "", fmt.Errorf("run promtool check metrics: %w", err)
	}
	report := strings.TrimSpace(string(out))
	if err != nil && report == "" {
		report = err.Error()
	}
	return report, nil
}

// CheckRules runs `promtool check rules` on rule files; the error carries its output.
func CheckRules(t testing.TB, files ...string) error {
	t.Helper()
	out, err := exec.Command(Binary(t, "promtool"), append([]string{"check", "rules"}, files...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("promtool check rules: %w\n%s", err, out)
	}
	return nil
}

// CheckConfig runs `promtool check config --syntax-only` on a Prometheus config (the
// syntax only: its rule_files paths are those of the container it is meant for).
func CheckConfig(t testing.TB, file string) error {
	t.Helper()
	out, err := exec.Command(Binary(t, "promtool"), "check", "config", "--syntax-only", file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("promtool check config: %w\n%s", err, out)
	}
	return nil
}

// TestRules runs `promtool test rules` on rule unit-test files; the error carries its
// output, which shows the expected and the actual alerts.
func TestRules(t testing.TB, files ...string) error {
	t.Helper()
	out, err := exec.Command(Binary(t, "promtool"), append([]string{"test", "rules"}, files...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("promtool test rules: %w\n%s", err, out)
	}
	return nil
}

type config struct {
	Global      map[string]string `yaml:"global"`
	RuleFiles   []string          `yaml:"rule_files,omitempty"`
	ScrapeConfs []scrapeConfig    `yaml:"scrape_configs"`
}

type scrapeConfig struct {
	JobName       string         `yaml:"job_name"`
	StaticConfigs []staticConfig `yaml:"static_configs"`
}

type staticConfig struct {
	Targets []string `yaml:"targets"`
}

func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // a small race with other processes; Start fails loudly if lost
	return addr
}

// syncBuffer is a bytes.Buffer the process's output goroutines may write while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

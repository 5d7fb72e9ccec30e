//go:build browser

package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// browserPath is Chromium from PATH (Debian's chromium package; make test-console
// installs it). Never downloaded: without it the test skips, or fails when CI=true.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH (make test-console installs it)")
	}
	t.Skip("no chromium on PATH (make test-console installs it)")
	return ""
}

// browser is a headless Chromium driven over the DevTools protocol, saving
// screenshots under .artifacts/console/.
type browser struct {
	t         *testing.T
	ctx       context.Context
	base      string
	artifacts string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browserPath(t)),
		chromedp.NoSandbox, // as root in a container
		chromedp.WindowSize(1200, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx) // closes the browser and waits for it
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser, bound to its context: later Runs take
	// deadlines of their own without closing it.
	require.NoError(t, chromedp.Run(ctx), "start chromium")
	dir := filepath.Join(awstest.ModuleRoot(t), ".artifacts", "console")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return &browser{t: t, ctx: ctx, base: base, artifacts: dir}
}

// run runs actions with a deadline.
func (b *browser) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var url, body string
		dctx, dcancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer dcancel()
		_ = chromedp.Run(dctx, chromedp.Location(&url), chromedp.Text("body", &body, chromedp.ByQuery))
		b.t.Fatalf("%s: %v\nthe browser is at %s:\n%s", what, err, url, body)
	}
}

// text is the page's visible text.
func (b *browser) text() string {
	b.t.Helper()
	var s string
	b.run("read the page", chromedp.Text("body", &s, chromedp.ByQuery))
	return s
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	var png []byte
	b.run("screenshot "+name, chromedp.FullScreenshot(&png, 100)) // 100: PNG
	require.NoError(b.t, os.WriteFile(filepath.Join(b.artifacts, name+".png"), png, 0o644))
}

// clickTo clicks the link or button found by the XPath sel and waits for the CSS
// selector next of the page it leads to.
func (b *browser) clickTo(sel, next string) {
	b.t.Helper()
	b.run("click "+sel, chromedp.Click(sel, chromedp.BySearch), chromedp.WaitVisible(next, chromedp.ByQuery))
}

// consoleTopology is the cookies topology with a getMultiple queue that gives up
// quickly (5 s visibility, 2 receives), so a dead letter appears in seconds.
func consoleTopology(t *testing.T) string {
	t.Helper()
	return cookiesTopology(t, func(topo map[string]any) {
		for _, q := range topo["queues"].([]any) {
			if q := q.(map[string]any); q["name"] == "getMultiple" {
				q["visibilityTimeoutSeconds"], q["maxReceiveCount"] = 5, 2
			}
		}
	})
}

// consoleProc is a running `worker console`.
type consoleProc struct {
	base    string // http://host:port
	logPath string
}

func (c consoleProc) logs() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// startConsole runs `worker console` on a free port and waits for its stack page;
// it is stopped with SIGTERM at the end of the test and must exit 0.
func (st *stackEnv) startConsole(args ...string) consoleProc {
	st.t.Helper()
	addr := freeAddr(st.t)
	cmd := exec.Command(st.bin, append([]string{"console", "--addr", addr}, args...)...)
	cmd.Env = append(append([]string{}, st.env...), "WORKER_CONSOLE_CACHE_TTL=1s")
	c := consoleProc{base: "http://" + addr, logPath: filepath.Join(st.t.TempDir(), "console.log")}
	logs, err := os.Create(c.logPath)
	require.NoError(st.t, err)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(st.t, cmd.Start())
	logs.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	st.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			require.NoError(st.t, err, "the console exits 0 on SIGTERM")
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			st.t.Errorf("the console did not stop within 30s of SIGTERM (killed: %v)", <-done)
		}
		if st.t.Failed() {
			st.t.Logf("console log:\n%s", tail(c.logs(), 8192))
		}
	})
	eventually(st.t, 30*time.Second, "the console answers", func() bool {
		resp, err := http.Get(c.base + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return c
}

// TestE2EConsoleInBrowser: the console on the emulator, in headless Chromium: the
// stack page, a cookies execution's timeline, a dead letter found, redriven, and
// its execution finishing. Screenshots of each page go to .artifacts/console/.
func TestE2EConsoleInBrowser(t *testing.T) {
	browserPath(t) // before minutes of setup
	st := newStack(t, "WORKER_TOPOLOGY="+consoleTopology(t))

	// A cookies execution that succeeds.
	good := st.startWorker()
	done := st.start("cookies", `{"names": ["Ada", "Grace"]}`)
	require.Equal(t, "SUCCEEDED", string(st.waitExecution(done, 3*time.Minute).Status))
	good.signal(syscall.SIGTERM)
	<-good.done

	// One whose first step's outcome cannot be reported (Step Functions unreachable
	// from the worker): SQS moves its message to the DLQ after two receives.
	broken := st.startWorker("AWS_ENDPOINT_URL_SFN=http://127.0.0.1:1")
	stuck := st.start("cookies", `{"names": ["Linus"]}`)
	eventually(t, 3*time.Minute, "a dead letter of getMultiple", func() bool { return st.queueDepth(st.out.DLQs["getMultiple"]) == 1 })
	broken.signal(syscall.SIGTERM)
	<-broken.done
	worker := st.startWorker()

	console := st.startConsole("--actions", "--metrics", worker.addr)
	base := console.base
	b := newBrowser(t, base)

	// Stack: the queues with their jobs and the DLQ's depth, the state machine's
	// counts, the worker's readiness.
	var page string
	eventually(t, time.Minute, "the stack page shows the worker ready", func() bool {
		b.run("open the stack page", chromedp.Navigate(base+"/?fresh=1"), chromedp.WaitVisible("table", chromedp.ByQuery))
		page = b.text()
		return strings.Contains(page, "ready (200 OK)")
	})
	for _, want := range []string{"getMultiple", "postProcessAll", "cookies", worker.addr} {
		require.Contains(t, page, want)
	}
	b.screenshot("stack")

	// Executions of cookies, then the succeeded one's timeline.
	doneName := done[strings.LastIndex(done, ":")+1:]
	b.clickTo(`//a[text()="executions"]`, "form.filters")
	require.Contains(t, b.text(), doneName)
	b.screenshot("executions")
	b.clickTo(fmt.Sprintf(`//a[text()=%q]`, doneName), "ol.timeline")
	page = b.text()
	for _, want := range []string{"SUCCEEDED", "GetMultiple", "job getMultiple on queue getMultiple", "job processSingle on queue processSingle",
		"job postProcessAll on queue postProcessAll", "ProcessEach Map Succeeded", "0-cookies.json", "none (tracing off)"} {
		require.Contains(t, page, want)
	}
	require.NotContains(t, page, `"TaskToken": "AA`, "tokens are never shown whole")
	b.screenshot("execution")
	b.clickTo(`//a[contains(text(), "0-cookies.json")]`, "pre")
	require.Contains(t, b.text(), "totalCookiesConsumed")

	// Dead letters: the getMultiple DLQ, its group, the message with its token hashed.
	b.run("open dead letters", chromedp.Navigate(base+"/dlq"), chromedp.WaitVisible("table", chromedp.ByQuery))
	b.clickTo(`//a[text()="getMultiple"]`, "section.group")
	page = b.text()
	require.Contains(t, page, "1 × maxReceiveCount exceeded")
	b.screenshot("dlq")
	b.clickTo(`//section//tbody//a[1]`, "pre.body")
	page = b.text()
	require.Contains(t, page, "<redacted token")
	require.Contains(t, page, stuck)
	b.screenshot("message")

	// Redrive: a confirmation, then the move; the execution finishes.
	b.clickTo(`//a[contains(text(), "Redrive")]`, "form.confirm")
	b.screenshot("confirm")
	b.clickTo(`//button[text()="Yes, redrive"]`, "p.action")
	eventually(t, 3*time.Minute, "the redriven execution succeeds, as the console shows it", func() bool {
		b.run("open the execution", chromedp.Navigate(base+"/execution?fresh=1&arn="+stuck), chromedp.WaitVisible("ol.timeline", chromedp.ByQuery))
		return strings.Contains(b.text(), "SUCCEEDED")
	})
	b.screenshot("execution-redriven")
	eventually(t, time.Minute, "the redrive ends", func() bool {
		b.run("open dead letters", chromedp.Navigate(base+"/dlq/getMultiple?fresh=1"), chromedp.WaitVisible("main", chromedp.ByQuery))
		page = b.text()
		return strings.Contains(page, "done")
	})
	require.Contains(t, page, "moved 1, skipped 0, left 0")
	require.Contains(t, page, "No dead letters.")
	b.screenshot("dlq-redriven")
	require.Contains(t, console.logs(), `"msg":"console redrive done"`, "actions are logged")
}

package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/bootstrap"
)

// workerBin is the worker binary under test, built once per test binary with
// workerBuildFlags (the race detector, unless a file of a build tag says otherwise).
var (
	workerBin        string
	workerBuildFlags = []string{"-race"}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "taskbridge-e2e-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "worker")
	build := exec.Command("go", append(append([]string{"build"}, workerBuildFlags...), "-o", workerBin, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build worker:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	awstest.Main(m)
}

// stackEnv is one test's stack on the emulator: its environment and AWS clients.
type stackEnv struct {
	t   *testing.T
	bin string // the worker binary: workerBin, or a program built on the public API
	env []string
	out bootstrap.Output
	sqs *sqs.Client
	sfn *sfn.Client
	s3  *s3.Client
}

// newStack bootstraps a fresh stack with `worker bootstrap --output json`.
func newStack(t *testing.T, extraEnv ...string) *stackEnv {
	t.Helper()
	return newStackWith(t, workerBin, extraEnv...)
}

// newStackWith bootstraps a fresh stack with bin, a worker binary.
func newStackWith(t *testing.T, bin string, extraEnv ...string) *stackEnv {
	t.Helper()
	cfg := awstest.Config(t)
	st := &stackEnv{
		t:   t,
		bin: bin,
		env: append(append(os.Environ(), awstest.Env(t)...), append([]string{"WORKER_STACK=" + awstest.Stack(t), "WORKER_LOG_LEVEL=debug", "WORKER_POLL_WAIT=2s"}, extraEnv...)...),
		sqs: sqs.NewFromConfig(cfg), sfn: sfn.NewFromConfig(cfg),
		s3: s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle, o.DisableLogOutputChecksumValidationSkipped = true, true }),
	}
	args := []string{"bootstrap", "--output", "json"}
	if awstest.Emulator() == awstest.LocalStack {
		args = append(args, "--glue-optional") // no Glue in LocalStack's community edition
	}
	out := st.cli(args...)
	require.NoError(t, json.Unmarshal([]byte(out), &st.out), "bootstrap output: %s", out)
	return st
}

// cli runs a worker subcommand to its end and returns its stdout.
func (st *stackEnv) cli(args ...string) string {
	st.t.Helper()
	cmd := exec.Command(st.bin, args...)
	cmd.Env = st.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(st.t, cmd.Run(), "worker %s: %s", strings.Join(args, " "), stderr.String())
	return stdout.String()
}

// workerProc is a running `worker run`.
type workerProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	mu      sync.Mutex
	logs    bytes.Buffer
	done    chan struct{}
	waitErr error
}

// startWorker runs `worker run` against the stack, with its metrics server on a free
// port, and stops it (SIGTERM) at the end of the test if it still runs.
func (st *stackEnv) startWorker(extraEnv ...string) *workerProc {
	st.t.Helper()
	addr := freeAddr(st.t)
	cmd := exec.Command(st.bin, "run")
	cmd.Env = append(append(append([]string{}, st.env...), "WORKER_METRICS_ADDR="+addr), extraEnv...)
	w := &workerProc{t: st.t, cmd: cmd, addr: addr, done: make(chan struct{})}
	pr, pw, err := os.Pipe()
	require.NoError(st.t, err)
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(st.t, cmd.Start())
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1024*1024), 1024*1024)
		for sc.Scan() {
			w.mu.Lock()
			w.logs.Write(sc.Bytes())
			w.logs.WriteByte('\n')
			w.mu.Unlock()
		}
	}()
	go func() { w.waitErr = cmd.Wait(); pr.Close(); close(w.done) }()
	st.t.Cleanup(func() {
		w.signal(syscall.SIGTERM)
		select {
		case <-w.done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-w.done
		}
		if st.t.Failed() {
			st.t.Logf("worker log (last 8 KiB):\n%s", tail(w.Logs(), 8192))
		}
		keepLog(st.t, w)
	})
	w.waitHealthy()
	return w
}

// keepLog writes a worker's whole log into $TASKBRIDGE_TEST_LOGDIR when it is set:
// a case that fails once in many runs is understood from what every worker said.
func keepLog(t *testing.T, w *workerProc) {
	dir := os.Getenv("TASKBRIDGE_TEST_LOGDIR")
	if dir == "" {
		return
	}
	name := fmt.Sprintf("%s-%d-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano(), w.cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(w.Logs()), 0o644); err != nil {
		t.Logf("keep worker log: %v", err)
	}
}

func (w *workerProc) signal(sig syscall.Signal) {
	select {
	case <-w.done:
	default:
		_ = w.cmd.Process.Signal(sig)
	}
}

// Logs is what the worker wrote so far. It first waits for the worker's log buffer
// to be written (every 200 ms), so a line of something that already happened is in.
func (w *workerProc) Logs() string {
	time.Sleep(logSettle)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs.String()
}

// logSettle is longer than the worker's log flush interval (telemetry).
const logSettle = 500 * time.Millisecond

func (w *workerProc) waitHealthy() {
	w.t.Helper()
	eventually(w.t, 30*time.Second, "worker /healthz answers", func() bool {
		select {
		case <-w.done:
			w.t.Fatalf("worker exited at start: %v\n%s", w.waitErr, w.Logs())
		default:
		}
		resp, err := http.Get("http://" + w.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// peakRSSKiB is the process's high-water resident set size (VmHWM), in KiB.
func (w *workerProc) peakRSSKiB() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	require.NoError(w.t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			require.NoError(w.t, err)
			return n
		}
	}
	w.t.Fatal("no VmHWM in /proc status")
	return 0
}

// startExecution starts a cookies execution with input and returns its ARN.
func (st *stackEnv) startExecution(input string) string {
	st.t.Helper()
	out := st.cli("start", "--input", input)
	return strings.TrimSpace(out)
}

// waitExecution waits for an execution to end and returns its description.
func (st *stackEnv) waitExecution(arn string, within time.Duration) *sfn.DescribeExecutionOutput {
	st.t.Helper()
	var d *sfn.DescribeExecutionOutput
	deadline := time.Now().Add(within)
	for {
		var err error
		d, err = st.sfn.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		require.NoError(st.t, err)
		if d.Status != sfntypes.ExecutionStatusRunning {
			return d
		}
		if time.Now().After(deadline) {
			st.t.Fatalf("timed out after %s waiting for execution %s to end; its last events:\n%s", within, arn, st.lastEvents(arn, 12))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// lastEvents is an execution's last n history events, one a line: where it waits.
func (st *stackEnv) lastEvents(arn string, n int32) string {
	out, err := st.sfn.GetExecutionHistory(context.Background(), &sfn.GetExecutionHistoryInput{
		ExecutionArn: aws.String(arn), ReverseOrder: true, MaxResults: n,
	})
	if err != nil {
		return "history: " + err.Error()
	}
	var b strings.Builder
	for _, e := range out.Events {
		line, _ := json.Marshal(e)
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// queueDepth is visible + in-flight + delayed messages of a queue.
func (st *stackEnv) queueDepth(url string) int {
	st.t.Helper()
	out, err := st.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	require.NoError(st.t, err)
	total := 0
	for _, v := range out.Attributes {
		n, _ := strconv.Atoi(v)
		total += n
	}
	return total
}

// requireQueuesDrain waits until every job queue and DLQ is empty. A delete lost by
// the emulator brings a message back after its visibility timeout; the worker then
// handles it again (a closed token is a finished outcome), so this waits that long.
func (st *stackEnv) requireQueuesDrain(within time.Duration) {
	st.t.Helper()
	eventually(st.t, within, "all queues and DLQs empty", func() bool {
		for _, name := range st.out.QueueNames() {
			if st.queueDepth(st.out.Queues[name]) != 0 || st.queueDepth(st.out.DLQs[name]) != 0 {
				return false
			}
		}
		return true
	})
}

func (st *stackEnv) getJSON(bucket, key string, into any) {
	st.t.Helper()
	obj, err := st.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(st.t, err, "get s3://%s/%s", bucket, key)
	defer obj.Body.Close()
	require.NoError(st.t, json.NewDecoder(obj.Body).Decode(into), "decode s3://%s/%s", bucket, key)
}

func (st *stackEnv) listKeys(bucket, prefix string) []string {
	st.t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(st.s3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(st.t, err)
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// eventually polls cond until it holds or within passes. Polling an external system
// (the emulator, a process) has no signal to wait on.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", within, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// metric reads one sample of the worker's /metrics by its exact series text (name
// and labels as exposed); -1 when it is not there.
func (w *workerProc) metric(series string) float64 {
	w.t.Helper()
	resp, err := http.Get("http://" + w.addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1024*1024), 1024*1024)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

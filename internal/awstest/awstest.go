// Package awstest gives integration tests a real AWS emulator: one moto server per
// test binary, started on a free loopback port on first use, with Step Functions
// execution turned on, and stopped when the binary ends (use Main in TestMain).
//
// TASKBRIDGE_TEST_ENDPOINT points the tests at an emulator that is already running
// instead. With CI=true a missing emulator fails the test; elsewhere it skips it with
// the command that installs one (make emulator).
//
// TASKBRIDGE_TEST_MOTO=stock starts the stock moto_server instead of
// tools/moto/server.py (moto with its heartbeat and receive races fixed), as users
// and the compose file run it: make test-stock-moto runs the cookies, restart, trust
// and cancellation cases on it (all of them pass there: none needs the fixes).
//
// TASKBRIDGE_TEST_EMULATOR names the kind of that emulator: moto (the default) or
// localstack. LocalStack is never started here (scripts/localstack.sh does it, for
// make test-localstack), so it needs TASKBRIDGE_TEST_ENDPOINT; the moto-only calls
// (/moto-api/config, /moto-api/reset) are not made on it, and a test that depends on
// moto's behaviour says so with RequireMoto.
package awstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"go.uber.org/goleak"
)

// Region of every emulator call.
const Region = "us-east-1"

// Kinds of emulator, the values of TASKBRIDGE_TEST_EMULATOR.
const (
	Moto       = "moto"
	LocalStack = "localstack"
)

// Emulator is the kind of emulator the tests run against: TASKBRIDGE_TEST_EMULATOR,
// Moto when unset. An unknown value fails every test that asks for the emulator.
func Emulator() string {
	if k := os.Getenv("TASKBRIDGE_TEST_EMULATOR"); k != "" {
		return k
	}
	return Moto
}

// RequireMoto skips a test (or subtest) that depends on moto's own behaviour when the
// emulator is another kind; why says what the test relies on, for the skip message.
func RequireMoto(t testing.TB, why string) {
	t.Helper()
	if k := Emulator(); k != Moto {
		t.Skipf("needs moto, the emulator is %s: %s", k, why)
	}
}

// StockMoto reports whether the tests run on stock moto_server
// (TASKBRIDGE_TEST_MOTO=stock) rather than tools/moto/server.py.
func StockMoto() bool { return os.Getenv("TASKBRIDGE_TEST_MOTO") == "stock" }

var emu struct {
	once     sync.Once
	endpoint string
	err      error
	cmd      *exec.Cmd // nil when the emulator was already running
	logPath  string
}

// Main runs the tests of a package that uses the emulator, stops the emulator it
// started, checks that no goroutine leaked, and exits.
func Main(m *testing.M) {
	code := m.Run()
	stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Endpoint returns the emulator's URL, starting it if needed. Without an emulator the
// test fails when CI=true and is skipped otherwise.
func Endpoint(t testing.TB) string {
	t.Helper()
	emu.once.Do(func() { emu.endpoint, emu.err = start() })
	if emu.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("AWS emulator unavailable (CI=true, so this fails): %v", emu.err)
		}
		t.Skipf("AWS emulator unavailable: %v (run `make emulator`, or set TASKBRIDGE_TEST_ENDPOINT)", emu.err)
	}
	return emu.endpoint
}

// Config returns an aws.Config for the emulator: static credentials, region
// us-east-1, every service at the emulator's endpoint.
func Config(t testing.TB) aws.Config {
	t.Helper()
	return configAt(t, Endpoint(t))
}

func configAt(t testing.TB, endpoint string) aws.Config {
	t.Helper()
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(),
		awsconfig.WithRegion(Region),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")),
		awsconfig.WithBaseEndpoint(endpoint),
	)
	if err != nil {
		t.Fatalf("load aws config: %v", err)
	}
	return cfg
}

// Env returns the environment a worker process needs to talk to the emulator, as
// KEY=VALUE pairs to append to os.Environ().
func Env(t testing.TB) []string {
	t.Helper()
	return []string{
		"AWS_ENDPOINT_URL=" + Endpoint(t),
		"AWS_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=testing",
		"AWS_SECRET_ACCESS_KEY=testing",
	}
}

// RoleARN is the ARN of a role named name in the emulator's account. LocalStack acts
// in the account of the role a state machine or a rule target is given, so a role
// of another account there runs the work in an empty account (moto ignores it).
func RoleARN(t testing.TB, name string) string {
	t.Helper()
	out, err := sts.NewFromConfig(Config(t)).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("the emulator's account: %v", err)
	}
	return "arn:aws:iam::" + aws.ToString(out.Account) + ":role/" + name
}

// Stack returns a unique stack name, so each test gets its own bus, queues, buckets
// and state machines on the shared emulator. It is short and lowercase: bucket names
// are derived from it.
func Stack(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random stack name: %v", err)
	}
	return "tb-" + hex.EncodeToString(b)
}

// Reset empties the emulator (every service's state) and turns Step Functions
// execution back on. For benchmarks that compare runs: moto slows down as its state
// grows, and a run should not pay for the runs before it. Never call it while other
// tests use the emulator.
func Reset(t testing.TB) {
	t.Helper()
	RequireMoto(t, "Reset empties the emulator through /moto-api/reset")
	endpoint := Endpoint(t)
	resp, err := http.Post(endpoint+"/moto-api/reset", "application/json", nil)
	if err != nil {
		t.Fatalf("reset the emulator: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reset the emulator: status %s", resp.Status)
	}
	if err := enableStepFunctions(endpoint); err != nil {
		t.Fatal(err)
	}
}

// LogPath is the file the emulator started by this binary writes to ("" if none).
func LogPath() string { return emu.logPath }

func start() (string, error) {
	kind := Emulator()
	if kind != Moto && kind != LocalStack {
		return "", fmt.Errorf("TASKBRIDGE_TEST_EMULATOR=%q: want %s or %s", kind, Moto, LocalStack)
	}
	if ep := os.Getenv("TASKBRIDGE_TEST_ENDPOINT"); ep != "" {
		ep = strings.TrimRight(ep, "/")
		if err := waitReady(ep, 5*time.Second); err != nil {
			return "", fmt.Errorf("TASKBRIDGE_TEST_ENDPOINT=%s (%s): %w", ep, kind, err)
		}
		if kind == LocalStack {
			return ep, nil // it runs state machines as it is
		}
		return ep, enableStepFunctions(ep)
	}
	if kind == LocalStack {
		return "", errors.New("TASKBRIDGE_TEST_EMULATOR=localstack needs TASKBRIDGE_TEST_ENDPOINT, a running LocalStack (make test-localstack starts one)")
	}
	argv, err := motoCommand()
	if err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	logf, err := os.CreateTemp("", "awstest-moto-*.log")
	if err != nil {
		return "", fmt.Errorf("create emulator log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], append(argv[1:], "-H", "127.0.0.1", "-p", fmt.Sprint(port))...)
	cmd.Stdout, cmd.Stderr = logf, logf
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	emu.cmd, emu.logPath = cmd, logf.Name()
	ep := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitReady(ep, 30*time.Second); err != nil {
		return "", fmt.Errorf("moto server at %s (log %s): %w", ep, logf.Name(), err)
	}
	return ep, enableStepFunctions(ep)
}

func stop() {
	if emu.cmd == nil || emu.cmd.Process == nil {
		return
	}
	_ = emu.cmd.Process.Kill()
	_ = emu.cmd.Wait()
	if emu.logPath != "" {
		_ = os.Remove(emu.logPath)
	}
}

// motoCommand is how to start moto: $MOTO_SERVER; else the project's .venv python
// with tools/moto/server.py (moto_server with races of its Step Functions heartbeats
// and SQS receives fixed), unless StockMoto; else moto_server from .venv or PATH.
func motoCommand() ([]string, error) {
	if b := os.Getenv("MOTO_SERVER"); b != "" {
		return []string{b}, nil
	}
	if StockMoto() {
		b, err := motoBinary()
		if err != nil {
			return nil, err
		}
		return []string{b}, nil
	}
	if root, err := moduleRoot(); err == nil {
		py, script := filepath.Join(root, ".venv", "bin", "python3"), filepath.Join(root, "tools", "moto", "server.py")
		if _, err := os.Stat(py); err == nil {
			if _, err := os.Stat(script); err == nil {
				return []string{py, script}, nil
			}
		}
	}
	b, err := motoBinary()
	if err != nil {
		return nil, err
	}
	return []string{b}, nil
}

// motoBinary finds moto_server: the project's .venv, then PATH.
func motoBinary() (string, error) {
	if root, err := moduleRoot(); err == nil {
		b := filepath.Join(root, ".venv", "bin", "moto_server")
		if _, err := os.Stat(b); err == nil {
			return b, nil
		}
	}
	if b, err := exec.LookPath("moto_server"); err == nil {
		return b, nil
	}
	return "", errors.New("moto_server not found in $MOTO_SERVER, .venv/bin or PATH")
}

// ModuleRoot is the directory of go.mod, found upward from the working directory.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// readyPath is where the emulator answers 200 once it serves requests.
func readyPath() string {
	if Emulator() == LocalStack {
		return "/_localstack/health"
	}
	return "/moto-api/data.json"
}

func waitReady(endpoint string, within time.Duration) error {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Second}
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(endpoint + readyPath())
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(100 * time.Millisecond) // polling a process we started; nothing to wait on
	}
	return fmt.Errorf("not ready after %s: %w", within, last)
}

// enableStepFunctions makes moto run state machines (it only records them by default).
func enableStepFunctions(endpoint string) error {
	body := []byte(`{"stepfunctions":{"execute_state_machine":true}}`)
	resp, err := http.Post(endpoint+"/moto-api/config", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("enable step functions execution: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("enable step functions execution: status %s", resp.Status)
	}
	return nil
}

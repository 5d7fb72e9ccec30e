// Package awstest gives integration tests a real AWS emulator: one moto server per
// test binary, started on a free loopback port on first use, with Step Functions
// execution turned on, and stopped when the binary ends (use Main in TestMain).
//
// TASKBRIDGE_TEST_ENDPOINT points the tests at an emulator that is already running
// instead. With CI=true a missing emulator fails the test; elsewhere it skips it with
// the command that installs one (make emulator).
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
	"go.uber.org/goleak"
)

// Region of every emulator call.
const Region = "us-east-1"

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
	endpoint := Endpoint(t)
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
	if ep := os.Getenv("TASKBRIDGE_TEST_ENDPOINT"); ep != "" {
		ep = strings.TrimRight(ep, "/")
		if err := waitReady(ep, 5*time.Second); err != nil {
			return "", fmt.Errorf("TASKBRIDGE_TEST_ENDPOINT=%s: %w", ep, err)
		}
		return ep, enableStepFunctions(ep)
	}
	bin, err := motoBinary()
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
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
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

// motoBinary finds moto_server: $MOTO_SERVER, the project's .venv, then PATH.
func motoBinary() (string, error) {
	if b := os.Getenv("MOTO_SERVER"); b != "" {
		return b, nil
	}
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

func waitReady(endpoint string, within time.Duration) error {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Second}
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(endpoint + "/moto-api/data.json")
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

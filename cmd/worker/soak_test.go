//go:build soak

// The soak of `make soak`: the worker binary (built as users build it, without the
// race detector) under a steady cookies load for a while, its goroutines, heap and
// RSS printed at intervals. Run with:
//
//	go test -tags soak -run Soak -v ./cmd/worker -args -soak.duration=10m -soak.every=30s
package main_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/require"
)

var (
	soakDuration = flag.Duration("soak.duration", 10*time.Minute, "how long the load runs")
	soakEvery    = flag.Duration("soak.every", 30*time.Second, "how often the worker's figures are printed")
	soakInFlight = flag.Int("soak.executions", 3, "cookies executions kept running at once")
	soakPeople   = flag.Int("soak.people", 10, "people per execution")
)

// The soak measures the binary users run.
func init() { workerBuildFlags = nil }

type soakSample struct {
	at                          time.Duration
	executions                  int64
	messages, goroutines        float64
	heapMiB, rssMiB, peakRSSMiB float64
}

func TestSoak(t *testing.T) {
	st := newStack(t, "WORKER_LOG_LEVEL=info", "WORKER_POLL_WAIT=20s")
	w := st.startWorker()
	machine := st.out.StateMachines["cookies"]
	ctx, stopLoad := context.WithTimeout(context.Background(), *soakDuration)
	defer stopLoad()

	// The load: soak.executions executions at any time, each replaced when it ends.
	var succeeded, failed atomic.Int64
	var wg sync.WaitGroup
	for slot := range *soakInFlight {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("soak-%d-%d-%d", time.Now().UnixNano(), slot, i)
				out, err := st.sfn.StartExecution(context.Background(), &sfn.StartExecutionInput{
					StateMachineArn: aws.String(machine), Name: aws.String(name), Input: aws.String(fmt.Sprintf(`{"count":%d}`, *soakPeople)),
				})
				if err != nil {
					t.Errorf("start execution: %v", err)
					return
				}
				if executionSucceeded(st, aws.ToString(out.ExecutionArn)) {
					succeeded.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}

	start := time.Now()
	const row = "%8s %11v %9v %11v %9v %8v %13v\n" // a row a sample, aligned as it is printed
	fmt.Printf(row, "elapsed", "executions", "messages", "goroutines", "heap MiB", "RSS MiB", "peak RSS MiB")
	var samples []soakSample
	sample := func() {
		s := soakSample{
			at: time.Since(start).Round(time.Second), executions: succeeded.Load(),
			messages: w.metricSum("worker_messages_handled_total"), goroutines: w.metric("go_goroutines"),
			heapMiB: w.metric("go_memstats_heap_inuse_bytes") / (1 << 20), rssMiB: w.metric("process_resident_memory_bytes") / (1 << 20),
			peakRSSMiB: float64(w.peakRSSKiB()) / 1024,
		}
		samples = append(samples, s)
		fmt.Printf(row, s.at, s.executions, s.messages, s.goroutines, fmt.Sprintf("%.1f", s.heapMiB), fmt.Sprintf("%.1f", s.rssMiB), fmt.Sprintf("%.1f", s.peakRSSMiB))
	}
	tick := time.NewTicker(*soakEvery)
	for sample(); ctx.Err() == nil; {
		select {
		case <-ctx.Done():
		case <-tick.C:
			sample()
		}
	}
	tick.Stop()
	wg.Wait() // the executions in flight end
	sample()

	require.Zero(t, failed.Load(), "every execution succeeds")
	require.Positive(t, succeeded.Load())
	levelsOff(t, samples)
}

// metricSum adds every sample of a metric family (all its label sets); -1 when the
// worker does not answer.
func (w *workerProc) metricSum(name string) float64 {
	w.t.Helper()
	resp, err := http.Get("http://" + w.addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1024*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// executionSucceeded waits for an execution's end; one still running after ten
// minutes counts as failed, so a stuck worker ends the soak instead of hanging it.
func executionSucceeded(st *stackEnv, arn string) bool {
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		d, err := st.sfn.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		if err == nil && d.Status != sfntypes.ExecutionStatusRunning {
			return d.Status == sfntypes.ExecutionStatusSucceeded
		}
	}
	return false
}

// levelsOff checks memory and goroutines stop growing under a steady load: after a
// warm-up (the first quarter of the samples), the second half's highest RSS, heap
// and goroutine count stay within a quarter (plus 8 of slack: MiB for the
// allocator, goroutines for requests in flight) of the first half's. A leak of a
// little every message grows with every sample and fails this over a long soak.
func levelsOff(t *testing.T, samples []soakSample) {
	steady := samples[len(samples)/4:]
	if len(steady) < 4 {
		t.Logf("only %d samples after warm-up: too short a soak to judge whether memory levels off", len(steady))
		return
	}
	half := len(steady) / 2
	peak := func(ss []soakSample, of func(soakSample) float64) float64 {
		m := 0.0
		for _, s := range ss {
			m = max(m, of(s))
		}
		return m
	}
	for _, m := range []struct {
		name string
		of   func(soakSample) float64
	}{
		{"RSS (MiB)", func(s soakSample) float64 { return s.rssMiB }},
		{"heap (MiB)", func(s soakSample) float64 { return s.heapMiB }},
		{"goroutines", func(s soakSample) float64 { return s.goroutines }},
	} {
		first, second := peak(steady[:half], m.of), peak(steady[half:], m.of)
		t.Logf("%s: highest %.1f in the first half of the steady load, %.1f in the second", m.name, first, second)
		require.LessOrEqual(t, second, first*1.25+8, "%s keeps growing under a steady load", m.name)
	}
}

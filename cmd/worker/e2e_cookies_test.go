package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"
)

type executionOutput struct {
	NumberOfPeople       *int   `json:"numberOfPeople"`
	TotalCookiesConsumed *int   `json:"totalCookiesConsumed"`
	Report               string `json:"report"`
}

type report struct {
	Names                []string         `json:"names"`
	NumberOfPeople       int              `json:"numberOfPeople"`
	TotalCookiesConsumed int              `json:"totalCookiesConsumed"`
	People               []map[string]any `json:"people"`
}

// requireConsistent checks an execution that succeeded: its output, its report and
// the profiles stored in S3 agree, and every key stays under the execution's prefix.
// It returns the report.
func (st *stackEnv) requireConsistent(execARN string, d interface{ GetOutput() string }, wantPeople int) report {
	st.t.Helper()
	var out executionOutput
	require.NoError(st.t, json.Unmarshal([]byte(d.GetOutput()), &out), "execution output %s", d.GetOutput())
	require.NotNil(st.t, out.NumberOfPeople, "output has numberOfPeople")
	require.NotNil(st.t, out.TotalCookiesConsumed, "output has totalCookiesConsumed")
	execName := execARN[strings.LastIndex(execARN, ":")+1:]
	wantReport := fmt.Sprintf("s3://%s/%s/0-cookies.json", st.out.DataBucket, execName)
	require.Equal(st.t, wantReport, out.Report)

	var rep report
	st.getJSON(st.out.DataBucket, execName+"/0-cookies.json", &rep)
	require.Equal(st.t, wantPeople, *out.NumberOfPeople)
	require.Equal(st.t, wantPeople, rep.NumberOfPeople)
	require.Len(st.t, rep.People, wantPeople)
	require.Len(st.t, rep.Names, wantPeople)
	sum := 0
	for _, p := range rep.People {
		n, ok := p["numberOfCookiesConsumed"].(float64)
		require.True(st.t, ok, "person %v has numberOfCookiesConsumed", p)
		sum += int(n)
	}
	require.Equal(st.t, sum, rep.TotalCookiesConsumed, "report total is the sum")
	require.Equal(st.t, rep.TotalCookiesConsumed, *out.TotalCookiesConsumed, "output total is the report's")

	// The stored profiles agree with the report, and every key is under the prefix.
	keys := st.listKeys(st.out.DataBucket, "")
	stored, storedSum := 0, 0
	for _, k := range keys {
		if !strings.HasPrefix(k, execName+"/") {
			continue
		}
		require.Equal(st.t, k, path.Clean(k), "key %q is clean", k)
		require.NotContains(st.t, strings.Split(k, "/"), "..", "key %q has no .. segment", k)
		if strings.Contains(k, "/people/") {
			var p map[string]any
			st.getJSON(st.out.DataBucket, k, &p)
			stored++
			storedSum += int(p["numberOfCookiesConsumed"].(float64))
		}
	}
	require.Equal(st.t, wantPeople, stored, "one stored profile per person")
	require.Equal(st.t, rep.TotalCookiesConsumed, storedSum, "stored profiles sum to the report's total")
	return rep
}

func TestE2ECookiesFiftyPeople(t *testing.T) {
	st := newStack(t)
	st.startWorker()
	arn := st.startExecution(`{"count": 50}`)
	d := st.waitExecution(arn, 5*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "error %s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	st.requireConsistent(arn, output{d.Output}, 50)
	st.requireQueuesDrain(3 * time.Minute)
}

// TestE2EGuideByHand runs the guide's commands by hand (docs/guide.md, "Running it
// locally") with the words it shows: bootstrap, run, then start with awkward names,
// --wait and --report.
func TestE2EGuideByHand(t *testing.T) {
	st := newStack(t)
	st.startWorker()
	out := st.cli("start", "--names", "Zoë,O'Brien,名前", "--wait", "--report")
	require.Contains(t, out, "people: 3,", out)
	for _, name := range []string{"Zoë", "O'Brien", "名前"} {
		require.Contains(t, out, name, "the report names everyone")
	}
}

func TestE2EAwkwardNamesStayUnderThePrefix(t *testing.T) {
	st := newStack(t)
	st.startWorker()
	names := []string{"Zoë", "O'Brien", "a/b", "../../etc/passwd", "名前", "Zoë"}
	in, _ := json.Marshal(map[string]any{"names": names})
	arn := st.startExecution(string(in))
	d := st.waitExecution(arn, 3*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "error %s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	rep := st.requireConsistent(arn, output{d.Output}, 6)
	require.Equal(t, names, rep.Names)
	got := make([]string, 0, len(rep.People))
	for _, p := range rep.People {
		got = append(got, p["name"].(string))
	}
	require.ElementsMatch(t, names, got, "every person, duplicates separate")
	// Nothing of the execution was written outside its prefix.
	execName := arn[strings.LastIndex(arn, ":")+1:]
	for _, k := range st.listKeys(st.out.DataBucket, "") {
		require.True(t, strings.HasPrefix(k, execName+"/"), "key %q outside the execution prefix", k)
	}
}

func TestE2ETenExecutionsAtOnce(t *testing.T) {
	st := newStack(t)
	w := st.startWorker()
	arns := make([]string, 10)
	var wg sync.WaitGroup
	for i := range arns {
		wg.Go(func() { arns[i] = st.startExecution(fmt.Sprintf(`{"count": %d}`, 2+i%3)) })
	}
	wg.Wait()
	for i, arn := range arns {
		d := st.waitExecution(arn, 5*time.Minute)
		require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "execution %d: %s: %s", i, aws.ToString(d.Error), aws.ToString(d.Cause))
		st.requireConsistent(arn, output{d.Output}, 2+i%3)
	}
	// Bounded memory: a -race build of the worker stays far below this after ten
	// executions; a leak of messages or goroutines per job would not.
	rss := w.peakRSSKiB()
	t.Logf("worker peak RSS after 10 executions: %d MiB", rss/1024)
	require.Less(t, rss, 512*1024, "peak RSS in KiB")
}

func TestE2ESigkillMidExecutionThenRestart(t *testing.T) {
	st := newStack(t, "WORKER_SHUTDOWN_TIMEOUT=10s")
	w := st.startWorker()
	arn := st.startExecution(`{"count": 30}`)
	execName := arn[strings.LastIndex(arn, ":")+1:]
	eventually(t, 2*time.Minute, "some people stored", func() bool {
		return len(st.listKeys(st.out.DataBucket, execName+"/people/")) >= 8
	})
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
	<-w.done
	st.startWorker()
	d := st.waitExecution(arn, 5*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "error %s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	st.requireConsistent(arn, output{d.Output}, 30)
}

func TestE2ESigtermWithJobsInFlightExitsZeroAndLosesNothing(t *testing.T) {
	st := newStack(t, "WORKER_SHUTDOWN_TIMEOUT=8s")
	w := st.startWorker()
	arn := st.startExecution(`{"count": 20}`)
	execName := arn[strings.LastIndex(arn, ":")+1:]
	eventually(t, 2*time.Minute, "some people stored", func() bool {
		return len(st.listKeys(st.out.DataBucket, execName+"/people/")) >= 4
	})
	start := time.Now()
	w.signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not exit within ECS's 30 s stop timeout")
	}
	took := time.Since(start)
	require.NoError(t, w.waitErr, "exit status after SIGTERM")
	// A behaviour, not a speed claim: the drain is bounded by the shutdown timeout,
	// with a few seconds for process teardown under -race.
	require.Less(t, took, 11*time.Second, "exit within the 8 s shutdown timeout")
	// Whatever it held is redelivered to the next worker: the execution completes.
	st.startWorker()
	d := st.waitExecution(arn, 5*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "error %s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	st.requireConsistent(arn, output{d.Output}, 20)
}

// output adapts DescribeExecutionOutput.Output to requireConsistent.
type output struct{ s *string }

func (o output) GetOutput() string { return aws.ToString(o.s) }

// sendRaw puts a raw body on a job queue, as EventBridge would.
func (st *stackEnv) sendRaw(queue, body string) {
	st.t.Helper()
	_, err := st.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(st.out.Queues[queue]), MessageBody: aws.String(body)})
	require.NoError(st.t, err)
}

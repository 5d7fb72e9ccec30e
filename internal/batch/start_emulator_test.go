package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/consumer"
)

// The lost and late StartJobRun replies of issue 27, on moto behind the fault
// proxy: however the reply goes missing, each file is in exactly one run.

const startOp = "glue:StartJobRun"

// handle handles m on b with a bound, so that a batcher that waits forever fails.
func handle(t *testing.T, b *Batcher, m consumer.Message) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return b.Handle(ctx, m)
}

// startCutByStop is a batcher stopped (SIGTERM) while its StartJobRun is in
// flight: the call's reply is held back a minute and the stop comes once Glue has
// the call.
type startCutByStop struct {
	st  *emuStack
	f   *awstest.Faults
	b   *Batcher         // the stopped batcher
	ev  consumer.Message // the file's event
	err error            // what handling ev returned
}

// stopDuringStart handles one file's event on a batcher and stops it during its
// StartJobRun; faults are added just before the stop.
func stopDuringStart(t *testing.T, faults ...awstest.Fault) *startCutByStop {
	t.Helper()
	f := awstest.NewFaults(t, awstest.Endpoint(t))
	st := newEmuStack(t, f.Config(t), false)
	b, stop := st.stoppableBatcher(startCfg)
	f.Add(awstest.Fault{Op: startOp, Delay: time.Minute, Times: 1})
	ev, _ := st.put("in/a.csv", "a\n")
	errc := make(chan error, 1)
	go func() { errc <- handle(t, b, ev) }()
	require.Eventually(t, func() bool { return f.Hits(startOp) == 1 }, time.Minute, 20*time.Millisecond)
	for _, fault := range faults {
		f.Add(fault)
	}
	stop()
	return &startCutByStop{st: st, f: f, b: b, ev: ev, err: <-errc}
}

// runsOf counts the job's runs, and those whose manifest lists key.
func (st *emuStack) runsOf(key string) (all, listing int) {
	st.t.Helper()
	for _, m := range st.runs() {
		all++
		for _, f := range m.Files {
			if f.Key == key {
				listing++
			}
		}
	}
	return all, listing
}

// leaseState reads a batch's lease back from S3.
func (st *emuStack) leaseState(batchID string) string {
	st.t.Helper()
	out, err := st.direct.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(st.data), Key: aws.String(leaseKey(batchID))})
	require.NoError(st.t, err)
	defer out.Body.Close()
	var rec leaseRecord
	require.NoError(st.t, json.NewDecoder(out.Body).Decode(&rec))
	return rec.State
}

// holdGlueRuns keeps moto's Glue runs STARTING (they end at once by default), so
// that a job with MaxConcurrentRuns 1 refuses a second run, as Glue does while
// the first runs. The emulator is shared by this binary's tests: restored after.
func holdGlueRuns(t *testing.T) {
	t.Helper()
	awstest.RequireMoto(t, "moto's state manager holds Glue runs")
	post := func(path string, body any) {
		b, _ := json.Marshal(body)
		resp, err := http.Post(awstest.Endpoint(t)+"/moto-api/state-manager/"+path, "application/json", bytes.NewReader(b))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Less(t, resp.StatusCode, 300, path)
	}
	post("set-transition", map[string]any{"model_name": "glue::job_run", "transition": map[string]any{"progression": "manual", "times": 1_000_000}})
	t.Cleanup(func() { post("unset-transition", map[string]any{"model_name": "glue::job_run"}) })
}

var startCfg = Config{MaxFiles: 1, Window: time.Second, Lease: 20 * time.Second}

func TestAStartJobRunReplyLostAfterGlueActedStartsOneRun(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxRuns int32
	}{
		// The old batcher let the SDK retry: a second run of the same manifest.
		{"the job allows more runs", 10},
		// The SDK's retry was refused with ConcurrentRunsExceeded for the run its
		// first attempt started; the old batcher waited that run out, then ran the
		// manifest again (here, the run never ends: it waited forever).
		{"the job allows one run", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := awstest.NewFaults(t, awstest.Endpoint(t))
			st := newEmuStackRuns(t, f.Config(t), false, tc.maxRuns)
			if tc.maxRuns == 1 {
				holdGlueRuns(t)
			}
			b := st.batcher(startCfg)
			f.Add(awstest.Fault{Op: startOp, Drop: true, Times: 1})
			ev, _ := st.put("in/a.csv", "a\n")
			require.NoError(t, handle(t, b, ev), "the run started: the message is done")
			require.NoError(t, handle(t, b, ev), "a redelivery is acknowledged")
			require.Equal(t, 1, f.Hits(startOp))
			all, listing := st.runsOf("in/a.csv")
			require.Equal(t, 1, all, "one run")
			require.Equal(t, 1, listing)
		})
	}
}

// The reply is held back past the call's Lease/4 deadline: the old batcher took the
// timeout for a failure, abandoned the batch, and its redelivery ran the file again.
func TestAStartJobRunCutByItsDeadlineStartsOneRun(t *testing.T) {
	f := awstest.NewFaults(t, awstest.Endpoint(t))
	st := newEmuStack(t, f.Config(t), false)
	b := st.batcher(startCfg)
	f.Add(awstest.Fault{Op: startOp, Delay: startCfg.Lease/4 + 3*time.Second, Times: 1})
	ev, _ := st.put("in/a.csv", "a\n")
	require.NoError(t, handle(t, b, ev))
	require.NoError(t, handle(t, b, ev), "a redelivery is acknowledged")
	all, listing := st.runsOf("in/a.csv")
	require.Equal(t, 1, all)
	require.Equal(t, 1, listing)
}

// SIGTERM while StartJobRun is in flight: the stop cuts the request after Glue
// acted. The old batcher abandoned the batch; the next batcher took its file over
// and ran it again.
func TestAStopDuringStartJobRunStartsOneRun(t *testing.T) {
	c := stopDuringStart(t)
	require.NoError(t, c.err, "its run started: the message is done")

	b2 := c.st.batcher(startCfg)
	require.NoError(t, handle(t, b2, c.ev), "a redelivery to the next batcher is acknowledged")
	all, listing := c.st.runsOf("in/a.csv")
	require.Equal(t, 1, all)
	require.Equal(t, 1, listing)
}

// SIGTERM while StartJobRun is in flight and Glue's run history cannot be read
// either: the outcome is unknown, so the batch is neither abandoned nor reported
// START_FAILED; its lease is left to go stale, and the next batcher's taker asks
// Glue, finds the run, and acknowledges the file.
func TestAStartWhoseOutcomeGlueCannotTellIsLeftToItsTaker(t *testing.T) {
	c := stopDuringStart(t, awstest.Fault{Op: "glue:GetJobRuns", Drop: true})
	require.ErrorIs(t, c.err, errStartUnknown, "redelivered")
	runs := c.st.runs()
	require.Len(t, runs, 1, "Glue started it")
	for _, m := range runs {
		require.Equal(t, stateOpen, c.st.leaseState(m.BatchID), "not abandoned")
	}
	require.Empty(t, c.b.pub.(*fakePub).events[DetailError], "no START_FAILED for a run that may be going")

	c.f.Clear()
	b2 := c.st.batcher(startCfg)
	require.NoError(t, handle(t, b2, c.ev), "the taker finds the run once the lease is stale")
	for _, m := range runs {
		require.Equal(t, stateCommitted, c.st.leaseState(m.BatchID))
	}
	all, listing := c.st.runsOf("in/a.csv")
	require.Equal(t, 1, all)
	require.Equal(t, 1, listing)
}

package callback

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// slowSFN answers heartbeats only when their context ends, with the error the SDK
// gives then: a heartbeat still in flight when its job ends.
type slowSFN struct {
	fakeSFN
	started chan struct{}
}

func (f *slowSFN) SendTaskHeartbeat(ctx context.Context, _ *sfn.SendTaskHeartbeatInput, _ ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error) {
	f.started <- struct{}{}
	<-ctx.Done()
	return nil, &smithy.OperationError{ServiceID: "SFN", OperationName: "SendTaskHeartbeat", Err: &aws.RequestCanceledError{Err: ctx.Err()}}
}

// Issue 12 item 13: a heartbeat cancelled because its job ended counted as
// outcome "error", so the callbacks-failing alert fired on a healthy worker.
func TestACancelledHeartbeatIsNotAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.WarnLevel)
		f := &slowSFN{started: make(chan struct{}, 1)}
		m := NewMetrics(prometheus.NewRegistry())
		r := New(Config{DataBucket: "data"}, f, &fakeS3{puts: map[string][]byte{}}, zap.New(core), m)

		for _, end := range []string{"stop", "job context"} {
			ctx, cancel := context.WithCancel(context.Background())
			_, stop := r.KeepAlive(ctx, "tok", "", 50*time.Millisecond, nil)
			<-f.started // a heartbeat is in flight
			if end == "stop" {
				stop()
			} else {
				cancel()
				synctest.Wait()
				stop()
			}
			cancel()
		}
		require.Equal(t, 0.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskHeartbeat", "error")))
		require.Equal(t, 2.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskHeartbeat", "cancelled")))
		require.Zero(t, logs.Len(), "no warning")
	})
}

func TestADeadlineThatPassesIsStillAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &slowSFN{started: make(chan struct{}, 1)}
		m := NewMetrics(prometheus.NewRegistry())
		r := New(Config{DataBucket: "data"}, f, &fakeS3{puts: map[string][]byte{}}, zap.NewNop(), m)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.Error(t, r.Heartbeat(ctx, "tok"))
		require.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("SendTaskHeartbeat", "error")))
	})
}

// Issue 12 item 5: an output made by json.Marshal (each < written as \u003c) is
// sent as the same JSON without the escapes: 50 KB of < stays 50 KB, with no claim
// check, where it was a 300 KB claim check before.
func TestSucceedSendsHTMLCharactersUnescaped(t *testing.T) {
	t.Parallel()
	r, f, s3, m := setup(t, nil)
	want := map[string]string{"s": strings.Repeat("<", 50_000) + `&>\u003c"`}
	escaped, err := json.Marshal(want)
	require.NoError(t, err)
	require.Greater(t, len(escaped), 300_000)
	require.NoError(t, r.Succeed(context.Background(), "tok", escaped))
	require.Empty(t, s3.puts, "no claim check")
	require.Zero(t, testutil.ToFloat64(m.claimChecks))
	sent := aws.ToString(f.success[0].Output)
	require.Less(t, len(sent), 50_020)
	var got map[string]string
	require.NoError(t, json.Unmarshal([]byte(sent), &got))
	require.Equal(t, want, got)
}

func TestClaimCheckHoldsTheOutputUnescaped(t *testing.T) {
	t.Parallel()
	r, f, s3, _ := setup(t, nil)
	out, err := json.Marshal(map[string]string{"s": strings.Repeat("<&>", 100_000)})
	require.NoError(t, err)
	require.NoError(t, r.Succeed(context.Background(), "tok", out))
	require.Len(t, s3.puts, 1)
	for _, b := range s3.puts {
		require.Equal(t, 300_000+len(`{"s":""}`), len(b))
	}
	require.NotContains(t, aws.ToString(f.success[0].Output), `\u0026`)
}

// Issue 30: a heartbeat that finds the task closed for sure calls closed once and
// ends; moto's InvalidToken for a live task (its execution RUNNING) and transient
// errors never do.
var errTestClosed = errors.New("test: closed")

func TestKeepAliveTellsAClosedTaskFromALiveOne(t *testing.T) {
	const arn = "arn:aws:states:us-east-1:1:execution:sm:run"
	cases := map[string]struct {
		code        string
		status      sfntypes.ExecutionStatus
		describeErr error
		arn         string
		wantReason  string // "" : not closed
		wantBeats   int    // after 5 intervals
	}{
		"timed out":                          {code: "TaskTimedOut", arn: arn, wantReason: "TaskTimedOut", wantBeats: 1},
		"does not exist":                     {code: "TaskDoesNotExist", arn: arn, wantReason: "TaskDoesNotExist", wantBeats: 1},
		"invalid token, execution stopped":   {code: "InvalidToken", status: sfntypes.ExecutionStatusAborted, arn: arn, wantReason: "aborted", wantBeats: 1},
		"invalid token, execution timed out": {code: "InvalidToken", status: sfntypes.ExecutionStatusTimedOut, arn: arn, wantReason: "timed_out", wantBeats: 1},
		"invalid token, no execution":        {code: "InvalidToken", arn: arn, wantReason: "does_not_exist", wantBeats: 1},
		"invalid token, execution runs":      {code: "InvalidToken", status: sfntypes.ExecutionStatusRunning, arn: arn, wantBeats: 5},
		"invalid token, describe fails":      {code: "InvalidToken", describeErr: &smithy.GenericAPIError{Code: "ServiceUnavailable"}, arn: arn, wantBeats: 5},
		"invalid token, no arn to check":     {code: "InvalidToken", wantBeats: 1},
		"throttled":                          {code: "ThrottlingException", arn: arn, wantBeats: 5},
		"server error":                       {code: "InternalServerError", arn: arn, wantBeats: 5},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeSFN{err: &smithy.GenericAPIError{Code: tc.code}, status: tc.status, describeErr: tc.describeErr}
				r := New(Config{DataBucket: "data", AttemptTimeout: time.Second}, f, &fakeS3{puts: map[string][]byte{}}, zap.NewNop(), NewMetrics(prometheus.NewRegistry()))
				var reasons []error
				jctx, stop := r.KeepAlive(context.Background(), "tok", tc.arn, 10*time.Second, func(err error) error {
					reasons = append(reasons, err)
					return errors.Join(errTestClosed, err)
				})
				time.Sleep(55 * time.Second)
				synctest.Wait()
				if tc.wantReason != "" {
					require.ErrorIs(t, context.Cause(jctx), errTestClosed, "the job's context ends with the cause made of the reason")
				} else {
					require.NoError(t, jctx.Err(), "the job runs on")
				}
				stop()
				f.mu.Lock()
				defer f.mu.Unlock()
				if tc.code == "ThrottlingException" {
					// Throttles are waited out within the call: no second beat per tick
					// is counted here, only that nothing closed.
					require.Empty(t, reasons)
					return
				}
				require.Equal(t, tc.wantBeats, f.heartbeats)
				if tc.wantReason == "" {
					require.Empty(t, reasons, "a live task or a doubt never closes")
					return
				}
				require.Len(t, reasons, 1)
				var c *TaskClosedError
				require.ErrorAs(t, reasons[0], &c)
				require.True(t, c.Confirmed())
				require.Equal(t, tc.wantReason, c.ClosedReason())
			})
		})
	}
}

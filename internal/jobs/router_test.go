package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskbridge/taskbridge/deploy"
	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const execARN = "arn:aws:states:us-east-1:123456789012:execution:tb-cookies:run-1"

func envelope(detailType string, detail any) string {
	return envelopeAt(detailType, detail, time.Now())
}

func envelopeAt(detailType string, detail any, at time.Time) string {
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": "1", "detail-type": detailType, "source": "test", "time": at.UTC().Format(time.RFC3339),
		"region": "us-east-1", "resources": []string{}, "detail": detail,
	})
	return string(b)
}

// routerWith returns a Router with one queue "q" bound to job, and its reporter.
func routerWith(t *testing.T, job Job) (*Router, *fakeReporter, *Metrics) {
	t.Helper()
	rep := newFakeReporter()
	m := NewMetrics(prometheus.NewRegistry())
	r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: job.Name, DetailTypes: []string{"work"}}}},
		[]Job{job}, rep, noBeats{}, nil, zaptest.NewLogger(t), m)
	require.NoError(t, err)
	return r, rep, m
}

func TestRouterFates(t *testing.T) {
	t.Parallel()
	withToken := envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN})
	cases := []struct {
		name        string
		body        string
		run         func(context.Context, *Task) (any, error)
		mode        Mode
		last        bool
		reporterErr error
		outcome     string
		deadLetter  bool
		retry       bool
		failedCode  string
		succeeded   bool
	}{
		{name: "success completes the token", body: withToken, run: ok, outcome: "success", succeeded: true},
		{name: "a job that hands the token forward reports nothing", body: withToken, run: handsOff, outcome: "forwarded"},
		{name: "an observer never reports on the token", body: withToken, mode: Observe, run: ok, outcome: "success"},
		{name: "an observer's final failure does not fail another's token", body: withToken, mode: Observe, run: fails(Permanent("Broken", errors.New("x"))), outcome: "final_failure"},
		{name: "an observer's bad input is dead-lettered without a callback", body: withToken, mode: Observe, run: fails(invalidf("no name")), outcome: "dead_letter", deadLetter: true},
		{name: "an observer needs no token", body: envelope("work", map[string]any{"executionArn": execARN}), mode: Observe, run: ok, outcome: "success"},
		{name: "a refused token is dropped without a report", body: withToken, run: refused, outcome: "token_refused"},
		{name: "final failure fails the task and deletes", body: withToken, run: fails(Permanent("Broken", errors.New("x"))), outcome: "final_failure", failedCode: "job.Broken"},
		{name: "bad input fails the task and dead-letters", body: withToken, run: fails(invalidf("no name")), outcome: "dead_letter", deadLetter: true, failedCode: "job.InvalidInput"},
		{name: "transient error is retried", body: withToken, run: fails(errors.New("throttled")), outcome: "retry", retry: true},
		{name: "last attempt fails the task before the DLQ", body: withToken, run: fails(errors.New("throttled")), last: true, outcome: "dead_letter", deadLetter: true, failedCode: "job.RetriesExhausted"},
		{name: "panic fails the task and dead-letters", body: withToken, run: func(context.Context, *Task) (any, error) { panic("boom") }, outcome: "dead_letter", deadLetter: true, failedCode: "job.Panic"},
		{name: "closed task is a finished outcome", body: withToken, run: ok, reporterErr: closedErr{}, outcome: "task_closed"},
		{name: "reporter failure is retried", body: withToken, run: ok, reporterErr: errors.New("503"), outcome: "retry", retry: true},
		{name: "not JSON goes to the DLQ", body: "not JSON", run: ok, outcome: "dead_letter", deadLetter: true},
		{name: "no detail goes to the DLQ", body: `{"detail-type":"work","source":"s"}`, run: ok, outcome: "dead_letter", deadLetter: true},
		{name: "wrong detail type fails its token, DLQ", body: envelope("other", map[string]any{"TaskToken": "tok"}), run: ok, outcome: "dead_letter", deadLetter: true, failedCode: "job.InvalidInput"},
		{name: "missing token goes to the DLQ", body: envelope("work", map[string]any{"executionArn": execARN}), run: ok, outcome: "dead_letter", deadLetter: true},
		{name: "token in a malformed envelope is still failed", body: `{"detail-type":"work","detail":{"TaskToken":"tok"}}`, run: ok, outcome: "dead_letter", deadLetter: true, failedCode: "job.MalformedEvent"},
		{name: "oversized body goes to the DLQ", body: `{"detail-type":"work","source":"s","detail":{"x":"` + strings.Repeat("a", event.MaxBodyBytes) + `"}}`, run: ok, outcome: "dead_letter", deadLetter: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, rep, m := routerWith(t, Job{Name: "job", Mode: tc.mode, Run: tc.run})
			rep.err = tc.reporterErr
			msg := consumer.Message{ID: "m", Queue: "q", Body: tc.body, ReceiveCount: 1, MaxReceiveCount: 5}
			if tc.last {
				msg.ReceiveCount = 5
			}
			err := r.Handle(context.Background(), msg)
			require.Equal(t, tc.deadLetter, consumer.IsDeadLetter(err), "dead letter? err=%v", err)
			require.Equal(t, tc.retry, err != nil && !consumer.IsDeadLetter(err), "retry? err=%v", err)
			require.Equal(t, 1.0, testutil.ToFloat64(m.jobs.WithLabelValues("job", tc.outcome)))
			if tc.reporterErr == nil {
				require.Equal(t, tc.failedCode, rep.failed["tok"])
				_, succeeded := rep.succeeded["tok"]
				require.Equal(t, tc.succeeded, succeeded)
			}
		})
	}
}

func TestUnknownJobInARouteIsAStartupError(t *testing.T) {
	t.Parallel()
	_, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "nope"}}}, nil, newFakeReporter(), noBeats{}, nil, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.ErrorContains(t, err, `unknown job "nope"`)
}

func ok(context.Context, *Task) (any, error) { return map[string]int{"n": 1}, nil }

func fails(err error) func(context.Context, *Task) (any, error) {
	return func(context.Context, *Task) (any, error) { return nil, err }
}

func handsOff(ctx context.Context, t *Task) (any, error) {
	t.handedOff.Store(true) // as HandOff does after publishing
	return nil, nil
}

func refused(context.Context, *Task) (any, error) {
	return nil, &tokenRefused{err: closedErr{}}
}

// FuzzRouterHandle: any body ends in exactly one fate, and never a panic.
func FuzzRouterHandle(f *testing.F) {
	f.Add(envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN, "name": "a", "index": 0}))
	f.Add(envelope("work", map[string]any{"TaskToken": 5}))
	f.Add(`{"detail-type":"work","source":"s","detail":{"TaskToken":"t","index":-1,"name":null}}`)
	f.Add("")
	f.Fuzz(func(t *testing.T, body string) {
		rep := newFakeReporter()
		jobs := []Job{
			{Name: "complete", Run: ok}, {Name: "observe", Mode: Observe, Run: ok}, Finisher(),
			{Name: "decode", Run: func(_ context.Context, t *Task) (any, error) {
				var v struct{ Name string }
				return v, t.Decode(&v)
			}},
		}
		routes := map[string]Route{}
		for _, j := range jobs {
			routes[j.Name] = Route{Job: j.Name, DetailTypes: []string{"work"}}
		}
		r, err := NewRouter(RouterConfig{Routes: routes}, jobs, rep, noBeats{}, nil, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
		if err != nil {
			t.Fatal(err)
		}
		for q := range routes {
			_ = r.Handle(context.Background(), consumer.Message{ID: "m", Queue: q, Body: body, ReceiveCount: 1})
		}
	})
}

// BenchmarkRouterHandle is decode + route + report for one message, with a no-op job.
func BenchmarkRouterHandle(b *testing.B) {
	rep := newFakeReporter()
	r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "job", DetailTypes: []string{"work"}}}},
		[]Job{{Name: "job", Run: ok}}, rep, noBeats{}, nil, zap.NewNop(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	msg := consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN}), ReceiveCount: 1}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Handle(context.Background(), msg); err != nil {
			b.Fatal(err)
		}
	}
}

// A job that outlives its deadline on the last receive: the failure is reported on a
// context of its own (the job's has ended), promptly, naming the job.
func TestTimeoutOnTheLastReceiveIsReportedAfterTheDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stubborn := func(context.Context, *Task) (any, error) { <-release; return nil, nil } // ignores ctx
	r, rep, _ := routerWith(t, Job{Name: "job", Run: stubborn})
	rep.needsLiveCtx = true
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	msg := consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"TaskToken": "tok"}), ReceiveCount: 5, MaxReceiveCount: 5}
	err := r.Handle(ctx, msg)
	require.True(t, consumer.IsDeadLetter(err), "%v", err)
	require.Equal(t, "job.Timeout", rep.failed["tok"])
}

// When the consumer takes a message back (shutdown), the job's error is not its
// failure: no report, even on the last receive.
func TestCancelledJobIsReleasedWithoutAReport(t *testing.T) {
	t.Parallel()
	r, rep, m := routerWith(t, Job{Name: "job", Run: func(ctx context.Context, _ *Task) (any, error) { <-ctx.Done(); return nil, ctx.Err() }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msg := consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"TaskToken": "tok"}), ReceiveCount: 5, MaxReceiveCount: 5}
	err := r.Handle(ctx, msg)
	require.Error(t, err)
	require.False(t, consumer.IsDeadLetter(err))
	require.Empty(t, rep.failed)
	require.Equal(t, 1.0, testutil.ToFloat64(m.jobs.WithLabelValues("job", "released")))
}

func TestHandOffAddsTheTokenAndExecution(t *testing.T) {
	t.Parallel()
	pub := &recordingPublisher{}
	task := &Task{Token: "tok", ExecutionArn: execARN, env: &taskEnv{publish: pub}}
	require.NoError(t, task.HandOff(context.Background(), "next", map[string]any{"x": "<&>"}))
	require.True(t, task.HandedOff())
	require.Equal(t, "next", pub.detailType)
	require.JSONEq(t, `{"x":"<&>","TaskToken":"tok","executionArn":"`+execARN+`"}`, string(pub.detail))
	require.Contains(t, string(pub.detail), "<&>", "not HTML-escaped")

	require.Error(t, task.HandOff(context.Background(), "next", []int{1}), "a detail must be an object")
	require.Error(t, (&Task{env: &taskEnv{publish: pub}}).HandOff(context.Background(), "next", map[string]any{}), "no token to hand on")
}

func TestDetailWithoutToken(t *testing.T) {
	t.Parallel()
	task := &Task{Detail: json.RawMessage(`{"TaskToken":"secret","a":"<b>"}`)}
	out, err := task.DetailWithoutToken()
	require.NoError(t, err)
	require.JSONEq(t, `{"a":"<b>"}`, string(out))
	require.NotContains(t, string(out), "secret")
	require.NotContains(t, string(out), `\u003c`)
}

func TestExecutionName(t *testing.T) {
	t.Parallel()
	name, err := ExecutionName(execARN)
	require.NoError(t, err)
	require.Equal(t, "run-1", name)
	for _, bad := range []string{"", "arn:aws:s3:::bucket", "arn:aws:states:r:a:execution:sm:", "arn:aws:states:r:a:execution:sm:..",
		"arn:aws:states:r:a:stateMachine:sm", "arn:aws:states:r:a:execution:sm:manifests", "arn:aws:states:r:a:execution:sm:results",
		"arn:aws:states:r:a:execution:sm:claim-checks", "arn:aws:states:r:a:execution:sm:a\tb", "arn:aws:states:r:a:execution:sm:a\u0085b"} {
		_, err := ExecutionName(bad)
		require.Error(t, err, bad)
	}
	// Every reserved folder of the data bucket, claims (the batcher's, which a
	// lifecycle rule expires) among them.
	require.Contains(t, deploy.ReservedFolders(), "claims")
	for _, folder := range deploy.ReservedFolders() {
		_, err := ExecutionName("arn:aws:states:r:a:execution:sm:" + folder)
		require.ErrorContains(t, err, "one of the worker's own folders", folder)
	}
}

type recordingPublisher struct {
	detailType string
	detail     []byte
}

func (p *recordingPublisher) Publish(_ context.Context, detailType string, detail any) error {
	b, err := awsjson.Marshal(detail)
	p.detailType, p.detail = detailType, b
	return err
}

// A detail nested 100,000 levels deep cannot be parsed, but its token can be read:
// the task fails instead of waiting for its timeout.
func TestDeeplyNestedDetailStillFailsItsToken(t *testing.T) {
	t.Parallel()
	r, rep, _ := routerWith(t, Job{Name: "job", Run: ok})
	body := `{"detail-type":"work","source":"s","detail":{"TaskToken":"tok","x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}}`
	err := r.Handle(context.Background(), consumer.Message{ID: "m", Queue: "q", Body: body, ReceiveCount: 1, MaxReceiveCount: 5})
	require.True(t, consumer.IsDeadLetter(err), "%v", err)
	require.Equal(t, "job.MalformedEvent", rep.failed["tok"])
}

// An event a job puts that can never fit on the bus fails the task at once.
func TestEventTooLargeIsFinal(t *testing.T) {
	t.Parallel()
	r, rep, _ := routerWith(t, Job{Name: "job", Run: fails(fmt.Errorf("publish: %w", event.ErrTooLarge))})
	err := r.Handle(context.Background(), consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"TaskToken": "tok"}), ReceiveCount: 1, MaxReceiveCount: 5})
	require.NoError(t, err, "deleted, not retried")
	require.Equal(t, "job.EventTooLarge", rep.failed["tok"])
}

// BenchmarkRouterHandleObserve is the worker's path for an event a job only
// observes, as bench-peers' worker runs it: decode, route, metrics and one JSON log
// line at info (written to nowhere, with the production logger's options).
func BenchmarkRouterHandleObserve(b *testing.B) {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel), zap.AddCaller())
	noop := Job{Name: "noop", Mode: Observe, Run: func(context.Context, *Task) (any, error) { return nil, nil }}
	r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "noop", DetailTypes: []string{"work"}}}},
		[]Job{noop}, nil, nil, nil, log, NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	msg := consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"n": 1234}), ReceiveCount: 1}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Handle(context.Background(), msg); err != nil {
			b.Fatal(err)
		}
	}
}

// slowReporter answers Succeed after wait (a report waiting Step Functions'
// throttling out), or with its context's error if that ends first.
type slowReporter struct {
	fakeReporter
	wait time.Duration
}

func (s *slowReporter) Succeed(ctx context.Context, token string, output []byte) error {
	select {
	case <-time.After(s.wait):
		return s.fakeReporter.Succeed(ctx, token, output)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A report outlives the job's deadline and may wait throttling out for up to
// ReportTimeout; only the consumer's cancel (drain timeout) ends it early.
func TestReportWaitsThrottlingOutUntilCancelled(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		wait        time.Duration // how long the report is throttled
		deadline    time.Duration // the job's
		cancelAfter time.Duration // the consumer cancels the handler (0: never)
		outcome     string
	}{
		"past the job's deadline":            {wait: 2 * time.Minute, deadline: time.Minute, outcome: "success"},
		"for much longer than one attempt":   {wait: 14 * time.Minute, deadline: 5 * time.Minute, outcome: "success"},
		"not past ReportTimeout":             {wait: 20 * time.Minute, deadline: 5 * time.Minute, outcome: "retry"},
		"ended by the consumer's cancel":     {wait: 10 * time.Minute, deadline: 5 * time.Minute, cancelAfter: time.Minute, outcome: "retry"},
		"cancelled after the job's deadline": {wait: 10 * time.Minute, deadline: time.Second, cancelAfter: time.Minute, outcome: "success"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				rep := &slowReporter{fakeReporter: *newFakeReporter(), wait: tc.wait}
				m := NewMetrics(prometheus.NewRegistry())
				r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "job", DetailTypes: []string{"work"}}}},
					[]Job{{Name: "job", Run: ok}}, rep, noBeats{}, nil, zaptest.NewLogger(t), m)
				require.NoError(t, err)
				ctx, cancel := context.WithTimeout(t.Context(), tc.deadline)
				defer cancel()
				if tc.cancelAfter > 0 {
					time.AfterFunc(tc.cancelAfter, cancel)
				}
				msg := consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"TaskToken": "tok"}), ReceiveCount: 1, MaxReceiveCount: 5}
				began := time.Now()
				err = r.Handle(ctx, msg)
				require.Equal(t, 1.0, testutil.ToFloat64(m.jobs.WithLabelValues("job", tc.outcome)), "err=%v", err)
				_, reported := rep.succeeded["tok"]
				require.Equal(t, tc.outcome == "success", reported)
				if tc.outcome == "retry" {
					require.Error(t, err)
					require.LessOrEqual(t, time.Since(began), DefaultReportTimeout, "bounded by ReportTimeout")
				}
			})
		})
	}
}

// A handled message's JSON line has each key once and no empty value: an event
// without an execution or a token leaves those fields out.
func TestLogLineHasNoEmptyOrRepeatedFields(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.InfoLevel))
	r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "job", DetailTypes: []string{"work"}}}},
		[]Job{{Name: "job", Mode: Observe, Run: ok}}, newFakeReporter(), noBeats{}, nil, log.With(zap.String("version", "v")), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	require.NoError(t, r.Handle(context.Background(), consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"x": 1}), ReceiveCount: 1}))
	line := strings.TrimSpace(buf.String())
	dec := json.NewDecoder(strings.NewReader(line))
	seen := map[string]bool{}
	_, err = dec.Token() // {
	require.NoError(t, err)
	for dec.More() {
		key, err := dec.Token()
		require.NoError(t, err)
		require.False(t, seen[key.(string)], "key %v twice in %s", key, line)
		seen[key.(string)] = true
		var v any
		require.NoError(t, dec.Decode(&v))
		require.NotEqual(t, "", v, "empty %v in %s", key, line)
	}
	require.NotContains(t, seen, "execution_arn")
	require.NotContains(t, seen, "token_hash")
}

// A job that ignores the end of its context is given up on after giveUpAfter: the
// message is settled without it, and the goroutine left running is counted while it
// runs and logged once, with its queue and job, never with the token.
func TestAJobThatIgnoresItsContextIsCountedAndLogged(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		stubborn := func(context.Context, *Task) (any, error) { <-release; return nil, nil } // ignores ctx
		core, logs := observer.New(zap.DebugLevel)
		m := NewMetrics(prometheus.NewRegistry())
		r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "job", DetailTypes: []string{"work"}}}},
			[]Job{{Name: "job", Run: stubborn}}, newFakeReporter(), noBeats{}, nil, zap.New(core), m)
		require.NoError(t, err)
		abandoned, running := m.abandoned.WithLabelValues("job"), m.lingering.WithLabelValues("job")

		const token = "secret-task-token"
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the consumer took the message back
		msg := consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"TaskToken": token})}
		err = r.Handle(ctx, msg)
		require.ErrorContains(t, err, "job job still running")
		require.Equal(t, 1.0, testutil.ToFloat64(abandoned))
		require.Equal(t, 1.0, testutil.ToFloat64(running), "still running")
		leaks := logs.FilterMessage("job still running after its context ended; no longer waited for").All()
		require.Len(t, leaks, 1, "logged once")
		fields := leaks[0].ContextMap()
		require.Equal(t, "q", fields["queue"])
		require.Equal(t, "job", fields["job"])
		require.Equal(t, zapcore.WarnLevel, leaks[0].Level)
		for _, e := range logs.All() {
			require.NotContains(t, fmt.Sprint(e.Message, e.ContextMap()), token)
		}

		close(release)
		synctest.Wait() // the job returns, its goroutine ends
		require.Equal(t, 0.0, testutil.ToFloat64(running), "ended")
		require.Equal(t, 1.0, testutil.ToFloat64(abandoned), "a counter of give-ups")
	})
}

// A job that returns within giveUpAfter of its context's end is waited for: nothing
// is abandoned.
func TestAJobThatWatchesItsContextIsNotAbandoned(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r, _, m := routerWith(t, Job{Name: "job", Run: func(ctx context.Context, _ *Task) (any, error) { <-ctx.Done(); return nil, ctx.Err() }})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := r.Handle(ctx, consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"TaskToken": "tok"})})
		require.ErrorIs(t, err, context.Canceled)
		require.NotContains(t, err.Error(), "still running")
		require.Equal(t, 0.0, testutil.ToFloat64(m.abandoned.WithLabelValues("job")))
		require.Equal(t, 0.0, testutil.ToFloat64(m.lingering.WithLabelValues("job")))
	})
}

type noteRecorder struct {
	mu    sync.Mutex
	notes []string // executionArn|job|code|cause
}

func (n *noteRecorder) NoteFailure(_ context.Context, arn, job, code, cause string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notes = append(n.notes, arn+"|"+job+"|"+code+"|"+cause)
	return nil
}

// A failure reported with a live token is noted for its execution (what `worker
// start --wait` shows where the endpoint keeps no cause), token redacted; a
// failure that could not be reported, or of an event without executionArn, is not.
func TestReportedFailuresAreNoted(t *testing.T) {
	t.Parallel()
	const token = "AQB4AAAAsecret-token-of-a-task/+=="
	for name, tc := range map[string]struct {
		detail    map[string]any
		reportErr error
		want      []string
	}{
		"noted":          {detail: map[string]any{"TaskToken": token, "executionArn": execARN}, want: []string{execARN + "|job|job.Exit3|Exit3: exited 3: <redacted token " + telemetry.TokenHash(token) + ">"}},
		"no execution":   {detail: map[string]any{"TaskToken": token}},
		"report refused": {detail: map[string]any{"TaskToken": token, "executionArn": execARN}, reportErr: errors.New("throttled")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rep := newFakeReporter()
			rep.err = tc.reportErr
			notes := &noteRecorder{}
			job := Job{Name: "job", Run: fails(Permanent("Exit3", errors.New("exited 3: "+token)))}
			r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "job", DetailTypes: []string{"work"}}}, FailureNotes: notes},
				[]Job{job}, rep, noBeats{}, nil, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
			require.NoError(t, err)
			_ = r.Handle(context.Background(), consumer.Message{ID: "m", Queue: "q", Body: envelope("work", tc.detail), ReceiveCount: 1})
			require.Equal(t, tc.want, notes.notes)
		})
	}
}

// The router times a message from when the consumer started its handler
// (consumer.Message.Started), without reading the clock for it again, and dates
// its line with the clock read that ended it.
func TestDurationCountsFromTheHandlersStart(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.InfoLevel)
		m := NewMetrics(prometheus.NewRegistry())
		noop := Job{Name: "noop", Mode: Observe, Run: func(context.Context, *Task) (any, error) { return nil, nil }}
		r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "noop", DetailTypes: []string{"work"}}}},
			[]Job{noop}, nil, nil, nil, zap.New(core), m)
		require.NoError(t, err)
		msg := consumer.Message{ID: "m", Queue: "q", Body: envelope("work", map[string]any{"n": 1}), ReceiveCount: 1, Started: time.Now().Add(-3 * time.Second)}
		require.NoError(t, r.Handle(context.Background(), msg))
		lines := logs.FilterMessage("message handled").All()
		require.Len(t, lines, 1)
		require.Equal(t, 3*time.Second, lines[0].ContextMap()["duration"])
		require.True(t, lines[0].Time.Equal(time.Now()), "the line is dated when it is written: %v", lines[0].Time)
		require.Equal(t, 1, testutil.CollectAndCount(m.duration, "worker_job_duration_seconds"))
	})
}

// A job call whose goroutine was abandoned keeps its own hand-back: the calls after
// it get their own results, and the abandoned one ends on its own.
func TestCallsAfterAnAbandonedOneGetTheirOwnResults(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		m := NewMetrics(prometheus.NewRegistry())
		echo := func(ctx context.Context, t *Task) (any, error) {
			if t.MessageID == "stuck" {
				<-release // ignores ctx
				return "late", nil
			}
			return t.MessageID, nil
		}
		r, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "echo", DetailTypes: []string{"work"}}}},
			[]Job{{Name: "echo", Mode: Observe, Run: echo}}, nil, nil, nil, zaptest.NewLogger(t), m)
		require.NoError(t, err)
		job := r.jobs["echo"]
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = r.call(ctx, job, &Task{Queue: "q", MessageID: "stuck"})
		require.ErrorContains(t, err, "still running")
		for _, id := range []string{"a", "b", "c"} {
			out, err := r.call(context.Background(), job, &Task{Queue: "q", MessageID: id})
			require.NoError(t, err)
			require.Equal(t, id, out)
		}
		close(release)
		synctest.Wait()
		require.Equal(t, 0.0, testutil.ToFloat64(m.lingering.WithLabelValues("echo")), "the abandoned goroutine ended")
	})
}

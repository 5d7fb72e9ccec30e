package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const execARN = "arn:aws:states:us-east-1:123456789012:execution:tb-cookies:run-1"

func envelope(detailType string, detail any) string {
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": "1", "detail-type": detailType, "source": "test", "time": time.Now().UTC().Format(time.RFC3339),
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
		[]Job{job}, rep, noBeats{}, zaptest.NewLogger(t), m)
	require.NoError(t, err)
	return r, rep, m
}

func TestRouterFates(t *testing.T) {
	t.Parallel()
	withToken := envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN})
	cases := []struct {
		name        string
		body        string
		run         func(context.Context, Task) (any, error)
		completes   bool
		last        bool
		reporterErr error
		outcome     string
		deadLetter  bool
		retry       bool
		failedCode  string
		succeeded   bool
	}{
		{name: "success completes the token", body: withToken, completes: true, run: ok, outcome: "success", succeeded: true},
		{name: "forwarding job reports nothing", body: withToken, run: ok, outcome: "forwarded"},
		{name: "final failure fails the task and deletes", body: withToken, run: fails(Permanent("Broken", errors.New("x"))), outcome: "final_failure", failedCode: "job.Broken"},
		{name: "bad input fails the task and dead-letters", body: withToken, run: fails(invalidf("no name")), outcome: "dead_letter", deadLetter: true, failedCode: "job.InvalidInput"},
		{name: "transient error is retried", body: withToken, run: fails(errors.New("throttled")), outcome: "retry", retry: true},
		{name: "last attempt fails the task before the DLQ", body: withToken, run: fails(errors.New("throttled")), last: true, outcome: "dead_letter", deadLetter: true, failedCode: "job.RetriesExhausted"},
		{name: "panic fails the task and dead-letters", body: withToken, run: func(context.Context, Task) (any, error) { panic("boom") }, outcome: "dead_letter", deadLetter: true, failedCode: "job.Panic"},
		{name: "closed task is a finished outcome", body: withToken, completes: true, run: ok, reporterErr: closedErr{}, outcome: "task_closed"},
		{name: "reporter failure is retried", body: withToken, completes: true, run: ok, reporterErr: errors.New("503"), outcome: "retry", retry: true},
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
			r, rep, m := routerWith(t, Job{Name: "job", NeedsToken: true, Completes: tc.completes, Run: tc.run})
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
	_, err := NewRouter(RouterConfig{Routes: map[string]Route{"q": {Job: "nope"}}}, nil, newFakeReporter(), noBeats{}, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.ErrorContains(t, err, `unknown job "nope"`)
}

func ok(context.Context, Task) (any, error) { return map[string]int{"n": 1}, nil }

func fails(err error) func(context.Context, Task) (any, error) {
	return func(context.Context, Task) (any, error) { return nil, err }
}

// FuzzRouterHandle: any body ends in exactly one fate, and never a panic.
func FuzzRouterHandle(f *testing.F) {
	f.Add(envelope("work", map[string]any{"TaskToken": "tok", "executionArn": execARN, "name": "a", "index": 0}))
	f.Add(envelope("work", map[string]any{"TaskToken": 5}))
	f.Add(`{"detail-type":"work","source":"s","detail":{"TaskToken":"t","index":-1,"name":null}}`)
	f.Add("")
	f.Fuzz(func(t *testing.T, body string) {
		s3 := newMemS3()
		c := NewCookies(CookiesConfig{DataBucket: "data"}, s3, memPresigner{}, &memPublisher{}, memFetcher{s3})
		rep := newFakeReporter()
		routes := map[string]Route{}
		for _, j := range c.Jobs() {
			routes[j.Name] = Route{Job: j.Name, DetailTypes: []string{"work"}}
		}
		r, err := NewRouter(RouterConfig{Routes: routes}, c.Jobs(), rep, noBeats{}, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
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
		[]Job{{Name: "job", NeedsToken: true, Completes: true, Run: ok}}, rep, noBeats{}, zap.NewNop(), NewMetrics(prometheus.NewRegistry()))
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

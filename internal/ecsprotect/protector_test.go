package ecsprotect

import (
	"context"
	"net/http"
	"net/http/httptest"
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
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskbridge/taskbridge/internal/ecsagenttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// inProcess serves requests with h in the calling goroutine: no sockets, so the
// Protector's calls run inside a synctest bubble.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

type bundle struct {
	p       *Protector
	agent   *ecsagenttest.Agent
	metrics *Metrics
	stop    func() // cancels Run and waits for it
}

// setup runs a Protector of task "t1" against an in-process stand-in agent; call it
// inside a synctest bubble.
func setup(t *testing.T, cfg Config) bundle {
	t.Helper()
	a := ecsagenttest.New()
	cfg.AgentURI = ecsagenttest.URI("http://agent.invalid", "t1")
	cfg.Client = &http.Client{Transport: inProcess{a}}
	m := NewMetrics(prometheus.NewRegistry())
	p, err := New(cfg, zaptest.NewLogger(t), m)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, p.Run(ctx)) })
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return bundle{p: p, agent: a, metrics: m, stop: stop}
}

func enables(us []ecsagenttest.Update) (on, off int) {
	for _, u := range us {
		if u.Enabled {
			on++
		} else {
			off++
		}
	}
	return on, off
}

func TestWithoutAgentURIDoesNothing(t *testing.T) {
	t.Parallel()
	p, err := New(Config{}, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	require.Nil(t, p)
	p.Begin(3)
	p.End(3)
	require.NoError(t, p.Run(t.Context()), "a nil Protector's Run returns at once")
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		// Minutes' range is config's to check (WORKER_TASK_PROTECTION_MINUTES).
		"negative grace":  {AgentURI: "http://169.254.170.2/api/x", Grace: -time.Second},
		"not an http URL": {AgentURI: "169.254.170.2/api/x"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := New(cfg, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
			require.Error(t, err)
		})
	}
}

func TestProtectsWhileBusyAndDropsAfterGrace(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{Minutes: 10, Grace: 5 * time.Second})
		synctest.Wait()
		require.False(t, b.agent.Protected("t1"), "idle at start: nothing asked")
		require.Empty(t, b.agent.Updates())

		b.p.Begin(2)
		synctest.Wait()
		require.True(t, b.agent.Protected("t1"))
		require.Equal(t, 10, b.agent.Updates()[0].Minutes)
		require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.held))

		b.p.End(1)
		time.Sleep(time.Minute)
		synctest.Wait()
		require.True(t, b.agent.Protected("t1"), "one piece of work is still in hand")

		b.p.End(1)
		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		require.True(t, b.agent.Protected("t1"), "kept during the grace")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		require.False(t, b.agent.Protected("t1"), "dropped after the grace")
		require.Equal(t, 0.0, testutil.ToFloat64(b.metrics.held))
		on, off := enables(b.agent.Updates())
		require.Equal(t, [2]int{1, 1}, [2]int{on, off})
	})
}

func TestShortJobsWithinGraceKeepOneProtection(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{Grace: 5 * time.Second})
		for range 100 {
			b.p.Begin(1)
			time.Sleep(time.Second)
			b.p.End(1)
			time.Sleep(time.Second)
		}
		synctest.Wait()
		require.True(t, b.agent.Protected("t1"))
		on, off := enables(b.agent.Updates())
		require.Equal(t, [2]int{1, 0}, [2]int{on, off}, "no toggling per job")
	})
}

func TestRenewsBeforeExpiry(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{Minutes: 10})
		b.p.Begin(1)
		for range 7 { // 70 minutes of one long job, checked every 10
			time.Sleep(10 * time.Minute)
			synctest.Wait()
			require.True(t, b.agent.Protected("t1"), "a job longer than Minutes stays protected")
		}
		on, _ := enables(b.agent.Updates())
		require.Equal(t, 15, on, "enabled at 0, renewed every 5 minutes up to 70")
		require.Equal(t, 14.0, testutil.ToFloat64(b.metrics.updates.WithLabelValues("renew", "ok")))
	})
}

func TestAgentErrorsAreRetriedWithoutBlocking(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{})
		b.agent.FailNext(ecsagenttest.FaultFailure, ecsagenttest.FaultServerError)
		b.p.Begin(1) // returns at once whatever the agent does
		synctest.Wait()
		require.False(t, b.agent.Protected("t1"))
		require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.updates.WithLabelValues("enable", "error")), "a 200 with a failure is a failure")
		require.Equal(t, 0.0, testutil.ToFloat64(b.metrics.held))

		time.Sleep(retryMax)
		synctest.Wait()
		require.True(t, b.agent.Protected("t1"), "retried until the agent took it")
		require.Equal(t, 2.0, testutil.ToFloat64(b.metrics.updates.WithLabelValues("enable", "error")))
		require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.updates.WithLabelValues("enable", "ok")))
		require.Equal(t, 1.0, testutil.ToFloat64(b.metrics.held))
		b.p.End(1)
	})
}

// Issue 27 item 8: ECS's permanent refusal (TASK_NOT_VALID: a task protection does
// not apply to) is not retried forever: after a few in a row the process stops
// asking, says so once at error, and the stop still returns.
func TestPermanentRefusalsStopAfterABoundedNumber(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a := ecsagenttest.New()
		a.FailNext(ecsagenttest.FaultServerError) // a fault first: not a refusal, not counted
		for range 50 {
			a.FailNext(ecsagenttest.FaultFailure)
		}
		core, logs := observer.New(zap.InfoLevel)
		m := NewMetrics(prometheus.NewRegistry())
		p, err := New(Config{AgentURI: ecsagenttest.URI("http://agent.invalid", "t1"), Client: &http.Client{Transport: inProcess{a}}}, zap.New(core), m)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()

		p.Begin(1)
		time.Sleep(time.Hour)
		synctest.Wait()
		require.Equal(t, 1+maxPermanentRefusals, a.Refused(), "the fault, then a bounded number of refusals")
		require.Equal(t, 1.0, testutil.ToFloat64(m.disabled))
		require.Equal(t, 0.0, testutil.ToFloat64(m.held))
		require.Len(t, logs.FilterLevelExact(zap.ErrorLevel).All(), 1, "said once, at error")
		require.Contains(t, logs.FilterLevelExact(zap.ErrorLevel).All()[0].Message, "refuses task scale-in protection")

		p.End(1)
		p.Begin(1) // more work later asks nothing
		time.Sleep(time.Hour)
		synctest.Wait()
		require.Equal(t, 1+maxPermanentRefusals, a.Refused())
		require.Empty(t, a.Updates())
		cancel()
		require.NoError(t, <-done)
	})
}

func TestStopDropsProtection(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{})
		b.p.Begin(1)
		synctest.Wait()
		require.True(t, b.agent.Protected("t1"))
		b.stop() // a SIGTERM while a job runs
		require.False(t, b.agent.Protected("t1"))
		b.p.Begin(1) // the consumer still settles its messages after the stop
		b.p.End(2)
		synctest.Wait()
		require.False(t, b.agent.Protected("t1"), "nothing renews after the stop")
	})
}

func TestIdleStopCallsNothing(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := setup(t, Config{})
		b.stop()
		require.Empty(t, b.agent.Updates())
		require.Zero(t, b.agent.Refused())
	})
}

// TestDefaultClientHasItsOwnTimeout: the agent is called with a client of the
// Protector's own, bounded, not http.DefaultClient.
func TestDefaultClientHasItsOwnTimeout(t *testing.T) {
	t.Parallel()
	p, err := New(Config{AgentURI: "http://169.254.170.2/api/x"}, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	require.NotSame(t, http.DefaultClient, p.cfg.Client)
	require.Equal(t, callTimeout, p.cfg.Client.Timeout)
}

// TestOverHTTP runs the Protector against the stand-in on a real socket.
func TestOverHTTP(t *testing.T) {
	t.Parallel()
	a := ecsagenttest.New()
	srv := httptest.NewServer(a)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	p, err := New(Config{AgentURI: ecsagenttest.URI(srv.URL, "task-a"), Grace: time.Millisecond, Client: &http.Client{Transport: tr}},
		zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, p.Run(ctx)) })
	defer func() { cancel(); wg.Wait() }()

	p.Begin(1)
	require.Eventually(t, func() bool { return a.Protected("task-a") }, 10*time.Second, 5*time.Millisecond)
	p.End(1)
	require.Eventually(t, func() bool { return !a.Protected("task-a") }, 10*time.Second, 5*time.Millisecond)
	require.Zero(t, a.Refused())
}

func TestPutReadsEveryAnswerShape(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		code int
		body string
		ok   bool
	}{
		"protection":           {200, `{"protection":{"ExpirationDate":"2026-12-05T15:00:00Z","ProtectionEnabled":true,"TaskArn":"arn:x"}}`, true},
		"failure with 200":     {200, `{"failure":{"Arn":"arn:x","Detail":null,"Reason":"TASK_NOT_VALID"}}`, false},
		"error":                {400, `{"error":{"Arn":"arn:x","Code":"InvalidParameterException","Message":"bad"}}`, false},
		"access denied":        {200, `{"error":{"Code":"AccessDeniedException","Message":"not authorized"}}`, false},
		"server fault no body": {503, ``, false},
		"not JSON":             {200, `<html>`, false},
		"empty object":         {200, `{}`, false},
		"not what was asked":   {200, `{"protection":{"ProtectionEnabled":false}}`, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.code)
				_, _ = w.Write([]byte(tc.body))
			})
			err := agent{url: "http://agent.invalid/state", client: &http.Client{Transport: inProcess{h}}}.put(t.Context(), true, 5)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func TestStandInRefusesWhatTheAgentRefuses(t *testing.T) {
	t.Parallel()
	a := ecsagenttest.New()
	put := func(minutes int) error {
		return agent{url: "http://agent.invalid/t1" + statePath, client: &http.Client{Transport: inProcess{a}}}.put(t.Context(), true, minutes)
	}
	require.Error(t, put(0))
	require.Error(t, put(2881))
	require.NoError(t, put(2880))
	for _, body := range []string{`{}`, `{"ExpiresInMinutes":5}`, `not json`} {
		req := httptest.NewRequest(http.MethodPut, "/t1"+statePath, strings.NewReader(body))
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		require.Equal(t, http.StatusBadRequest, rec.Code, body)
		require.Contains(t, rec.Body.String(), `"error"`)
	}
	require.Equal(t, 5, a.Refused())
}

// FuzzPutAnswer: whatever the agent answers, put returns (no panic), and nil only
// for a protection in the state asked for.
func FuzzPutAnswer(f *testing.F) {
	f.Add(200, `{"protection":{"ProtectionEnabled":true}}`)
	f.Add(200, `{"failure":{"Reason":"TASK_NOT_VALID"}}`)
	f.Add(400, `{"error":{"Code":"InvalidParameterException"}}`)
	f.Add(200, `{"protection":null,"failure":null}`)
	f.Fuzz(func(t *testing.T, code int, body string) {
		if code < 100 || code > 999 {
			return
		}
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		})
		err := agent{url: "http://agent.invalid/state", client: &http.Client{Transport: inProcess{h}}}.put(t.Context(), true, 5)
		if err == nil && (code != 200 || !strings.Contains(body, "ProtectionEnabled")) {
			t.Fatalf("accepted HTTP %d %q", code, body)
		}
	})
}

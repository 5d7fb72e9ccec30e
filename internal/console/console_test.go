package console

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
	"github.com/taskbridge/taskbridge/internal/awstest"

	"github.com/taskbridge/taskbridge/internal/dlq"
)

func TestMain(m *testing.M) { awstest.Main(m) } // the emulator for the benchmark; goleak

func TestConfigRefusesOtherHostsWithoutAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"loopback v4", Config{Addr: "127.0.0.1:8080"}, ""},
		{"localhost", Config{Addr: "localhost:8080"}, ""},
		{"loopback v6", Config{Addr: "[::1]:8080"}, ""},
		{"every interface", Config{Addr: ":8080"}, "reachable from other hosts and no auth is set"},
		{"a public address", Config{Addr: "0.0.0.0:80"}, "WORKER_CONSOLE_TOKEN"},
		{"with a token", Config{Addr: "0.0.0.0:80", Token: "s3cret"}, ""},
		{"with basic auth", Config{Addr: "0.0.0.0:80", BasicAuth: "ops:pw"}, ""},
		{"basic auth without a password", Config{Addr: "127.0.0.1:80", BasicAuth: "ops"}, "user:password"},
		{"not host:port", Config{Addr: "8080"}, "not host:port"},
		{"bad metrics address", Config{Addr: "127.0.0.1:1", Metrics: []string{"nohost"}}, "metrics address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{Addr: "0.0.0.0:0", Token: "tok-123", BasicAuth: "ops:pw"})
	for _, tc := range []struct {
		name   string
		header []string
		want   int
	}{
		{"none", nil, http.StatusUnauthorized},
		{"bearer", []string{"Authorization", "Bearer tok-123"}, http.StatusOK},
		{"wrong bearer", []string{"Authorization", "Bearer tok-124"}, http.StatusUnauthorized},
		{"token as basic password", []string{"Authorization", basic("anyone", "tok-123")}, http.StatusOK},
		{"basic user and password", []string{"Authorization", basic("ops", "pw")}, http.StatusOK},
		{"basic wrong password", []string{"Authorization", basic("ops", "pw2")}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := r.get(t, "/dlq", tc.header...)
			require.Equal(t, tc.want, w.Code, w.Body.String())
			if tc.want == http.StatusUnauthorized {
				require.Contains(t, w.Header().Get("WWW-Authenticate"), "Basic")
			}
		})
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

func TestActionsAreOffUnlessEnabled(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{})
	r.dl.listing = dlq.Listing{Queue: "getMultiple", Depth: 3}
	for _, path := range []string{"/dlq/getMultiple/redrive", "/dlq/getMultiple/purge"} {
		w := r.get(t, path)
		require.Equal(t, http.StatusForbidden, w.Code)
		require.Contains(t, w.Body.String(), "actions are off")
		w = r.post(t, path, url.Values{}, nil)
		require.Equal(t, http.StatusForbidden, w.Code)
	}
	require.NotContains(t, r.get(t, "/dlq/getMultiple").Body.String(), "Purge…", "no action buttons")
	require.Zero(t, r.dl.purges+r.dl.redrives)
}

// An action is a POST from the confirmation page: same origin, with the page's
// token; anything else is refused and changes nothing. What is done is logged.
func TestActionConfirmedAndProtectedAgainstCrossSiteRequests(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{Actions: true})
	r.dl.listing = dlq.Listing{Queue: "getMultiple", Depth: 3}

	confirm := r.get(t, "/dlq/getMultiple/purge")
	require.Equal(t, http.StatusOK, confirm.Code)
	require.Contains(t, confirm.Body.String(), "Yes, purge")
	cookies := confirm.Result().Cookies()
	require.Len(t, cookies, 1)
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(confirm.Body.String())
	require.Len(t, token, 2)
	require.Equal(t, cookies[0].Value, token[1])

	for _, tc := range []struct {
		name    string
		form    url.Values
		cookies []*http.Cookie
		header  []string
	}{
		{"no token", url.Values{}, cookies, nil},
		{"no cookie", url.Values{"csrf": {token[1]}}, nil, nil},
		{"another token", url.Values{"csrf": {strings.Repeat("x", 43)}}, cookies, nil},
		{"cross-site", url.Values{"csrf": {token[1]}}, cookies, []string{"Sec-Fetch-Site", "cross-site"}},
		{"another origin", url.Values{"csrf": {token[1]}}, cookies, []string{"Origin", "http://evil.example"}},
	} {
		w := r.post(t, "/dlq/getMultiple/purge", tc.form, tc.cookies, tc.header...)
		require.Equal(t, http.StatusForbidden, w.Code, tc.name)
	}
	require.Zero(t, r.dl.purges, "nothing refused was done")

	w := r.post(t, "/dlq/getMultiple/purge", url.Values{"csrf": {token[1]}}, cookies, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusSeeOther, w.Code, w.Body.String())
	require.Equal(t, 1, r.dl.purges)
	require.Equal(t, 1, r.logs.FilterMessage("console purged a DLQ").FilterField(zapString("queue", "getMultiple")).Len())
	require.Equal(t, 3, r.logs.FilterMessage("console action refused: bad CSRF token").Len(), "refused tokens are logged (cross-site requests stop before)")
}

// A purge whose answer is an error may still have happened: the page says how to
// tell, and the log has it.
func TestFailedPurgeIsShownAndLogged(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{Actions: true})
	r.dl.purgeErr = &smithy.GenericAPIError{Code: "RequestTimeout", Message: "no answer"}
	confirm := r.get(t, "/dlq/getMultiple/purge")
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(confirm.Body.String())
	w := r.post(t, "/dlq/getMultiple/purge", url.Values{"csrf": {token[1]}}, confirm.Result().Cookies())
	require.Equal(t, http.StatusBadGateway, w.Code)
	require.Contains(t, w.Body.String(), "empties within a minute")
	require.Equal(t, 1, r.logs.FilterMessage("console purge failed").Len())
	require.Contains(t, r.get(t, "/dlq").Body.String(), "stopped: api error RequestTimeout")
}

func TestRedriveRunsInTheBackgroundAndIsShown(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{Actions: true})
	r.dl.listing = dlq.Listing{Queue: "getMultiple", Depth: 2, Read: 2, Groups: []dlq.Group{{Reason: dlq.ReasonMaxReceives, Count: 2,
		Messages: []dlq.Message{{ID: "m1", Reason: dlq.ReasonMaxReceives}, {ID: "m2", Reason: dlq.ReasonMaxReceives}}}}}
	confirm := r.get(t, "/dlq/getMultiple/redrive?reason=maxReceiveCount")
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(confirm.Body.String())
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.srv.Serve(ctx, listener(t)) }()
	w := r.post(t, "/dlq/getMultiple/redrive", url.Values{"csrf": {token[1]}, "reason": {"maxReceiveCount"}}, confirm.Result().Cookies())
	require.Equal(t, http.StatusSeeOther, w.Code, w.Body.String())
	cancel()
	require.NoError(t, <-served) // waits for the redrive
	require.Equal(t, 1, r.dl.redrives)
	page := r.get(t, "/dlq").Body.String()
	require.Contains(t, page, "redrive (maxReceiveCount)")
	require.Contains(t, page, "moved 2, skipped 0, left 0")
	require.Equal(t, 1, r.logs.FilterMessage("console redrive done").Len())
}

func TestExecutionsArePaged(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{PageSize: 50})
	r.addExecutions(120, sfntypes.ExecutionStatusSucceeded)
	next := regexp.MustCompile(`href="(/executions\?[^"]*next=[^"]+)">next`)
	path, seen := "/executions?machine=cookies", 0
	for pageNo := 0; ; pageNo++ {
		w := r.get(t, path)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		rows := strings.Count(w.Body.String(), `href="/execution?arn=`)
		require.Equal(t, []int{50, 50, 20}[pageNo], rows)
		seen += rows
		m := next.FindStringSubmatch(w.Body.String())
		if m == nil {
			break
		}
		path = strings.ReplaceAll(m[1], "&amp;", "&")
	}
	require.Equal(t, 120, seen)
	require.Equal(t, 3, r.sfn.lists, "one ListExecutions a page")
	require.Equal(t, http.StatusBadRequest, r.get(t, "/executions?status=BOGUS").Code)
	require.Equal(t, http.StatusNotFound, r.get(t, "/executions?machine=nope").Code)
}

// An execution's duration: start to stop once it stopped, start to now while it
// runs, in the list and on its own page, the list read from the cache or not.
func TestExecutionDurations(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{PageSize: 50})
	r.addExecutions(1, sfntypes.ExecutionStatusSucceeded) // started a minute ago, ran 3 s
	r.addExecutions(1, sfntypes.ExecutionStatusRunning)
	r.sfn.executions[1].StopDate = nil
	r.sfn.executions[1].Name = aws.String("running")
	r.sfn.executions[1].ExecutionArn = aws.String("arn:aws:states:us-east-1:123456789012:execution:tb-cookies:running")
	for range 2 {
		body := r.get(t, "/executions?machine=cookies").Body.String()
		require.Regexp(t, `(?s)>run-0000</a>.*?<td class="n">3s</td>.*?>running</a>.*?<td class="n">1m0s</td>`, body)
	}
	for arn, want := range map[string]string{aws.ToString(r.sfn.executions[0].ExecutionArn): "3s", aws.ToString(r.sfn.executions[1].ExecutionArn): "1m0s"} {
		w := r.get(t, "/execution?arn="+url.QueryEscape(arn))
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		require.Contains(t, w.Body.String(), "<dt>duration</dt><dd>"+want+"</dd>", arn)
	}
}

func TestStackCountsTheWindowAndCaches(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{CacheTTL: time.Minute})
	r.addExecutions(90, sfntypes.ExecutionStatusSucceeded) // 1..90 minutes ago
	body := r.get(t, "/?window=1h").Body.String()
	require.Regexp(t, `<td>cookies</td>\s*<td class="n">0</td><td class="n">60</td>`, body)
	body = r.get(t, "/?window=24h").Body.String()
	require.Regexp(t, `<td class="n">0</td><td class="n">90</td>`, body)
	lists := r.sfn.lists
	r.now = r.now.Add(30 * time.Second)
	body = r.get(t, "/?window=24h").Body.String()
	require.Equal(t, lists, r.sfn.lists, "read from the cache")
	require.Contains(t, body, "Read from AWS 30s ago")
	r.get(t, "/?window=24h&fresh=1")
	require.Equal(t, lists+1, r.sfn.lists, "read again when asked")
}

// An execution's page: its steps with the jobs they ran, the objects under its
// prefix, its trace id; tokens and presigned queries never shown.
func TestExecutionTimelineHidesCredentials(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{})
	r.addExecutions(1, sfntypes.ExecutionStatusSucceeded)
	arn := aws.ToString(r.sfn.executions[0].ExecutionArn)
	token := "AAAAKgAAAAIAAAAAAAAAAeyJ0b2tlbiI6InNlY3JldC10b2tlbiJ9" + strings.Repeat("x", 40)
	at := r.now.Add(-time.Minute)
	ev := func(id, prev int64, typ sfntypes.HistoryEventType, d time.Duration) sfntypes.HistoryEvent {
		return sfntypes.HistoryEvent{Id: id, PreviousEventId: prev, Type: typ, Timestamp: aws.Time(at.Add(d))}
	}
	entered := ev(2, 0, sfntypes.HistoryEventTypeTaskStateEntered, 0)
	entered.StateEnteredEventDetails = &sfntypes.StateEnteredEventDetails{Name: aws.String("GetMultiple")}
	scheduled := ev(3, 2, sfntypes.HistoryEventTypeTaskScheduled, time.Millisecond)
	scheduled.TaskScheduledEventDetails = &sfntypes.TaskScheduledEventDetails{Resource: aws.String("putEvents.waitForTaskToken"), ResourceType: aws.String("events"),
		Parameters: aws.String(`{"Entries":[{"DetailType":"getMultiple","Detail":{"TaskToken":"` + token + `"}}]}`)}
	failed := ev(4, 3, sfntypes.HistoryEventTypeTaskFailed, time.Second)
	failed.TaskFailedEventDetails = &sfntypes.TaskFailedEventDetails{Error: aws.String("getMultiple.Exit3"), Cause: aws.String(`see https://b.s3.amazonaws.com/k?X-Amz-Signature=abc&X-Amz-Credential=def and {"TaskToken": "` + token + `"}`)}
	scheduled2 := ev(5, 4, sfntypes.HistoryEventTypeTaskScheduled, 2*time.Second)
	scheduled2.TaskScheduledEventDetails = scheduled.TaskScheduledEventDetails
	succeeded := ev(6, 5, sfntypes.HistoryEventTypeTaskSucceeded, 3*time.Second)
	succeeded.TaskSucceededEventDetails = &sfntypes.TaskSucceededEventDetails{Output: aws.String(`{"claimCheck": "s3://tb-data/claim-checks/ab.json", "size": 300000}`)}
	exited := ev(7, 6, sfntypes.HistoryEventTypeTaskStateExited, 3*time.Second)
	exited.StateExitedEventDetails = &sfntypes.StateExitedEventDetails{Name: aws.String("GetMultiple")}
	r.sfn.history[arn] = []sfntypes.HistoryEvent{ev(1, 0, sfntypes.HistoryEventTypeExecutionStarted, 0), entered, scheduled, failed, scheduled2, succeeded, exited}
	r.s3.objects["run-0000/0-cookies.json"] = `{"totalCookiesConsumed": 3}`
	r.s3.objects["run-00001/other.json"] = `{}` // another execution's prefix

	body := r.get(t, "/execution?arn="+url.QueryEscape(arn)).Body.String()
	require.NotContains(t, body, token[:30])
	require.NotContains(t, body, "X-Amz-Signature")
	require.Contains(t, body, "&lt;redacted token")
	require.Contains(t, body, "job <strong>getMultiple</strong> on queue getMultiple")
	require.Contains(t, body, "attempts 2")
	require.Contains(t, body, "getMultiple.Exit3")
	require.Contains(t, body, `href="/object?key=claim-checks%2fab.json"`)
	require.Contains(t, body, "run-0000/0-cookies.json")
	require.NotContains(t, body, "run-00001/other.json")
	require.Contains(t, body, "5759e988bd862e3fe1be46a994272793", "the trace id")

	require.Contains(t, r.get(t, "/object?key=run-0000/0-cookies.json").Body.String(), "totalCookiesConsumed")
	require.Equal(t, http.StatusNotFound, r.get(t, "/object?key=nope").Code)
	require.Equal(t, http.StatusNotFound, r.get(t, "/execution?arn=nope").Code)
}

func TestDeadLettersArePagedWithinAGroup(t *testing.T) {
	t.Parallel()
	r := setup(t, Config{PageSize: 10, CacheTTL: time.Minute})
	var msgs []dlq.Message
	for i := range 25 {
		msgs = append(msgs, dlq.Message{ID: "m" + string(rune('a'+i)), Reason: "bad input"})
	}
	r.dl.listing = dlq.Listing{Queue: "getMultiple", Depth: 26, Read: 26, Groups: []dlq.Group{
		{Reason: "bad input", Count: 25, Messages: msgs},
		{Reason: dlq.ReasonMaxReceives, Count: 1, Messages: []dlq.Message{{ID: "z", Reason: dlq.ReasonMaxReceives, Body: "<b>hi</b>"}}},
	}}
	rows := func(body string) int { return strings.Count(body, `href="/dlq/getMultiple/message?`) }
	body := r.get(t, "/dlq/getMultiple").Body.String()
	require.Contains(t, body, "25 × bad input")
	require.Contains(t, body, "1 × maxReceiveCount exceeded")
	require.Equal(t, 10, rows(body))
	require.Contains(t, body, "page 1 of 3")
	require.Equal(t, 5, rows(r.get(t, "/dlq/getMultiple?reason=bad+input&page=2").Body.String()))
	require.Equal(t, 1, rows(r.get(t, "/dlq/getMultiple?reason=maxReceiveCount+exceeded").Body.String()))
	require.Equal(t, 1, r.dl.reads, "the pages share one read of the DLQ")
	require.NotContains(t, body, "read up to", "everything was read")
	r.dl.listing.Depth = 5000
	r.dl.listing.Read = 200
	body = r.get(t, "/dlq/getMultiple?fresh=1").Body.String()
	require.Contains(t, body, `<a href="/dlq/getMultiple?read=1000">read up to 1000</a>`, "a read that stopped at its limit offers a larger one")
	r.get(t, "/dlq/getMultiple?read=1000")
	require.Equal(t, []int{200, 200, 1000}, r.dl.limits)
	msg := r.get(t, "/dlq/getMultiple/message?id=z").Body.String()
	require.Contains(t, msg, "&lt;b&gt;hi&lt;/b&gt;", "bodies are escaped")
	require.Equal(t, http.StatusNotFound, r.get(t, "/dlq/getMultiple/message?id=gone").Code)
	require.Equal(t, http.StatusNotFound, r.get(t, "/dlq/nope").Code)
}

func TestCacheSharesAndExpires(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	c := newCache(10*time.Second, func() time.Time { return now })
	loads := 0
	load := func(context.Context) (int, error) { loads++; return loads, nil }
	ctx := context.Background()
	v, at, err := cached(ctx, c, "k", false, load)
	require.NoError(t, err)
	require.Equal(t, 1, v)
	require.Equal(t, now, at)
	now = now.Add(9 * time.Second)
	v, _, _ = cached(ctx, c, "k", false, load)
	require.Equal(t, 1, v)
	v, _, _ = cached(ctx, c, "k", true, load)
	require.Equal(t, 2, v, "fresh reads again")
	now = now.Add(10 * time.Second)
	v, _, _ = cached(ctx, c, "k", false, load)
	require.Equal(t, 3, v, "expired")
	c.forget("k")
	v, _, _ = cached(ctx, c, "k", false, load)
	require.Equal(t, 4, v, "forgotten")
}

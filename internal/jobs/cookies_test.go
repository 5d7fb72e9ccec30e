package jobs

import (
	"context"
	"encoding/json"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// cookiesRouter routes every cookies queue as the topology does, over in-memory S3.
type cookiesRig struct {
	router *Router
	rep    *fakeReporter
	s3     *memS3
	pub    *memPublisher
}

func newCookiesRig(t *testing.T) *cookiesRig {
	t.Helper()
	s3 := newMemS3()
	pub := &memPublisher{}
	c := NewCookies(CookiesConfig{DataBucket: "data"}, s3, memPresigner{}, pub, memFetcher{s3})
	rep := newFakeReporter()
	routes := map[string]Route{
		GetMultiple: {Job: GetMultiple, DetailTypes: []string{"getMultiple"}}, ProcessSingle: {Job: ProcessSingle, DetailTypes: []string{"processSingle"}},
		PostProcessSingle: {Job: PostProcessSingle, DetailTypes: []string{ProcessSinglePost}}, SideEffect: {Job: SideEffect, DetailTypes: []string{ProcessSinglePost}},
		PostProcessAll: {Job: PostProcessAll, DetailTypes: []string{"postProcessAll"}}, Finisher: {Job: Finisher, DetailTypes: []string{"taskFinished"}},
	}
	r, err := NewRouter(RouterConfig{Routes: routes}, c.Jobs(), rep, noBeats{}, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	return &cookiesRig{router: r, rep: rep, s3: s3, pub: pub}
}

func (c *cookiesRig) handle(t *testing.T, queue, detailType string, detail any) error {
	t.Helper()
	return c.router.Handle(context.Background(), consumer.Message{ID: "m", Queue: queue, Body: envelope(detailType, detail), ReceiveCount: 1, MaxReceiveCount: 5})
}

// The whole workflow, step by step, as the state machine would drive it.
func TestCookiesWorkflowWithAwkwardNames(t *testing.T) {
	t.Parallel()
	rig := newCookiesRig(t)
	names := []string{"Zoë", "O'Brien", "a/b", "../../etc/passwd", "名前", "Zoë"}
	require.NoError(t, rig.handle(t, GetMultiple, "getMultiple", map[string]any{"TaskToken": "t-get", "executionArn": execARN, "input": map[string]any{"names": names}}))
	var got struct{ Names []string }
	require.NoError(t, json.Unmarshal(rig.rep.succeeded["t-get"], &got))
	require.Equal(t, names, got.Names)

	for i, n := range names {
		tok := "t-item-" + string(rune('a'+i))
		require.NoError(t, rig.handle(t, ProcessSingle, "processSingle", map[string]any{"TaskToken": tok, "executionArn": execARN, "name": n, "index": i}))
	}
	require.Len(t, rig.pub.events, len(names))
	for _, e := range rig.pub.events {
		require.Equal(t, ProcessSinglePost, e.detailType)
		require.Equal(t, execARN, e.detail["executionArn"], "emitted events carry the execution ARN")
		require.NoError(t, rig.handle(t, PostProcessSingle, ProcessSinglePost, e.detail))
		require.NoError(t, rig.handle(t, SideEffect, ProcessSinglePost, e.detail))
	}
	require.Len(t, rig.rep.succeeded, 1+len(names), "each item completed once; sideEffect used no token")

	require.NoError(t, rig.handle(t, PostProcessAll, "postProcessAll", map[string]any{"TaskToken": "t-all", "executionArn": execARN, "names": names}))
	var out struct {
		NumberOfPeople       int    `json:"numberOfPeople"`
		TotalCookiesConsumed int    `json:"totalCookiesConsumed"`
		Report               string `json:"report"`
	}
	require.NoError(t, json.Unmarshal(rig.rep.succeeded["t-all"], &out))
	require.Equal(t, 6, out.NumberOfPeople)
	require.Equal(t, "s3://data/run-1/0-cookies.json", out.Report)

	var rep Report
	require.NoError(t, json.Unmarshal(rig.s3.objs["run-1/0-cookies.json"], &rep))
	sum := 0
	for i, p := range rep.People {
		require.Equal(t, names[i], p["name"], "people sorted by index, duplicates separate")
		sum += int(p["numberOfCookiesConsumed"].(float64))
	}
	require.Equal(t, sum, rep.TotalCookiesConsumed)
	require.Equal(t, out.TotalCookiesConsumed, rep.TotalCookiesConsumed)
	for k := range rig.s3.objs {
		require.True(t, strings.HasPrefix(k, "run-1/"), "key %q outside the execution prefix", k)
		require.Equal(t, k, path.Clean(k))
	}
}

func TestRedeliveredItemStoresTheSameNumber(t *testing.T) {
	t.Parallel()
	rig := newCookiesRig(t)
	require.NoError(t, rig.handle(t, ProcessSingle, "processSingle", map[string]any{"TaskToken": "t", "executionArn": execARN, "name": "x", "index": 3}))
	post := rig.pub.events[0].detail
	require.NoError(t, rig.handle(t, PostProcessSingle, ProcessSinglePost, post))
	first := string(rig.s3.objs[ItemKey("run-1", "people", 3, "x")])
	require.NoError(t, rig.handle(t, PostProcessSingle, ProcessSinglePost, post))
	require.Equal(t, first, string(rig.s3.objs[ItemKey("run-1", "people", 3, "x")]))
}

func TestPostProcessAllWaitsForEveryPerson(t *testing.T) {
	t.Parallel()
	rig := newCookiesRig(t)
	err := rig.handle(t, PostProcessAll, "postProcessAll", map[string]any{"TaskToken": "t", "executionArn": execARN, "names": []string{"a"}})
	require.Error(t, err, "a missing person is retried")
	require.False(t, consumer.IsDeadLetter(err))
}

func TestFinisherCompletesWithTheDetailLessTheToken(t *testing.T) {
	t.Parallel()
	rig := newCookiesRig(t)
	require.NoError(t, rig.handle(t, Finisher, "taskFinished", map[string]any{"TaskToken": "t", "result": "done", "rows": 3}))
	require.JSONEq(t, `{"result":"done","rows":3}`, string(rig.rep.succeeded["t"]))
}

func TestParseInput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{}`, ``, `null`} {
		names, err := ParseInput(json.RawMessage(in))
		require.NoError(t, err)
		require.LessOrEqual(t, len(names), 19)
	}
	names, err := ParseInput(json.RawMessage(`{"count": 50}`))
	require.NoError(t, err)
	require.Len(t, names, 50)
	names, err = ParseInput(json.RawMessage(`{"names": ["a", "a"]}`))
	require.NoError(t, err)
	require.Equal(t, []string{"a", "a"}, names)
	for _, bad := range []string{`{"count": -1}`, `{"count": 1.5}`, `{"count": "3"}`, `{"count": 10001}`, `{"names": [1]}`, `{"names": null}`, `[]`, `"x"`} {
		_, err := ParseInput(json.RawMessage(bad))
		je, ok := asJobError(err)
		require.True(t, ok && je.badInput, "%s is bad input: %v", bad, err)
	}
}

func TestExecutionName(t *testing.T) {
	t.Parallel()
	name, err := ExecutionName(execARN)
	require.NoError(t, err)
	require.Equal(t, "run-1", name)
	for _, bad := range []string{"", "arn:aws:s3:::bucket", "arn:aws:states:r:a:execution:sm:", "arn:aws:states:r:a:execution:sm:..", "arn:aws:states:r:a:stateMachine:sm"} {
		_, err := ExecutionName(bad)
		require.Error(t, err, bad)
	}
}

func FuzzItemKey(f *testing.F) {
	for _, n := range []string{"Zoë", "O'Brien", "a/b", "../../etc/passwd", "名前", "", ".", "..", strings.Repeat("x/", 200), "\x00\xff"} {
		f.Add(n, 0)
	}
	f.Fuzz(func(t *testing.T, name string, index int) {
		if index < 0 {
			index = -index
		}
		key := ItemKey("run-1", "people", index, name)
		if !strings.HasPrefix(key, "run-1/people/") || path.Clean(key) != key {
			t.Fatalf("key %q escapes or is not clean", key)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("key %q has a %q segment", key, seg)
			}
		}
		if !utf8.ValidString(key) || len(key) > 200 {
			t.Fatalf("key %q is not valid UTF-8 or too long", key)
		}
		if other := ItemKey("run-1", "people", index+1, name); other == key {
			t.Fatalf("two items share key %q", key)
		}
	})
}

func FuzzParseInput(f *testing.F) {
	for _, s := range []string{`{}`, `{"count": 3}`, `{"names": ["a"]}`, `{"count": 1e9}`, `{"names": "x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		names, err := ParseInput(in)
		if err == nil && len(names) > MaxPeople {
			t.Fatalf("accepted %d names", len(names))
		}
		if err != nil {
			if je, ok := asJobError(err); !ok || !je.badInput {
				t.Fatalf("input error is not bad input: %v", err)
			}
		}
	})
}

package cookies

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskbridge/taskbridge"
	"github.com/taskbridge/taskbridge/tasktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const execARN = "arn:aws:states:us-east-1:123456789012:execution:tb-cookies:run-1"

type rig struct {
	run *tasktest.Runner
	s3  *memS3
}

func newRig(t *testing.T) *rig {
	t.Helper()
	s3 := newMemS3()
	r := taskbridge.NewRegistry()
	RegisterWith(r, Deps{DataBucket: "data", S3: s3, Presigner: memPresigner{}, Fetcher: memFetcher{s3}})
	return &rig{run: tasktest.New(r), s3: s3}
}

func (g *rig) deliver(t *testing.T, job, detailType string, detail any, d tasktest.Delivery) tasktest.Result {
	t.Helper()
	d.DetailType = detailType
	if d.ExecutionArn == "" {
		d.ExecutionArn = execARN
	}
	res, err := g.run.Run(context.Background(), job, detail, d)
	require.NoError(t, err)
	return res
}

// The whole workflow, step by step, as the state machine would drive it.
func TestCookiesWorkflowWithAwkwardNames(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	names := []string{"Zoë", "O'Brien", "a/b", "../../etc/passwd", "名前", "Zoë", "<b>&"}
	res := g.deliver(t, GetMultiple, "getMultiple", map[string]any{"input": map[string]any{"names": names}}, tasktest.Delivery{})
	require.True(t, res.Succeeded)
	require.JSONEq(t, `{"names":["Zoë","O'Brien","a/b","../../etc/passwd","名前","Zoë","<b>&"]}`, string(res.Output))
	require.Contains(t, string(res.Output), "<b>&", "output is not HTML-escaped")

	completed := 0
	for i, n := range names {
		res := g.deliver(t, ProcessSingle, "processSingle", map[string]any{"name": n, "index": i}, tasktest.Delivery{})
		require.False(t, res.Succeeded || res.Failed, "processSingle hands the token forward")
		require.Len(t, res.Events, 1)
		e := res.Events[0]
		require.Equal(t, ProcessSinglePost, e.DetailType)
		var post map[string]any
		require.NoError(t, json.Unmarshal(e.Detail, &post))
		require.Equal(t, execARN, post["executionArn"], "emitted events carry the execution ARN")
		token, _ := post["TaskToken"].(string)
		require.NotEmpty(t, token, "the token is handed forward")
		delete(post, "TaskToken")

		side := g.deliver(t, SideEffect, ProcessSinglePost, post, tasktest.Delivery{Token: token})
		require.False(t, side.Succeeded || side.Failed, "sideEffect never uses the token")
		require.Len(t, side.Events, 1)
		pp := g.deliver(t, PostProcessSingle, ProcessSinglePost, post, tasktest.Delivery{Token: token})
		require.True(t, pp.Succeeded, "item %d completed: %+v", i, pp)
		completed++
	}
	require.Equal(t, len(names), completed)

	res = g.deliver(t, PostProcessAll, "postProcessAll", map[string]any{"names": names}, tasktest.Delivery{})
	require.True(t, res.Succeeded, "%+v", res)
	var out struct {
		NumberOfPeople       int    `json:"numberOfPeople"`
		TotalCookiesConsumed int    `json:"totalCookiesConsumed"`
		Report               string `json:"report"`
	}
	require.NoError(t, json.Unmarshal(res.Output, &out))
	require.Equal(t, len(names), out.NumberOfPeople)
	require.Equal(t, "s3://data/run-1/0-cookies.json", out.Report)

	var rep Report
	require.NoError(t, json.Unmarshal(g.s3.get("run-1/0-cookies.json"), &rep))
	sum := 0
	for i, p := range rep.People {
		require.Equal(t, names[i], p["name"], "people sorted by index, duplicates separate")
		sum += int(p["numberOfCookiesConsumed"].(float64))
	}
	require.Equal(t, sum, rep.TotalCookiesConsumed)
	require.Equal(t, out.TotalCookiesConsumed, rep.TotalCookiesConsumed)
	for _, k := range g.s3.keys() {
		require.True(t, strings.HasPrefix(k, "run-1/"), "key %q outside the execution prefix", k)
		require.Equal(t, k, path.Clean(k))
	}
	require.Contains(t, string(g.s3.get("run-1/0-cookies.json")), "<b>&", "stored JSON is not HTML-escaped")
}

func TestReportForNobodyHasAnEmptyPeopleList(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	res := g.deliver(t, PostProcessAll, "postProcessAll", map[string]any{"names": []string{}}, tasktest.Delivery{})
	require.True(t, res.Succeeded, "%+v", res)
	require.Contains(t, string(g.s3.get("run-1/0-cookies.json")), `"people":[]`)
}

// A forged token (one Step Functions does not know) is refused before anything is
// written into the execution's data, and nothing is reported.
func TestForgedTokenWritesNothing(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	g.run.CloseToken("bogus")
	victim := "arn:aws:states:us-east-1:123456789012:execution:tb-cookies:victim"
	for _, tc := range []struct{ job, detailType string }{{ProcessSingle, "processSingle"}, {PostProcessSingle, ProcessSinglePost}, {PostProcessAll, "postProcessAll"}} {
		res := g.deliver(t, tc.job, tc.detailType, map[string]any{"name": "Mallory", "index": 0, "names": []string{}, "url": "mem://victim/profiles/00000-Mallory.json"},
			tasktest.Delivery{Token: "bogus", ExecutionArn: victim})
		require.False(t, res.Succeeded || res.Failed || res.Retried || res.DeadLettered, "%s: %+v", tc.job, res)
		require.Empty(t, res.Events)
	}
	require.Empty(t, g.s3.keys(), "nothing written")
}

// The report reads at most one person per index of its own names.
func TestReportReadsOnlyItsOwnItems(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	g.s3.put("run-1/people/00000-a.json", `{"name":"a","index":0,"numberOfCookiesConsumed":3}`)
	g.s3.put("run-1/people/00000-a-again.json", `{"name":"a","index":0,"numberOfCookiesConsumed":3}`)
	g.s3.put("run-1/people/00007-x.json", `{"name":"x","index":7,"numberOfCookiesConsumed":20}`)
	res := g.deliver(t, PostProcessAll, "postProcessAll", map[string]any{"names": []string{"a"}}, tasktest.Delivery{})
	require.True(t, res.Succeeded, "%+v", res)
	require.JSONEq(t, `{"numberOfPeople":1,"totalCookiesConsumed":3,"report":"s3://data/run-1/0-cookies.json"}`, string(res.Output))
}

func TestExecutionsNamedLikeTheWorkersFoldersAreRefused(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	for _, name := range []string{"manifests", "results", "claim-checks", "a\x01b"} {
		res := g.deliver(t, ProcessSingle, "processSingle", map[string]any{"name": "a", "index": 0},
			tasktest.Delivery{ExecutionArn: "arn:aws:states:us-east-1:123456789012:execution:tb-cookies:" + name})
		require.True(t, res.Failed && res.DeadLettered, "%q: %+v", name, res)
		require.Equal(t, "processSingle.InvalidInput", res.Error)
	}
	require.Empty(t, g.s3.keys())
}

func TestRedeliveredItemStoresTheSameNumber(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	res := g.deliver(t, ProcessSingle, "processSingle", map[string]any{"name": "x", "index": 3}, tasktest.Delivery{Token: "t"})
	var post map[string]any
	require.NoError(t, json.Unmarshal(res.Events[0].Detail, &post))
	delete(post, "TaskToken")
	require.True(t, g.deliver(t, PostProcessSingle, ProcessSinglePost, post, tasktest.Delivery{Token: "t1"}).Succeeded)
	first := string(g.s3.get(ItemKey("run-1", "people", 3, "x")))
	require.True(t, g.deliver(t, PostProcessSingle, ProcessSinglePost, post, tasktest.Delivery{Token: "t2"}).Succeeded)
	require.Equal(t, first, string(g.s3.get(ItemKey("run-1", "people", 3, "x"))))
}

func TestPostProcessAllWaitsForEveryPerson(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	res := g.deliver(t, PostProcessAll, "postProcessAll", map[string]any{"names": []string{"a"}}, tasktest.Delivery{})
	require.True(t, res.Retried, "a missing person is retried: %+v", res)
	res = g.deliver(t, PostProcessAll, "postProcessAll", map[string]any{"names": []string{"a"}}, tasktest.Delivery{ReceiveCount: 5})
	require.True(t, res.Failed && res.DeadLettered, "%+v", res)
	require.Equal(t, "postProcessAll.RetriesExhausted", res.Error)
}

func TestBadDetailFailsWithTheJobsName(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	res := g.deliver(t, ProcessSingle, "processSingle", map[string]any{"name": 5, "index": "x"}, tasktest.Delivery{})
	require.True(t, res.Failed && res.DeadLettered, "%+v", res)
	require.Equal(t, "processSingle.InvalidInput", res.Error)
	res = g.deliver(t, GetMultiple, "getMultiple", map[string]any{}, tasktest.Delivery{NoToken: true})
	require.True(t, res.DeadLettered && !res.Failed, "no token: DLQ at once, nothing to fail: %+v", res)
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
		_, badInput, ok := taskbridge.ErrorKind(err)
		require.True(t, ok && badInput, "%s is bad input: %v", bad, err)
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
			if _, badInput, ok := taskbridge.ErrorKind(err); !ok || !badInput {
				t.Fatalf("input error is not bad input: %v", err)
			}
		}
	})
}

// memS3 is an in-memory bucket.
type memS3 struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func newMemS3() *memS3 { return &memS3{objs: map[string][]byte{}} }

func (m *memS3) put(key, body string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[key] = []byte(body)
}

func (m *memS3) get(key string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.objs[key]
}

func (m *memS3) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.objs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (m *memS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if aws.ToString(in.Key) == "" {
		return nil, errors.New("InvalidArgument: empty key") // as S3 refuses it
	}
	b, _ := io.ReadAll(in.Body)
	m.put(aws.ToString(in.Key), string(b))
	return &s3.PutObjectOutput{}, nil
}

func (m *memS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	b := m.get(aws.ToString(in.Key))
	if b == nil {
		return nil, errors.New("NoSuchKey")
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(b))}, nil
}

func (m *memS3) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	out := &s3.ListObjectsV2Output{}
	for _, k := range m.keys() {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) {
			out.Contents = append(out.Contents, types.Object{Key: aws.String(k), Size: aws.Int64(int64(len(m.get(k))))})
		}
	}
	return out, nil
}

// memPresigner "presigns" as mem://<key>, and memFetcher serves those from memS3.
type memPresigner struct{}

func (memPresigner) PresignGetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error) {
	return &v4.PresignedHTTPRequest{URL: "mem://" + aws.ToString(in.Key)}, nil
}

type memFetcher struct{ s3 *memS3 }

func (f memFetcher) Fetch(_ context.Context, url string) ([]byte, error) {
	key, ok := strings.CutPrefix(url, "mem://")
	if !ok {
		return nil, taskbridge.Invalid("ForbiddenURL", errors.New("not mem://"))
	}
	b := f.s3.get(key)
	if b == nil {
		return nil, taskbridge.Permanent("URLRejected", errors.New("404"))
	}
	return b, nil
}

package event

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseRealEvents(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		e, err := Parse(b)
		require.NoError(t, err, f)
		require.NotEmpty(t, e.DetailType)
		require.False(t, e.Time.IsZero())
	}
}

func TestParseRejectsEachMalformedKind(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		body string
		why  string
	}{
		"not JSON":             {"this is not JSON", "not JSON"},
		"a JSON array":         {`[1,2]`, "not JSON"},
		"truncated":            {`{"detail-type":"x","source":"y","detail":{"a":`, "not JSON"},
		"no detail":            {`{"detail-type":"x","source":"y"}`, "no detail"},
		"detail null":          {`{"detail-type":"x","source":"y","detail":null}`, "no detail"},
		"detail not object":    {`{"detail-type":"x","source":"y","detail":"text"}`, "not a JSON object"},
		"no detail-type":       {`{"source":"y","detail":{}}`, "no detail-type"},
		"no source":            {`{"detail-type":"x","detail":{}}`, "no source"},
		"detail-type wrong":    {`{"detail-type":5,"source":"y","detail":{}}`, "not JSON"},
		"oversized":            {`{"detail-type":"x","source":"y","detail":{"p":"` + strings.Repeat("a", MaxBodyBytes) + `"}}`, "over"},
		"time not a timestamp": {`{"detail-type":"x","source":"y","time":"yesterday","detail":{}}`, "RFC 3339"},
		"time an object":       {`{"detail-type":"x","source":"y","time":{},"detail":{}}`, "Unix seconds"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.body))
			require.ErrorIs(t, err, ErrMalformed)
			require.ErrorContains(t, err, tc.why)
		})
	}
}

func TestParseTakesUnixSecondsAsTime(t *testing.T) {
	t.Parallel()
	e, err := Parse([]byte(`{"detail-type":"Object Created","source":"aws.s3","time":1795339845.5,"detail":{}}`))
	require.NoError(t, err)
	require.Equal(t, int64(1795339845), e.Time.Unix())
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
		f.Add(b[:len(b)/2]) // truncated
	}
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":{}}`))
	f.Add([]byte(`{"detail-type":"x","source":"y","detail":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if e.DetailType == "" || e.Source == "" {
			t.Fatalf("accepted an envelope without detail-type or source: %q", body)
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(e.Detail, &obj) != nil {
			t.Fatalf("accepted a detail that is not an object: %q", e.Detail)
		}
	})
}

// fakeBus fails the first failures entries, then accepts.
type fakeBus struct {
	mu       sync.Mutex
	failures int
	calls    int
	err      error
	got      []types.PutEventsRequestEntry
}

func (f *fakeBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	if f.calls <= f.failures {
		return &eventbridge.PutEventsOutput{FailedEntryCount: 1, Entries: []types.PutEventsResultEntry{{ErrorCode: aws.String("InternalFailure"), ErrorMessage: aws.String("rules changed")}}}, nil
	}
	f.got = append(f.got, in.Entries...)
	return &eventbridge.PutEventsOutput{Entries: []types.PutEventsResultEntry{{EventId: aws.String("1")}}}, nil
}

func TestPublishRetriesFailedEntries(t *testing.T) {
	t.Parallel()
	bus := &fakeBus{failures: 2}
	reg := prometheus.NewRegistry()
	p := NewPublisher(PublisherConfig{EventBus: "b", Source: "s"}, bus, zaptest.NewLogger(t), reg)
	require.NoError(t, p.Publish(context.Background(), "sideEffectDone", map[string]string{"executionArn": "arn"}))
	require.Equal(t, 3, bus.calls)
	require.JSONEq(t, `{"executionArn":"arn"}`, aws.ToString(bus.got[0].Detail))
	require.Equal(t, "b", aws.ToString(bus.got[0].EventBusName))
	require.Equal(t, 1.0, testutil.ToFloat64(p.published.WithLabelValues("sideEffectDone", "ok")))
}

func TestPublishGivesUpWithTheReason(t *testing.T) {
	t.Parallel()
	p := NewPublisher(PublisherConfig{EventBus: "b", Source: "s"}, &fakeBus{failures: 100}, zaptest.NewLogger(t), prometheus.NewRegistry())
	err := p.Publish(context.Background(), "x", map[string]int{})
	require.ErrorContains(t, err, "rules changed")

	p = NewPublisher(PublisherConfig{EventBus: "b", Source: "s"}, &fakeBus{}, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.ErrorContains(t, p.Publish(context.Background(), "x", map[string]string{"a": strings.Repeat("x", MaxEntryBytes)}), "limit")
	require.ErrorContains(t, p.Publish(context.Background(), "x", func() {}), "marshal")
}

func BenchmarkParse(b *testing.B) {
	body, err := os.ReadFile("testdata/sfn-getmultiple.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}

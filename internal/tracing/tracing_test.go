package tracing

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// on turns tracing on for one test with an in-memory exporter: spans are made
// under the context it returns.
func on(t *testing.T) (context.Context, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithIDGenerator(executionIDs{}))
	ctx, release := With(context.Background(), tp)
	t.Cleanup(func() { release(); _ = tp.Shutdown(context.Background()) })
	return ctx, exp
}

const (
	xrayHeader  = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
	xrayTrace   = "5759e988bd862e3fe1be46a994272793"
	traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

func TestParseXRay(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		header  string
		ok      bool
		sampled bool
	}{
		"sampled":            {header: xrayHeader, ok: true, sampled: true},
		"not sampled":        {header: strings.Replace(xrayHeader, "Sampled=1", "Sampled=0", 1), ok: true},
		"sampling deferred":  {header: strings.Replace(xrayHeader, "Sampled=1", "Sampled=?", 1), ok: true},
		"lineage and spaces": {header: "Root=1-5759e988-bd862e3fe1be46a994272793; Parent=53995c3f42cd8ad8; Sampled=1; Lineage=a87bd80c:1|68fd508a:5", ok: true, sampled: true},
		"no parent":          {header: "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"},
		"no root":            {header: "Parent=53995c3f42cd8ad8;Sampled=1"},
		"empty":              {header: ""},
		"wrong version":      {header: strings.Replace(xrayHeader, "Root=1-", "Root=2-", 1)},
		"upper-case hex":     {header: strings.Replace(xrayHeader, "bd862e3f", "BD862E3F", 1)},
		"short root":         {header: "Root=1-5759e988-bd862e3f;Parent=53995c3f42cd8ad8"},
		"zero parent":        {header: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000;Sampled=1"},
		"zero root":          {header: "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8"},
		"not hex":            {header: "Root=1-5759e988-bd862e3fe1be46a99427279z;Parent=53995c3f42cd8ad8"},
		"oversized":          {header: xrayHeader + ";Lineage=" + strings.Repeat("a", 300)},
		"a traceparent":      {header: traceparent},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sc, ok := ParseXRay(tc.header)
			require.Equal(t, tc.ok, ok)
			if !ok {
				require.False(t, sc.IsValid())
				return
			}
			require.Equal(t, xrayTrace, sc.TraceID().String())
			require.Equal(t, "53995c3f42cd8ad8", sc.SpanID().String())
			require.Equal(t, tc.sampled, sc.IsSampled())
			require.True(t, sc.IsRemote())
		})
	}
}

func TestFormatXRayRoundTrip(t *testing.T) {
	t.Parallel()
	sc, ok := ParseXRay(xrayHeader)
	require.True(t, ok)
	require.Equal(t, xrayHeader, FormatXRay(sc))
	require.Empty(t, FormatXRay(trace.SpanContext{}))
}

// FuzzParseXRay: the header is outside input (any sender on the queue sets it).
// Whatever parses is a valid context that formats back to a header parsing to the
// same context.
func FuzzParseXRay(f *testing.F) {
	for _, s := range []string{xrayHeader, "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8", "Root=1-;Parent=", ";;;", "Root==1", traceparent,
		"Self=1-5759e988-bd862e3fe1be46a994272793;Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		sc, ok := ParseXRay(h)
		if !ok {
			return
		}
		require.True(t, sc.IsValid())
		again, ok := ParseXRay(FormatXRay(sc))
		require.True(t, ok)
		require.True(t, sc.Equal(again), "%q → %q", h, FormatXRay(sc))
	})
}

func TestExtractPrefersXRayThenTraceparentThenExecution(t *testing.T) {
	traced, exp := on(t)
	const arn = "arn:aws:states:us-east-1:123456789012:execution:cookies:run-1"
	for name, tc := range map[string]struct {
		in         Incoming
		wantTrace  string
		wantParent string
	}{
		"xray wins":        {in: Incoming{AWSTraceHeader: xrayHeader, Traceparent: traceparent, ExecutionArn: arn}, wantTrace: xrayTrace, wantParent: "53995c3f42cd8ad8"},
		"traceparent next": {in: Incoming{AWSTraceHeader: "Root=garbage", Traceparent: traceparent, ExecutionArn: arn}, wantTrace: "0af7651916cd43dd8448eb211c80319c", wantParent: "b7ad6b7169203331"},
		"execution last":   {in: Incoming{Traceparent: "00-bad", ExecutionArn: arn}, wantTrace: executionTraceID(arn).String()},
	} {
		exp.Reset()
		_, span := Start(Extract(traced, tc.in), "handle", "", trace.SpanKindConsumer)
		span.End()
		got := exp.GetSpans()
		require.Len(t, got, 1, name)
		require.Equal(t, tc.wantTrace, got[0].SpanContext.TraceID().String(), name)
		if tc.wantParent == "" {
			require.False(t, got[0].Parent.IsValid(), name)
		} else {
			require.Equal(t, tc.wantParent, got[0].Parent.SpanID().String(), name)
			require.True(t, got[0].Parent.IsRemote(), name)
		}
	}
	// Nothing to go on: a fresh random trace.
	_, span := Start(Extract(traced, Incoming{}), "handle", "", trace.SpanKindConsumer)
	span.End()
	require.NotEqual(t, executionTraceID("").String(), span.SpanContext().TraceID().String())
	require.True(t, span.SpanContext().IsValid())
}

func TestInjectCarriesTheSpan(t *testing.T) {
	traced, _ := on(t)
	ctx, span := Start(Extract(traced, Incoming{Traceparent: traceparent}), "publish", "", trace.SpanKindProducer)
	defer span.End()
	out := Inject(ctx)
	sc := span.SpanContext()
	want := Outgoing{
		XRay:        "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=" + sc.SpanID().String() + ";Sampled=1",
		Traceparent: "00-0af7651916cd43dd8448eb211c80319c-" + sc.SpanID().String() + "-01",
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Fatalf("Inject (-want +got):\n%s", diff)
	}
	// What one worker injects, the next extracts as its parent.
	parent, ok := ParseXRay(out.XRay)
	require.True(t, ok)
	require.Equal(t, sc.SpanID(), parent.SpanID())
	require.Equal(t, Outgoing{}, Inject(traced), "no span, nothing to carry")
}

func TestOffDoesNothing(t *testing.T) {
	ctx := context.Background()
	require.False(t, Enabled(ctx))
	got := Extract(ctx, Incoming{AWSTraceHeader: xrayHeader, Traceparent: traceparent, ExecutionArn: "arn"})
	require.Equal(t, ctx, got, "off, Extract returns ctx itself")
	sctx, span := Start(ctx, "x", "", trace.SpanKindInternal)
	require.Equal(t, ctx, sctx)
	require.False(t, span.IsRecording())
	require.Equal(t, Outgoing{}, Inject(trace.ContextWithRemoteSpanContext(ctx, mustXRay(t))))
}

func TestObserveAddsTheTraceAsExemplar(t *testing.T) {
	traced, _ := on(t)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d", Buckets: []float64{1}})
	ctx, span := Start(traced, "handle", "", trace.SpanKindConsumer)
	Observe(ctx, h, 0.5)
	span.End()
	Observe(traced, h, 0.7) // no span: no exemplar, the last one stays
	var m dto.Metric
	require.NoError(t, h.Write(&m))
	ex := m.GetHistogram().GetBucket()[0].GetExemplar()
	require.NotNil(t, ex)
	require.Equal(t, span.SpanContext().TraceID().String(), ex.GetLabel()[0].GetValue())
	require.Equal(t, "trace_id", ex.GetLabel()[0].GetName())
	require.Equal(t, uint64(2), m.GetHistogram().GetSampleCount())
}

// Two runs of one process trace each with its own provider: spans go to the
// provider of the context they start under, a context without one makes none,
// and one run's end does not turn the other's tracing off.
func TestTracersAreOwnedByTheirRun(t *testing.T) {
	first, second := tracetest.NewInMemoryExporter(), tracetest.NewInMemoryExporter()
	tp1 := sdktrace.NewTracerProvider(sdktrace.WithSyncer(first))
	tp2 := sdktrace.NewTracerProvider(sdktrace.WithSyncer(second))
	ctx1, release1 := With(context.Background(), tp1)
	ctx2, release2 := With(context.Background(), tp2)
	off, _ := With(ctx1, nil)

	_, s1 := Start(ctx1, "one", "", trace.SpanKindInternal)
	s1.End()
	_, s2 := Start(ctx2, "two", "", trace.SpanKindInternal)
	s2.End()
	_, none := Start(context.Background(), "none", "", trace.SpanKindInternal)
	require.False(t, none.IsRecording(), "no run's context, no span")
	_, shadowed := Start(off, "off", "", trace.SpanKindInternal)
	require.False(t, shadowed.IsRecording(), "a run with tracing off under a traced context makes none")
	release1()
	release1() // twice is once
	require.True(t, Enabled(ctx2), "the other run still traces")
	release2()
	require.False(t, Enabled(ctx2))

	require.Len(t, first.GetSpans(), 1)
	require.Equal(t, "one", first.GetSpans()[0].Name)
	require.Len(t, second.GetSpans(), 1)
	require.Equal(t, "two", second.GetSpans()[0].Name)
}

func mustXRay(t *testing.T) trace.SpanContext {
	t.Helper()
	sc, ok := ParseXRay(xrayHeader)
	require.True(t, ok)
	return sc
}

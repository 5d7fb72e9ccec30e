package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// exportedSpan is the part of a console exporter line (stdouttrace) the test reads.
type exportedSpan struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct {
		TraceID, SpanID string
		Remote          bool
	}
	Attributes []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s exportedSpan) attr(key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			v, _ := a.Value.Value.(string)
			return v
		}
	}
	return ""
}

func (s exportedSpan) hasParent() bool { return strings.Trim(s.Parent.SpanID, "0") != "" }

// readSpans reads the console exporter's file: every span, and each by its id.
func readSpans(t *testing.T, path string) ([]exportedSpan, map[string]exportedSpan) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var spans []exportedSpan
	byID := map[string]exportedSpan{}
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var s exportedSpan
		err := dec.Decode(&s)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		spans = append(spans, s)
		byID[s.SpanContext.SpanID] = s
	}
	require.NotEmpty(t, spans)
	return spans, byID
}

// stopAndFlush stops the worker (SIGTERM), which flushes its spans on the way out.
func (w *workerProc) stopAndFlush() {
	w.t.Helper()
	w.signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(60 * time.Second):
		w.t.Fatal("worker did not stop")
	}
	require.NoError(w.t, w.waitErr)
}

// TestE2ETracingOneTracePerExecution: with OTEL_TRACES_EXPORTER=console and
// WORKER_TRACE_FILE, one cookies execution is one trace holding every job of it,
// sideEffect included: the jobs Step Functions' events start are roots of the
// execution's trace, the jobs of the events a job puts hang under that job's
// publish span, and every span's parent is in the file.
func TestE2ETracingOneTracePerExecution(t *testing.T) {
	spansFile := filepath.Join(t.TempDir(), "spans.jsonl")
	st := newStack(t)
	w := st.startWorker("OTEL_TRACES_EXPORTER=console", "WORKER_TRACE_FILE="+spansFile, "OTEL_SERVICE_NAME=taskbridge-e2e")
	const people = 3
	arn := st.startExecution(`{"count": 3}`)
	d := st.waitExecution(arn, 3*time.Minute)
	require.Equal(t, sfntypes.ExecutionStatusSucceeded, d.Status, "error %s: %s", aws.ToString(d.Error), aws.ToString(d.Cause))
	st.requireQueuesDrain(2 * time.Minute) // sideEffect is not waited for by the execution

	// Exemplars: the OpenMetrics exposition links the job duration to a trace.
	req, err := http.NewRequest(http.MethodGet, "http://"+w.addr+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, resp.Header.Get("Content-Type"), "application/openmetrics-text")
	exemplar := regexp.MustCompile(`(?m)^worker_job_duration_seconds_bucket\{.*\} \d+ # \{trace_id="([0-9a-f]{32})"\}`).FindSubmatch(body)
	require.NotNil(t, exemplar, "a job duration bucket has a trace exemplar:\n%s", body)

	w.stopAndFlush()

	spans, byID := readSpans(t, spansFile)

	// The execution's trace: the one its getMultiple message span is in.
	var traceID string
	handled := map[string]int{} // message spans of the execution by queue
	for _, s := range spans {
		if strings.HasPrefix(s.Name, "handle ") && s.attr("taskbridge.execution_arn") == arn {
			if traceID == "" {
				traceID = s.SpanContext.TraceID
			}
			require.Equal(t, traceID, s.SpanContext.TraceID, "span %s is in the execution's trace", s.Name)
			handled[s.attr("messaging.destination.name")]++
			for _, a := range s.Attributes {
				require.NotContains(t, strings.ToLower(a.Key), "token", "no span carries the task token")
			}
		}
	}
	for _, q := range []string{"getMultiple", "processSingle", "postProcessSingle", "sideEffect", "postProcessAll"} {
		want := 1
		if q != "getMultiple" && q != "postProcessAll" {
			want = people
		}
		require.GreaterOrEqual(t, handled[q], want, "messages of %s in the trace (all: %v)", q, handled)
	}
	require.Equal(t, traceID, string(exemplar[1]), "the exemplar links to the execution's trace (the only one this worker saw)")
	var inTrace []exportedSpan
	for _, s := range spans {
		if s.SpanContext.TraceID == traceID {
			inTrace = append(inTrace, s)
		}
	}

	parentOf := func(s exportedSpan) exportedSpan {
		t.Helper()
		p, ok := byID[s.Parent.SpanID]
		require.True(t, ok, "the parent of %s is in the file", s.Name)
		return p
	}
	names := map[string]int{}
	for _, s := range inTrace {
		names[s.Name]++
		queue := s.attr("messaging.destination.name")
		switch {
		case s.Name == "handle getMultiple" || s.Name == "handle processSingle" || s.Name == "handle postProcessAll":
			// Started by Step Functions' events, which carry no trace context: roots of
			// the execution's trace.
			require.False(t, s.hasParent(), "%s is a root", s.Name)
		case s.Name == "handle postProcessSingle" || s.Name == "handle sideEffect":
			// Events processSingle's job put: under its publish span, from the detail's
			// traceparent (a remote parent: it crossed the bus).
			require.True(t, s.Parent.Remote, "%s has a remote parent", s.Name)
			pub := parentOf(s)
			require.Equal(t, "publish", pub.Name, "%s hangs under a publish span", s.Name)
			job := parentOf(pub)
			require.Equal(t, "job processSingle", job.Name)
			require.Equal(t, "handle processSingle", parentOf(job).Name)
		case strings.HasPrefix(s.Name, "job "):
			require.Equal(t, "handle "+strings.TrimPrefix(s.Name, "job "), parentOf(s).Name)
		case strings.HasPrefix(s.Name, "callback "):
			// The report is the message's; a job's own heartbeat (proving its token) the job's.
			p := parentOf(s).Name
			require.True(t, strings.HasPrefix(p, "handle ") || strings.HasPrefix(p, "job "), "%s is under a message or a job, not %s", s.Name, p)
		default:
			// AWS calls and publishes: somewhere under the execution's spans.
			require.True(t, s.hasParent(), "%s (%s) has a parent", s.Name, queue)
			parentOf(s)
			if s.attr("rpc.system") == "aws-api" {
				require.Equal(t, awstest.Region, s.attr("cloud.region"), "%s carries the region (issue 29.8)", s.Name)
			}
		}
	}
	for _, name := range []string{"job getMultiple", "job processSingle", "job postProcessSingle", "job sideEffect", "job postProcessAll",
		"callback SendTaskSuccess", "publish", "EventBridge.PutEvents", "S3.PutObject", "SFN.SendTaskSuccess"} {
		require.Positive(t, names[name], "a %q span in the trace (all: %v)", name, names)
	}
	t.Logf("%d spans in the execution's trace %s: %v", len(inTrace), traceID, names)
	// The event sideEffect published carries the trace on: its PutEvents is in it.
	sideEffectPublish := false
	for _, s := range inTrace {
		if s.Name == "publish" && parentOf(s).Name == "job sideEffect" {
			sideEffectPublish = true
		}
	}
	require.True(t, sideEffectPublish, "sideEffect's own event is published in the trace")
}

// TestE2ETracingBatch: a batch is one trace: the batch span holds the HeadObject of
// each file, the manifest, the Glue start and the run, and the etl-success event
// published at the run's end carries the trace on.
func TestE2ETracingBatch(t *testing.T) {
	spansFile := filepath.Join(t.TempDir(), "spans.jsonl")
	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=5s", "WORKER_GLUE_POLL_INTERVAL=1s")
	results := st.subscribeResults()
	w := st.startWorker("OTEL_TRACES_EXPORTER=console", "WORKER_TRACE_FILE="+spansFile)
	const files = 3
	st.putFiles("traced", files)
	var traceparent string
	eventually(t, 2*time.Minute, "the run's result event", func() bool {
		out, err := st.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(results), MaxNumberOfMessages: 1, WaitTimeSeconds: 1})
		require.NoError(t, err)
		for _, m := range out.Messages {
			var env struct {
				DetailType string `json:"detail-type"`
				Detail     struct {
					Traceparent string `json:"traceparent"`
				} `json:"detail"`
			}
			require.NoError(t, json.Unmarshal([]byte(aws.ToString(m.Body)), &env))
			require.Equal(t, "etl-success", env.DetailType)
			traceparent = env.Detail.Traceparent
		}
		return traceparent != ""
	})
	w.stopAndFlush()

	spans, byID := readSpans(t, spansFile)
	var root exportedSpan
	for _, s := range spans {
		if s.Name == "batch" {
			require.Empty(t, root.Name, "one batch")
			root = s
		}
	}
	require.Equal(t, "batch", root.Name)
	require.False(t, root.hasParent(), "a batch is a root")
	parts := strings.Split(traceparent, "-")
	require.Len(t, parts, 4, "traceparent %q", traceparent)
	require.Equal(t, root.SpanContext.TraceID, parts[1], "the result event carries the batch's trace")
	publish, ok := byID[parts[2]]
	require.True(t, ok, "the result event's parent span is in the file")
	require.Equal(t, "publish", publish.Name)
	require.Equal(t, "glue run", byID[publish.Parent.SpanID].Name, "the result is published under the run's span")

	under := map[string][]string{} // parent name → children's names
	for _, s := range spans {
		if s.SpanContext.TraceID != root.SpanContext.TraceID || !s.hasParent() {
			continue
		}
		p, ok := byID[s.Parent.SpanID]
		require.True(t, ok, "the parent of %s is in the file", s.Name)
		under[p.Name] = append(under[p.Name], s.Name)
	}
	require.ElementsMatch(t, []string{"S3.HeadObject", "S3.HeadObject", "S3.HeadObject"}, under["verify"], "a HeadObject per file")
	require.Contains(t, under["manifest"], "S3.PutObject")
	require.Contains(t, under["glue start"], "Glue.StartJobRun")
	for _, name := range []string{"verify", "manifest", "glue start", "glue run"} {
		require.Contains(t, under["batch"], name)
	}
}

package console

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskbridge/taskbridge/internal/dlq"
)

// fakeSFN holds executions newest first, as ListExecutions answers, and refuses
// what Step Functions refuses: a MaxResults over 1000, a token it did not give.
type fakeSFN struct {
	mu         sync.Mutex
	executions []sfntypes.ExecutionListItem
	history    map[string][]sfntypes.HistoryEvent
	lists      int // ListExecutions calls
}

func (f *fakeSFN) ListExecutions(_ context.Context, in *sfn.ListExecutionsInput, _ ...func(*sfn.Options)) (*sfn.ListExecutionsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if in.MaxResults < 0 || in.MaxResults > 1000 {
		return nil, &smithy.GenericAPIError{Code: "ValidationException", Message: "maxResults must be 0..1000"}
	}
	size := int(in.MaxResults)
	if size == 0 {
		size = 100
	}
	var match []sfntypes.ExecutionListItem
	for _, e := range f.executions {
		if aws.ToString(e.StateMachineArn) == aws.ToString(in.StateMachineArn) && (in.StatusFilter == "" || e.Status == in.StatusFilter) {
			match = append(match, e)
		}
	}
	from := 0
	if in.NextToken != nil {
		n, err := strconv.Atoi(strings.TrimPrefix(*in.NextToken, "tok-"))
		if err != nil || n > len(match) {
			return nil, &smithy.GenericAPIError{Code: "InvalidToken", Message: "invalid pagination token"}
		}
		from = n
	}
	out := &sfn.ListExecutionsOutput{Executions: match[from:min(len(match), from+size)]}
	if from+size < len(match) {
		out.NextToken = aws.String(fmt.Sprintf("tok-%d", from+size))
	}
	return out, nil
}

func (f *fakeSFN) DescribeExecution(_ context.Context, in *sfn.DescribeExecutionInput, _ ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.executions {
		if aws.ToString(e.ExecutionArn) == aws.ToString(in.ExecutionArn) {
			return &sfn.DescribeExecutionOutput{ExecutionArn: e.ExecutionArn, Name: e.Name, StateMachineArn: e.StateMachineArn,
				Status: e.Status, StartDate: e.StartDate, StopDate: e.StopDate, Input: aws.String(`{"names": ["Ada"]}`),
				TraceHeader: aws.String("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")}, nil
		}
	}
	return nil, &smithy.GenericAPIError{Code: "ExecutionDoesNotExist", Message: "Execution Does Not Exist"}
}

func (f *fakeSFN) GetExecutionHistory(_ context.Context, in *sfn.GetExecutionHistoryInput, _ ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error) {
	if in.MaxResults < 0 || in.MaxResults > 1000 {
		return nil, &smithy.GenericAPIError{Code: "ValidationException", Message: "maxResults must be 0..1000"}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &sfn.GetExecutionHistoryOutput{Events: f.history[aws.ToString(in.ExecutionArn)]}, nil
}

// fakeS3 holds the data bucket's objects.
type fakeS3 struct {
	bucket  string
	objects map[string]string
}

func (f *fakeS3) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	if aws.ToString(in.Bucket) != f.bucket {
		return nil, &smithy.GenericAPIError{Code: "NoSuchBucket"}
	}
	var keys []string
	for k := range f.objects {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) && k > aws.ToString(in.ContinuationToken) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := &s3.ListObjectsV2Output{IsTruncated: aws.Bool(false)}
	max := int(aws.ToInt32(in.MaxKeys))
	if len(keys) > max {
		keys = keys[:max]
		out.IsTruncated, out.NextContinuationToken = aws.Bool(true), aws.String(keys[max-1])
	}
	for _, k := range keys {
		out.Contents = append(out.Contents, s3types.Object{Key: aws.String(k), Size: aws.Int64(int64(len(f.objects[k])))})
	}
	return out, nil
}

func (f *fakeS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	body, ok := f.objects[aws.ToString(in.Key)]
	if aws.ToString(in.Bucket) != f.bucket || !ok {
		return nil, &smithy.GenericAPIError{Code: "NoSuchKey"}
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(strings.NewReader(body)), ContentLength: aws.Int64(int64(len(body)))}, nil
}

// fakeDeadLetters counts the actions it is asked for.
type fakeDeadLetters struct {
	mu       sync.Mutex
	listing  dlq.Listing
	purges   int
	purgeErr error // answered by Purge, after counting it
	redrives int
	reads    int
	limits   []int // of each List
}

func (f *fakeDeadLetters) Attributes(context.Context, string) (dlq.Attributes, error) {
	return dlq.Attributes{Visible: f.listing.Depth}, nil
}

func (f *fakeDeadLetters) List(_ context.Context, q dlq.Queue, limit int) (dlq.Listing, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	f.limits = append(f.limits, limit)
	if limit < 1 {
		return dlq.Listing{}, fmt.Errorf("limit %d", limit)
	}
	return f.listing, nil
}

func (f *fakeDeadLetters) Show(context.Context, dlq.Queue, int) ([]dlq.Message, error) {
	var out []dlq.Message
	for _, g := range f.listing.Groups {
		out = append(out, g.Messages...)
	}
	return out, nil
}

func (f *fakeDeadLetters) Redrive(context.Context, dlq.Queue, dlq.RedriveOptions) (dlq.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.redrives++
	return dlq.Summary{Moved: f.listing.Depth}, nil
}

func (f *fakeDeadLetters) Purge(context.Context, dlq.Queue) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.purges++
	return f.purgeErr
}

// rig is a console over fakes.
type rig struct {
	srv  *Server
	h    http.Handler
	sfn  *fakeSFN
	s3   *fakeS3
	dl   *fakeDeadLetters
	logs *observer.ObservedLogs
	now  time.Time
}

const machineARN = "arn:aws:states:us-east-1:123456789012:stateMachine:tb-cookies"

func setup(t *testing.T, cfg Config) *rig {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	core, logs := observer.New(zap.DebugLevel)
	r := &rig{sfn: &fakeSFN{history: map[string][]sfntypes.HistoryEvent{}}, s3: &fakeS3{bucket: "tb-data", objects: map[string]string{}}, dl: &fakeDeadLetters{}, logs: logs,
		now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	stack := Stack{Name: "tb", DataBucket: "tb-data",
		Queues:        []Queue{{Name: "getMultiple", Kind: "job", Job: "getMultiple", DetailTypes: []string{"getMultiple"}, URL: "q1", DLQURL: "d1"}},
		StateMachines: []StateMachine{{Name: "cookies", ARN: machineARN}}}
	srv, err := New(cfg, stack, Deps{SFN: r.sfn, S3: r.s3, DeadLetters: r.dl}, zap.New(core))
	require.NoError(t, err)
	srv.NowFunc = func() time.Time { return r.now }
	r.srv, r.h = srv, srv.Handler()
	return r
}

// get answers a GET of path.
func (r *rig) get(t *testing.T, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	return w
}

// post answers a form POST of path with cookies.
func (r *rig) post(t *testing.T, path string, form url.Values, cookies []*http.Cookie, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	return w
}

// addExecutions adds n executions, newest first, one a minute back from now.
func (r *rig) addExecutions(n int, status sfntypes.ExecutionStatus) {
	for i := range n {
		start := r.now.Add(-time.Duration(i+1) * time.Minute)
		r.sfn.executions = append(r.sfn.executions, sfntypes.ExecutionListItem{
			ExecutionArn: aws.String(fmt.Sprintf("arn:aws:states:us-east-1:123456789012:execution:tb-cookies:run-%04d", i)),
			Name:         aws.String(fmt.Sprintf("run-%04d", i)), StateMachineArn: aws.String(machineARN),
			Status: status, StartDate: aws.Time(start), StopDate: aws.Time(start.Add(3 * time.Second)),
		})
	}
}

func zapString(k, v string) zap.Field { return zap.String(k, v) }

func listener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}

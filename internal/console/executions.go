package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"

	"github.com/taskbridge/taskbridge/internal/dlq"
	"github.com/taskbridge/taskbridge/internal/s3record"
)

// statuses are the filters of the executions list (ListExecutions' statusFilter).
var statuses = []string{"RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"}

type executionRow struct {
	Name, ARN, Status string
	Start, Stop       time.Time
	Duration          time.Duration
}

// measure sets the row's duration: from its start to its stop, or to now while it
// runs.
func (r *executionRow) measure(now time.Time) {
	if r.Stop.IsZero() {
		r.Duration = now.Sub(r.Start)
		return
	}
	r.Duration = r.Stop.Sub(r.Start)
}

type executionsData struct {
	Machine   string
	Status    string
	Statuses  []string
	Rows      []executionRow
	Next      string // the next page's token
	PageSize  int
	FirstPage bool
}

// listed is one page of a listing as read from AWS: its items, and the token of the
// next page (empty on the last).
type listed[T any] struct {
	Items []T
	Next  string
}

func (s *Server) executionsPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("machine")
	if name == "" && len(s.stack.StateMachines) > 0 {
		name = s.stack.StateMachines[0].Name
	}
	m, ok := s.stack.machine(name)
	if !ok {
		s.fail(w, r, http.StatusNotFound, "find state machine", fmt.Errorf("no state machine %q in the topology", name))
		return
	}
	status := q.Get("status")
	if status != "" && !slices.Contains(statuses, status) {
		s.fail(w, r, http.StatusBadRequest, "filter executions", fmt.Errorf("unknown status %q", status))
		return
	}
	token := q.Get("next")
	key := "executions:" + m.ARN + ":" + status + ":" + token
	read, at, err := cached(r.Context(), s.cache, key, fresh(r), func(ctx context.Context) (listed[executionRow], error) {
		in := &sfn.ListExecutionsInput{StateMachineArn: aws.String(m.ARN), MaxResults: int32(s.cfg.PageSize)}
		if status != "" {
			in.StatusFilter = sfntypes.ExecutionStatus(status)
		}
		if token != "" {
			in.NextToken = aws.String(token)
		}
		out, err := s.deps.SFN.ListExecutions(ctx, in)
		if err != nil {
			return listed[executionRow]{}, fmt.Errorf("list executions of %s: %w", m.Name, err)
		}
		var p listed[executionRow]
		for _, e := range out.Executions {
			p.Items = append(p.Items, executionRow{Name: aws.ToString(e.Name), ARN: aws.ToString(e.ExecutionArn), Status: string(e.Status), Start: aws.ToTime(e.StartDate), Stop: aws.ToTime(e.StopDate)})
		}
		p.Next = aws.ToString(out.NextToken)
		return p, nil
	})
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "list executions", err)
		return
	}
	rows := slices.Clone(read.Items) // the cached page is shared by the requests that read it
	now := s.NowFunc()
	for i := range rows {
		rows[i].measure(now)
	}
	d := executionsData{Machine: m.Name, Status: status, Statuses: statuses, Rows: rows, Next: read.Next, PageSize: s.cfg.PageSize, FirstPage: token == ""}
	s.render(w, r, "executions", page{Title: "Executions of " + m.Name, Nav: "executions", ReadAt: at, Data: d})
}

// maxHistoryPage is the most history events one page of a timeline reads
// (GetExecutionHistory's maximum).
const maxHistoryPage = 1000

// maxShown is the most bytes of an input, output or object a page shows.
const maxShown = 4096

type executionData struct {
	Execution  executionRow
	Machine    string
	Input      string
	Output     string
	Error      string
	Cause      string
	TraceID    string
	Steps      []step
	Events     int
	NextEvents string // the next history page
	Page       string
	Objects    []object
	NextObject string
	Prefix     string
	Bucket     string
}

type object struct {
	Key  string
	Size int64
	At   time.Time
}

type executionRead struct {
	Describe   *sfn.DescribeExecutionOutput
	Events     []sfntypes.HistoryEvent
	NextEvents string
}

func (s *Server) executionPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	arn, historyPage, objectsPage := q.Get("arn"), q.Get("page"), q.Get("objects")
	if arn == "" {
		s.fail(w, r, http.StatusBadRequest, "show an execution", errors.New("no arn given"))
		return
	}
	read, at, err := cached(r.Context(), s.cache, "execution:"+arn+":"+historyPage, fresh(r), func(ctx context.Context) (executionRead, error) {
		d, err := s.deps.SFN.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		if err != nil {
			return executionRead{}, fmt.Errorf("describe execution: %w", err)
		}
		in := &sfn.GetExecutionHistoryInput{ExecutionArn: aws.String(arn), MaxResults: maxHistoryPage}
		if historyPage != "" {
			in.NextToken = aws.String(historyPage)
		}
		h, err := s.deps.SFN.GetExecutionHistory(ctx, in)
		if err != nil {
			return executionRead{}, fmt.Errorf("read execution history: %w", err)
		}
		return executionRead{Describe: d, Events: h.Events, NextEvents: aws.ToString(h.NextToken)}, nil
	})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "ExecutionDoesNotExist" || apiErr.ErrorCode() == "InvalidArn") {
		s.fail(w, r, http.StatusNotFound, "show an execution", err)
		return
	}
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "show an execution", err)
		return
	}
	desc := read.Describe
	name := aws.ToString(desc.Name)
	prefix := name + "/" // every object of an execution is under its name (DESIGN.md)
	objs, objAt, err := cached(r.Context(), s.cache, "objects:"+prefix+":"+objectsPage, fresh(r), func(ctx context.Context) (listed[object], error) {
		return s.listObjects(ctx, prefix, objectsPage)
	})
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "list the execution's objects", err)
		return
	}
	d := executionData{
		Execution: executionRow{Name: name, ARN: arn, Status: string(desc.Status), Start: aws.ToTime(desc.StartDate), Stop: aws.ToTime(desc.StopDate)},
		Input:     shown(aws.ToString(desc.Input)), Output: shown(aws.ToString(desc.Output)),
		Error: aws.ToString(desc.Error), Cause: shown(aws.ToString(desc.Cause)),
		TraceID: traceID(aws.ToString(desc.TraceHeader)),
		Steps:   timeline(read.Events, s.stack), Events: len(read.Events), NextEvents: read.NextEvents, Page: historyPage,
		Objects: objs.Items, NextObject: objs.Next, Prefix: prefix, Bucket: s.stack.DataBucket,
	}
	for _, m := range s.stack.StateMachines {
		if m.ARN == aws.ToString(desc.StateMachineArn) {
			d.Machine = m.Name
		}
	}
	d.Execution.measure(s.NowFunc())
	s.render(w, r, "execution", page{Title: "Execution " + name, Nav: "executions", ReadAt: oldest(at, objAt), Data: d})
}

func (s *Server) listObjects(ctx context.Context, prefix, token string) (listed[object], error) {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.stack.DataBucket), Prefix: aws.String(prefix), MaxKeys: aws.Int32(int32(s.cfg.PageSize))}
	if token != "" {
		in.ContinuationToken = aws.String(token)
	}
	out, err := s.deps.S3.ListObjectsV2(ctx, in)
	if err != nil {
		return listed[object]{}, fmt.Errorf("list s3://%s/%s: %w", s.stack.DataBucket, prefix, err)
	}
	var o listed[object]
	for _, obj := range out.Contents {
		o.Items = append(o.Items, object{Key: aws.ToString(obj.Key), Size: aws.ToInt64(obj.Size), At: aws.ToTime(obj.LastModified)})
	}
	if aws.ToBool(out.IsTruncated) {
		o.Next = aws.ToString(out.NextContinuationToken)
	}
	return o, nil
}

type objectData struct {
	Bucket, Key, Body string
	Size              int64
	Truncated         bool
}

// objectPage shows the start of one object of the data bucket.
func (s *Server) objectPage(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		s.fail(w, r, http.StatusBadRequest, "show an object", errors.New("no key given"))
		return
	}
	d, at, err := cached(r.Context(), s.cache, "object:"+key, fresh(r), func(ctx context.Context) (objectData, error) {
		out, err := s.deps.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.stack.DataBucket), Key: aws.String(key), Range: aws.String(fmt.Sprintf("bytes=0-%d", maxShown-1))})
		if err != nil {
			return objectData{}, fmt.Errorf("get s3://%s/%s: %w", s.stack.DataBucket, key, err)
		}
		defer out.Body.Close()
		b, err := io.ReadAll(io.LimitReader(out.Body, maxShown))
		if err != nil {
			return objectData{}, fmt.Errorf("read s3://%s/%s: %w", s.stack.DataBucket, key, err)
		}
		size := aws.ToInt64(out.ContentLength)
		if cr := aws.ToString(out.ContentRange); cr != "" { // bytes 0-4095/12345
			if _, total, ok := strings.Cut(cr, "/"); ok {
				if n, err := strconv.ParseInt(total, 10, 64); err == nil {
					size = n // the whole object's size; "*" (unknown) keeps the length read
				}
			}
		}
		return objectData{Bucket: s.stack.DataBucket, Key: key, Body: shown(string(b)), Size: size, Truncated: size > int64(len(b))}, nil
	})
	if s3record.NotFound(err) {
		s.fail(w, r, http.StatusNotFound, "show an object", err)
		return
	}
	if err != nil {
		s.fail(w, r, http.StatusBadGateway, "show an object", err)
		return
	}
	s.render(w, r, "object", page{Title: key, Nav: "executions", ReadAt: at, Data: d})
}

// presignedQuery is the query string of a presigned URL: a credential (DESIGN.md).
var presignedQuery = regexp.MustCompile(`(https?://[^\s"?]+)\?[^\s"]*X-Amz-(?:Signature|Credential)[^\s"]*`)

// shown is text as a page may show it: task tokens hashed, presigned URLs without
// their query, at most maxShown bytes.
func shown(text string) string {
	text = dlq.Redact(text, "")
	text = presignedQuery.ReplaceAllString(text, "$1?<presigned query removed>")
	if len(text) > maxShown {
		text = strings.ToValidUTF8(text[:maxShown], "") + " …"
	}
	return text
}

// traceID is the X-Ray trace id of a trace header (Root=1-…;Parent=…), as the
// W3C trace id tracing tools search by; empty when tracing was off.
func traceID(header string) string {
	for part := range strings.SplitSeq(header, ";") {
		if root, ok := strings.CutPrefix(strings.TrimSpace(part), "Root="); ok {
			return strings.ReplaceAll(strings.TrimPrefix(root, "1-"), "-", "")
		}
	}
	return ""
}

// claimCheck is the S3 key of a claim-checked output in the data bucket, if output
// is such a pointer.
func claimCheck(output, bucket string) string {
	var p struct {
		ClaimCheck string `json:"claimCheck"`
	}
	if json.Unmarshal([]byte(output), &p) != nil {
		return ""
	}
	key, ok := strings.CutPrefix(p.ClaimCheck, "s3://"+bucket+"/")
	if !ok {
		return ""
	}
	return key
}

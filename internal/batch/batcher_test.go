package batch

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/glue/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// fakeS3 holds objects by bucket and key, and answers as S3 does: HeadObject of a
// missing object is a NotFound (HeadObject has no body, hence no NoSuchKey), GetObject's
// is a NoSuchKey, a call without bucket or key is refused, and ETags come quoted. A
// PutObject with If-None-Match: * of a key that exists, or with an If-Match that is
// not the object's ETag, is refused with 412 PreconditionFailed, atomically; If-Match
// of a key that does not exist is a 404 NoSuchKey; If-None-Match takes only "*". Its
// buckets keep no versions: HeadObject of a version id is a 400, as S3's is there.
// headErr, when set, decides HeadObject's answer for a key first.
type fakeS3 struct {
	mu       sync.Mutex
	objs     map[string][]byte    // "bucket/key" → body
	modified map[string]time.Time // "bucket/key" → LastModified
	heads    []string             // keys asked for, in order
	headErr  func(key string) error
}

func newFakeS3() *fakeS3 { return &fakeS3{objs: map[string][]byte{}, modified: map[string]time.Time{}} }

func (f *fakeS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if aws.ToString(in.Bucket) == "" || aws.ToString(in.Key) == "" {
		return nil, &smithy.GenericAPIError{Code: "InvalidRequest", Message: "bucket and key are required"}
	}
	if in.IfNoneMatch != nil && *in.IfNoneMatch != "*" {
		return nil, &smithy.GenericAPIError{Code: "NotImplemented", Message: "If-None-Match takes only *"}
	}
	b, _ := io.ReadAll(in.Body)
	name := aws.ToString(in.Bucket) + "/" + aws.ToString(in.Key)
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, exists := f.objs[name]
	switch {
	case in.IfNoneMatch != nil && exists:
		return nil, &smithy.GenericAPIError{Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold"}
	case in.IfMatch != nil && !exists:
		return nil, &s3types.NoSuchKey{Message: aws.String("The specified key does not exist.")}
	case in.IfMatch != nil && strings.Trim(*in.IfMatch, `"`) != strings.Trim(etagOf(cur), `"`):
		return nil, &smithy.GenericAPIError{Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold"}
	}
	f.objs[name] = b
	if f.modified == nil {
		f.modified = map[string]time.Time{}
	}
	f.modified[name] = time.Now()
	return &s3.PutObjectOutput{ETag: aws.String(etagOf(b))}, nil
}

func (f *fakeS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	if aws.ToString(in.Bucket) == "" || aws.ToString(in.Key) == "" {
		return nil, &smithy.GenericAPIError{Code: "InvalidRequest", Message: "bucket and key are required"}
	}
	name := aws.ToString(in.Bucket) + "/" + aws.ToString(in.Key)
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[name]
	if !ok {
		return nil, &s3types.NoSuchKey{Message: aws.String("The specified key does not exist.")}
	}
	mod := f.modified[name]
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(b)), ETag: aws.String(etagOf(b)), LastModified: &mod, ContentLength: aws.Int64(int64(len(b)))}, nil
}

func (f *fakeS3) HeadObject(_ context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	if aws.ToString(in.Bucket) == "" || aws.ToString(in.Key) == "" {
		return nil, &smithy.GenericAPIError{Code: "InvalidRequest", Message: "bucket and key are required"}
	}
	if in.VersionId != nil { // its buckets keep no versions
		return nil, &smithy.GenericAPIError{Code: "BadRequest", Message: "Bad Request"}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heads = append(f.heads, aws.ToString(in.Key))
	if f.headErr != nil {
		if err := f.headErr(aws.ToString(in.Key)); err != nil {
			return nil, err
		}
	}
	b, ok := f.objs[aws.ToString(in.Bucket)+"/"+aws.ToString(in.Key)]
	if !ok {
		return nil, &s3types.NotFound{Message: aws.String("Not Found")}
	}
	return &s3.HeadObjectOutput{ContentLength: aws.Int64(int64(len(b))), ETag: aws.String(etagOf(b))}, nil
}

// etagOf is S3's ETag of a single-part upload: the quoted MD5 of the body.
func etagOf(b []byte) string {
	sum := md5.Sum(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// upload puts objects into the landing bucket of the rig's S3, as a producer
// would before S3 sends their events; the body is the key.
func (r *rig) upload(keys ...string) {
	r.s3.mu.Lock()
	defer r.s3.mu.Unlock()
	for _, k := range keys {
		r.s3.objs["landing/"+k] = []byte(k)
	}
}

// fakeGlue starts runs (refusing the first refuse calls, and every call before
// busyUntil, with ConcurrentRunsExceeded as Glue does at MaxConcurrentRuns) and ends
// each with endState.
type fakeGlue struct {
	mu        sync.Mutex
	refuse    int
	busyUntil time.Time
	final     error
	endState  types.JobRunState
	started   []map[string]string
	startAt   []time.Time
	history   []types.JobRun // what GetJobRuns lists, two runs a page: the runs started, newest first, and any set by a test
	// lostReplies: so many started runs answer a reset connection, as a reply
	// lost after Glue acted does.
	lostReplies int
	// resets: so many calls fail on the way in, Glue doing nothing.
	resets int
	// listErr, when set, is GetJobRuns' answer.
	listErr error
}

func (f *fakeGlue) StartJobRun(_ context.Context, in *glue.StartJobRunInput, _ ...func(*glue.Options)) (*glue.StartJobRunOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.final != nil {
		return nil, f.final
	}
	if f.resets > 0 {
		f.resets--
		return nil, &smithy.OperationError{ServiceID: "Glue", OperationName: "StartJobRun", Err: errors.New("dial tcp: connection refused")}
	}
	if f.refuse > 0 || time.Now().Before(f.busyUntil) {
		f.refuse = max(f.refuse-1, 0)
		return nil, &types.ConcurrentRunsExceededException{Message: aws.String("busy")}
	}
	f.started = append(f.started, in.Arguments)
	f.startAt = append(f.startAt, time.Now())
	id := fmt.Sprintf("jr_%d", len(f.started))
	now := time.Now()
	// Glue lists its runs newest first.
	f.history = append([]types.JobRun{{Id: aws.String(id), JobRunState: types.JobRunStateRunning, StartedOn: &now, Arguments: in.Arguments}}, f.history...)
	if f.lostReplies > 0 {
		f.lostReplies--
		return nil, &smithy.OperationError{ServiceID: "Glue", OperationName: "StartJobRun", Err: errors.New("read: connection reset by peer")}
	}
	return &glue.StartJobRunOutput{JobRunId: aws.String(id)}, nil
}

func (f *fakeGlue) GetJobRun(_ context.Context, in *glue.GetJobRunInput, _ ...func(*glue.Options)) (*glue.GetJobRunOutput, error) {
	state := f.endState
	if state == "" {
		state = types.JobRunStateSucceeded
	}
	jr := &types.JobRun{Id: in.RunId, JobRunState: state}
	if state == types.JobRunStateFailed {
		jr.ErrorMessage = aws.String("script exploded")
	}
	return &glue.GetJobRunOutput{JobRun: jr}, nil
}

func (f *fakeGlue) GetJobRuns(_ context.Context, in *glue.GetJobRunsInput, _ ...func(*glue.Options)) (*glue.GetJobRunsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	from, _ := strconv.Atoi(aws.ToString(in.NextToken))
	to := min(from+2, len(f.history))
	out := &glue.GetJobRunsOutput{JobRuns: f.history[from:to]}
	if to < len(f.history) {
		out.NextToken = aws.String(strconv.Itoa(to))
	}
	return out, nil
}

type fakePub struct {
	mu     sync.Mutex
	events map[string][]ResultDetail
}

func (p *fakePub) Publish(_ context.Context, detailType string, detail any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events[detailType] = append(p.events[detailType], detail.(ResultDetail))
	return nil
}

type rig struct {
	b      *Batcher
	s3     *fakeS3
	glue   *fakeGlue
	pub    *fakePub
	cancel context.CancelFunc
	done   chan error
}

func newRig(t *testing.T, cfg Config, g *fakeGlue) *rig {
	t.Helper()
	return newRigWithS3(t, cfg, g, newFakeS3())
}

// newRigWithS3 starts a Batcher on an S3 that may hold what an earlier one wrote.
func newRigWithS3(t *testing.T, cfg Config, g *fakeGlue, store *fakeS3) *rig {
	t.Helper()
	cfg.LandingBucket, cfg.DataBucket, cfg.GlueJob = "landing", "data", "etl"
	if cfg.MaxFiles == 0 {
		cfg.MaxFiles = 100
	}
	if cfg.Window == 0 {
		cfg.Window = 15 * time.Minute
	}
	cfg.GluePollInterval = time.Second
	r := &rig{s3: store, glue: g, pub: &fakePub{events: map[string][]ResultDetail{}}, done: make(chan error, 1)}
	b, err := New(cfg, r.s3, g, r.pub, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	r.b = b
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- b.Run(ctx) }()
	return r
}

func (r *rig) stop(t *testing.T) {
	r.cancel()
	require.NoError(t, <-r.done)
}

func s3Event(bucket, key, etag string) consumer.Message {
	body, _ := json.Marshal(map[string]any{
		"version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3", "time": "2026-11-22T10:00:00Z",
		"detail": map[string]any{"bucket": map[string]any{"name": bucket}, "object": map[string]any{"key": key, "size": 10, "etag": etag}},
	})
	return consumer.Message{ID: key, Queue: "landing", Body: string(body), ReceiveCount: 1}
}

// handleAll handles every message in its own goroutine, as the consumer would.
func handleAll(b *Batcher, msgs []consumer.Message) []error {
	errs := make([]error, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() { errs[i] = b.Handle(context.Background(), m) })
	}
	wg.Wait()
	return errs
}

func (r *rig) manifests(t *testing.T) []Manifest {
	r.s3.mu.Lock()
	defer r.s3.mu.Unlock()
	var out []Manifest
	for k, b := range r.s3.objs {
		if !strings.HasPrefix(k, "data/manifests/") {
			continue
		}
		var m Manifest
		require.NoError(t, json.Unmarshal(b, &m))
		out = append(out, m)
	}
	return out
}

func TestBurstMakesExactBatchesAndTheRestFlushesAtTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, &fakeGlue{})
		var msgs []consumer.Message
		for i := range 250 {
			key := fmt.Sprintf("in/f%03d.csv", i)
			r.upload(key)
			msgs = append(msgs, s3Event("landing", key, fmt.Sprint(i)))
		}
		start := time.Now()
		for _, err := range handleAll(r.b, msgs) {
			require.NoError(t, err)
		}
		sizes := map[int]int{}
		keys := map[string]int{}
		for _, m := range r.manifests(t) {
			sizes[len(m.Files)]++
			for _, f := range m.Files {
				keys[f.Key]++
			}
		}
		require.Equal(t, map[int]int{100: 2, 50: 1}, sizes)
		require.Len(t, keys, 250)
		for k, n := range keys {
			require.Equal(t, 1, n, "key %s in exactly one manifest", k)
		}
		require.Len(t, r.glue.startAt, 3)
		require.Equal(t, 15*time.Minute, r.glue.startAt[2].Sub(start), "the last batch flushes one window after its first file")
		require.Equal(t, "50", r.glue.started[2]["--file_count"])
		require.Contains(t, r.glue.started[2]["--manifest"], "s3://data/manifests/")
		time.Sleep(3 * time.Second)
		synctest.Wait()
		r.stop(t)
		require.Len(t, r.pub.events[DetailSuccess], 3, "an etl-success per run")
	})
}

func TestDuplicateEventsCountOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The window closes the batch: with a count of 3, the duplicate could come
		// after the batch closed and rightly open the next one.
		r := newRig(t, Config{MaxFiles: 10, Window: time.Minute}, &fakeGlue{})
		r.upload("a", "b")
		errs := handleAll(r.b, []consumer.Message{s3Event("landing", "a", "1"), s3Event("landing", "a", "1"), s3Event("landing", "b", "1"), s3Event("landing", "a", "2")})
		for _, err := range errs {
			require.NoError(t, err)
		}
		ms := r.manifests(t)
		require.Len(t, ms, 1)
		require.Len(t, ms[0].Files, 2, "a redelivery and a re-upload in one batch list the object once, as it is now")
		require.Len(t, r.s3.heads, 3, "a redelivery is not checked again")
		r.stop(t)
	})
}

func TestGlueBusyIsRetriedWhileHolding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGlue{refuse: 3}
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, g)
		r.upload("a", "b")
		require.NoError(t, r.b.Handle(context.Background(), s3Event("landing", "a", "1")))
		require.Len(t, g.started, 1)
		require.Equal(t, 3.0, testutil.ToFloat64(r.b.metrics.startRetries))
		r.stop(t)
	})
}

func TestFinalStartErrorPublishesEtlErrorAndRedelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGlue{final: &types.EntityNotFoundException{Message: aws.String("no such job")}}
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, g)
		r.upload("a", "b")
		err := r.b.Handle(context.Background(), s3Event("landing", "a", "1"))
		require.Error(t, err)
		require.False(t, consumer.IsDeadLetter(err), "the message is redelivered, then the DLQ")
		require.Len(t, r.pub.events[DetailError], 1)
		require.Equal(t, "START_FAILED", r.pub.events[DetailError][0].State)
		r.stop(t)
	})
}

// TestEndpointWithoutGlueIsARefusal: LocalStack's community edition answers 501 to
// StartJobRun and GetJobRuns alike. Nothing started, so the batch ends START_FAILED
// at once instead of waiting for a run history that will never be readable.
func TestEndpointWithoutGlueIsARefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		notEmulated := func(op string) error {
			return &smithy.OperationError{ServiceID: "Glue", OperationName: op, Err: &awshttp.ResponseError{
				ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusNotImplemented}},
					Err: &smithy.GenericAPIError{Code: "InternalFailure", Message: "The API for service glue is either not included in your current license plan or has not yet been emulated by LocalStack."}},
			}}
		}
		g := &fakeGlue{final: notEmulated("StartJobRun"), listErr: notEmulated("GetJobRuns")}
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, g)
		r.upload("a", "b")
		err := r.b.Handle(context.Background(), s3Event("landing", "a", "1"))
		require.Error(t, err)
		require.NotErrorIs(t, err, errStartUnknown)
		require.Len(t, r.pub.events[DetailError], 1)
		require.Equal(t, "START_FAILED", r.pub.events[DetailError][0].State)
		r.stop(t)
	})
}

func TestFailedRunPublishesEtlErrorWithItsMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, &fakeGlue{endState: types.JobRunStateFailed})
		r.upload("a", "b")
		require.NoError(t, r.b.Handle(context.Background(), s3Event("landing", "a", "1")))
		time.Sleep(3 * time.Second)
		synctest.Wait()
		r.stop(t)
		got := r.pub.events[DetailError]
		require.Len(t, got, 1)
		require.Equal(t, "FAILED", got[0].State)
		require.Equal(t, "script exploded", got[0].Error)
		require.Equal(t, 1, got[0].FileCount)
	})
}

func TestShutdownFlushesTheOpenBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{}, &fakeGlue{})
		errc := make(chan error, 2)
		r.upload("a", "b")
		go func() { errc <- r.b.Handle(context.Background(), s3Event("landing", "a", "1")) }()
		go func() { errc <- r.b.Handle(context.Background(), s3Event("landing", "b", "1")) }()
		time.Sleep(time.Second)
		synctest.Wait()
		require.Empty(t, r.glue.started, "the window is still open")
		r.stop(t)
		require.NoError(t, <-errc)
		require.NoError(t, <-errc)
		require.Len(t, r.glue.started, 1)
		require.Equal(t, "2", r.glue.started[0]["--file_count"])
		require.ErrorIs(t, r.b.Handle(context.Background(), s3Event("landing", "c", "1")), errStopped, "nothing new after a stop")
	})
}

func TestBadEventsAreDeadLettered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{KeyPrefix: "in/"}, &fakeGlue{})
		for name, body := range map[string]string{
			"not JSON":       "nope",
			"other source":   `{"detail-type":"Object Created","source":"aws.ec2","detail":{}}`,
			"other bucket":   s3Event("elsewhere", "in/a", "1").Body,
			"outside prefix": s3Event("landing", "out/a", "1").Body,
			"no key":         `{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"landing"},"object":{"size":1}}}`,
			"deleted event":  `{"detail-type":"Object Deleted","source":"aws.s3","detail":{"bucket":{"name":"landing"},"object":{"key":"in/a"}}}`,
		} {
			err := r.b.Handle(context.Background(), consumer.Message{ID: name, Body: body})
			require.True(t, consumer.IsDeadLetter(err), "%s: %v", name, err)
		}
		r.stop(t)
	})
}

// A run that ended while no worker ran (AWS keeps running it) is published by the
// next worker's start, once: its result is recorded, and a later start skips it.
func TestRunsThatEndedWhileDownArePublishedOnceOnRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		old := now.Add(-48 * time.Hour)
		ours := func(id, batch string, started time.Time) types.JobRun {
			return types.JobRun{Id: aws.String(id), JobRunState: types.JobRunStateSucceeded, StartedOn: &started,
				Arguments: map[string]string{"--manifest": "s3://data/manifests/" + batch + ".json", "--file_count": "3"}}
		}
		g := &fakeGlue{history: []types.JobRun{
			ours("jr_a", "batch-a", now),
			{Id: aws.String("jr_other"), JobRunState: types.JobRunStateSucceeded, StartedOn: &now, Arguments: map[string]string{"--manifest": "s3://elsewhere/x.json"}},
			ours("jr_b", "batch-b", now),
			ours("jr_old", "batch-old", old),
		}}
		r := newRig(t, Config{}, g)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		r.stop(t)
		got := r.pub.events[DetailSuccess]
		require.Len(t, got, 2, "the two recent runs of ours, from both pages; not another job's, not one older than a day")
		require.ElementsMatch(t, []string{"batch-a", "batch-b"}, []string{got[0].BatchID, got[1].BatchID})
		require.Equal(t, 3, got[0].FileCount)
		require.Contains(t, r.s3.objs, "data/results/batch-a.json")

		restarted := newRigWithS3(t, Config{}, g, r.s3)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		restarted.stop(t)
		require.Empty(t, restarted.pub.events[DetailSuccess], "recorded results are not published again")
	})
}

// The follower's lines name it once: zap repeats a key added twice, and a JSON line
// with "component" twice is read differently by each log tool.
func TestFollowerLogsItsComponentOnce(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.InfoLevel))
	b, err := New(Config{LandingBucket: "landing", DataBucket: "data", GlueJob: "etl", MaxFiles: 10, Window: time.Minute},
		&fakeS3{objs: map[string][]byte{}}, &fakeGlue{}, &fakePub{}, log, NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	b.follower.log.Info("x")
	require.Equal(t, 1, strings.Count(buf.String(), `"component"`), buf.String())
	require.Contains(t, buf.String(), `"component":"glue_follower"`)
}

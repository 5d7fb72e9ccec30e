package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	gluetypes "github.com/aws/aws-sdk-go-v2/service/glue/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/consumer"
)

// The claims against the real emulator, with replies lost or delayed at the SDK's
// boundary (awstest.Faults): S3 acted, the batcher does not know.

// motoRig is a landing and a data bucket and a Glue job on the emulator, and a
// fault proxy in front of it.
type motoRig struct {
	faults             *awstest.Faults
	s3                 *s3.Client // straight to the emulator: setup and inspection
	glue               *glue.Client
	landing, data, job string
}

func newMotoRig(t *testing.T) *motoRig {
	t.Helper()
	awstest.RequireMoto(t, "a Glue job (LocalStack's community edition has no Glue)")
	ctx := context.Background()
	cfg := awstest.Config(t)
	stack := awstest.Stack(t)
	r := &motoRig{faults: awstest.NewFaults(t, awstest.Endpoint(t)),
		s3:      s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
		glue:    glue.NewFromConfig(cfg),
		landing: stack + "-landing", data: stack + "-data", job: stack + "-etl"}
	for _, b := range []string{r.landing, r.data} {
		_, err := r.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
		require.NoError(t, err)
	}
	_, err := r.glue.CreateJob(ctx, &glue.CreateJobInput{
		Name: aws.String(r.job), Role: aws.String(awstest.RoleARN(t, "glue")),
		Command:           &gluetypes.JobCommand{Name: aws.String("glueetl"), ScriptLocation: aws.String("s3://" + r.data + "/glue/etl.py")},
		ExecutionProperty: &gluetypes.ExecutionProperty{MaxConcurrentRuns: 100},
	})
	require.NoError(t, err)
	t.Cleanup(func() { r.remove(t) }) // after the batchers' stops, registered later
	return r
}

// remove deletes the rig's job and buckets (neither keeps versions).
func (r *motoRig) remove(t *testing.T) {
	ctx := context.Background()
	_, _ = r.glue.DeleteJob(ctx, &glue.DeleteJobInput{JobName: aws.String(r.job)})
	for _, b := range []string{r.landing, r.data} {
		p := s3.NewListObjectsV2Paginator(r.s3, &s3.ListObjectsV2Input{Bucket: aws.String(b)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				break
			}
			for _, o := range page.Contents {
				_, _ = r.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: o.Key})
			}
		}
		_, err := r.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(b)})
		require.NoError(t, err, "remove bucket %s", b)
	}
}

// clients are S3 and Glue clients through the fault proxy making at most attempts
// attempts a call (1: every error is the SDK's last attempt).
func (r *motoRig) clients(t *testing.T, attempts int) (*s3.Client, *glue.Client) {
	cfg := r.faults.Config(t)
	cfg.RetryMaxAttempts = attempts
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), glue.NewFromConfig(cfg)
}

func (r *motoRig) config(cfg Config) Config {
	cfg.LandingBucket, cfg.DataBucket, cfg.GlueJob = r.landing, r.data, r.job
	cfg.GluePollInterval = time.Second
	return cfg
}

// batcher runs a Batcher whose calls go through the fault proxy; it stops at the
// end of the test.
func (r *motoRig) batcher(t *testing.T, cfg Config, attempts int) *Batcher {
	t.Helper()
	s3c, gc := r.clients(t, attempts)
	b, err := New(r.config(cfg), s3c, gc, &fakePub{events: map[string][]ResultDetail{}}, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return b
}

// claimer is a claimer of lease through the fault proxy, as a batcher has one.
func (r *motoRig) claimer(t *testing.T, lease time.Duration, attempts int) *claimer {
	s3c, gc := r.clients(t, attempts)
	return newClaimer(r.config(Config{Lease: lease}), s3c, gc, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
}

// upload puts body at key in the landing bucket and returns the event S3 would
// send of it (version "null": the bucket is not versioned; moto's one sequencer
// unless seq is set).
func (r *motoRig) upload(t *testing.T, key, body, seq string) (consumer.Message, File) {
	t.Helper()
	out, err := r.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(r.landing), Key: aws.String(key), Body: strings.NewReader(body)})
	require.NoError(t, err)
	etag := strings.Trim(aws.ToString(out.ETag), `"`)
	if seq == "" {
		seq = "617f08299329d189"
	}
	ev, _ := json.Marshal(map[string]any{
		"version": "0", "id": fmt.Sprintf("%s-%s-%s", key, etag, seq), "detail-type": "Object Created", "source": "aws.s3",
		"time": time.Now().UTC().Format(time.RFC3339), "resources": []string{"arn:aws:s3:::" + r.landing},
		"detail": map[string]any{"version": "0", "bucket": map[string]any{"name": r.landing},
			"object": map[string]any{"key": key, "size": len(body), "eTag": etag, "version-id": "null", "sequencer": seq}, "reason": "PutObject"},
	})
	f := File{Bucket: r.landing, Key: key, ETag: etag, Version: nullVersion, Sequencer: seq}
	return consumer.Message{ID: key + etag, Queue: "landing", Body: string(ev), ReceiveCount: 1}, f
}

// runs lists, per started Glue run, the files (key and ETag) of its manifest.
func (r *motoRig) runs(t *testing.T) [][]File {
	t.Helper()
	ctx := context.Background()
	var out [][]File
	p := glue.NewGetJobRunsPaginator(r.glue, &glue.GetJobRunsInput{JobName: aws.String(r.job)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		require.NoError(t, err)
		for _, jr := range page.JobRuns {
			key := strings.TrimPrefix(jr.Arguments["--manifest"], "s3://"+r.data+"/")
			obj, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.data), Key: aws.String(key)})
			require.NoError(t, err)
			b, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			require.NoError(t, err)
			var m Manifest
			require.NoError(t, json.Unmarshal(b, &m))
			out = append(out, m.Files)
		}
	}
	return out
}

// inRuns counts the runs each key+ETag is in.
func inRuns(runs [][]File) map[string]int {
	n := map[string]int{}
	for _, files := range runs {
		for _, f := range files {
			n[f.Key+"@"+f.ETag]++
		}
	}
	return n
}

// claimOf matches S3 requests on the claim of f (ifMatch: a takeover's).
func claimOf(f File, ifMatch bool) func(*http.Request, []byte) bool {
	key := claimKey(f)
	return func(r *http.Request, _ []byte) bool {
		return strings.HasSuffix(r.URL.Path, "/"+key) && (r.Header.Get("If-Match") != "") == ifMatch
	}
}

// Item 1: the claim's conditional PutObject lands and its answer is lost on the
// SDK's last attempt. The batch must list the file: the claim names it.
func TestAClaimWhoseAnswerWasLostIsReadBackAndKept(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		takeover bool
	}{{"first claim", false}, {"takeover", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newMotoRig(t)
			ma, a := r.upload(t, "in/a", "a1", "")
			mb, fb := r.upload(t, "in/b", "b1", "")
			if tc.takeover { // a batch that claimed a and gave up
				c := r.claimer(t, LeaseDefault, 3)
				l, err := c.open(context.Background(), "19700101T000000.000Z-gaveup", "s3://"+r.data+"/manifests/gaveup.json")
				require.NoError(t, err)
				res, err := c.claim(context.Background(), "19700101T000000.000Z-gaveup", a)
				require.NoError(t, err)
				require.Equal(t, claimed, res)
				l.abandon(context.Background())
			}
			b := r.batcher(t, Config{MaxFiles: 2, Window: time.Minute}, 1)
			r.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: claimOf(a, tc.takeover), Times: 1, Drop: true})
			for _, err := range handleAll(b, []consumer.Message{ma, mb}) {
				require.NoError(t, err)
			}
			require.Equal(t, 1, r.faults.Hits("s3:PutObject"), "the claim's answer was lost")
			// A redelivery of a's message (batched with a new file, c) finds a in
			// a started run.
			mc, fc := r.upload(t, "in/c", "c1", "")
			for _, err := range handleAll(b, []consumer.Message{ma, mc}) {
				require.NoError(t, err)
			}
			require.Equal(t, map[string]int{"in/a@" + a.ETag: 1, "in/b@" + fb.ETag: 1, "in/c@" + fc.ETag: 1}, inRuns(r.runs(t)), "each file in one run")
		})
	}
}

// Item 1, when even the read-back fails: the claim may name the batch, so the
// batch starts nothing and releases its claims; redelivered, both files run once.
func TestAClaimInDoubtGivesItsBatchUpAndNothingIsLost(t *testing.T) {
	t.Parallel()
	r := newMotoRig(t)
	ma, a := r.upload(t, "in/a", "a1", "")
	mb, b1 := r.upload(t, "in/b", "b1", "")
	b := r.batcher(t, Config{MaxFiles: 2, Window: time.Minute}, 1)
	r.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: claimOf(a, false), Times: 1, Drop: true})
	r.faults.Add(awstest.Fault{Op: "s3:GetObject", Match: claimOf(a, false), Drop: true})
	errs := handleAll(b, []consumer.Message{ma, mb})
	require.Error(t, errs[0])
	require.ErrorIs(t, errs[0], errClaimInDoubt)
	require.Error(t, errs[1], "b's batch was given up too")
	require.Empty(t, r.runs(t), "no run started while a's claim was in doubt")

	r.faults.Clear() // S3 answers again; SQS redelivers both
	for _, err := range handleAll(b, []consumer.Message{ma, mb}) {
		require.NoError(t, err)
	}
	require.Equal(t, map[string]int{"in/a@" + a.ETag: 1, "in/b@" + b1.ETag: 1}, inRuns(r.runs(t)))
}

// Item 5: a renewal whose answer comes back late. The owner may start a run while
// it thinks its lease fresh, and its StartJobRun may take Lease/4: until then no
// taker may find the lease stale. Judged by the record's deadline (stamped when the
// renewal was sent), the owner is careful for the delay; judged by LastModified
// and the reply's arrival, a taker abandoned the lease under the owner.
func TestARenewalAnsweredLateLetsNoTakerAbandonALeaseItsOwnerThinksFresh(t *testing.T) {
	t.Parallel()
	const lease = 8 * time.Second
	r := newMotoRig(t)
	ctx := context.Background()
	owner, taker := r.claimer(t, lease, 1), r.claimer(t, lease, 3)
	id := "20261207T000000.000Z-late"
	l, err := owner.open(ctx, id, "s3://"+r.data+"/manifests/"+id+".json")
	require.NoError(t, err)
	r.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: func(req *http.Request, _ []byte) bool { return strings.HasSuffix(req.URL.Path, leaseKey(id)) },
		Times: 1, Delay: lease * 3 / 4})
	require.NoError(t, l.write(ctx, stateOpen, ""), "the renewal landed; its answer came late")
	require.Equal(t, 1, r.faults.Hits("s3:PutObject"))

	// Just before the owner's own clock says its last renewal is half a lease old
	// (were it stamped at the answer), it may start a run that Glue registers up
	// to Lease/4 later.
	time.Sleep(lease/2 - 500*time.Millisecond)
	mayStart := l.fresh()
	time.Sleep(lease / 4)
	state, err := taker.state(ctx, id)
	require.NoError(t, err)
	require.False(t, mayStart && state != stateOpen, "a taker decided (%s) a lease its owner may still start a run under", state)
	require.False(t, mayStart, "the owner counts its renewal from when it sent it")
	require.Equal(t, stateAbandoned, state, "past the record's deadline and margin a taker takes the lease")
}

// Item 5: the record says how long it holds. A deploy that shortens the landing
// queue's visibility timeout gives new batchers a shorter Lease: they judge an old
// batcher's lease by its own duration, not theirs.
func TestALeaseIsJudgedByItsOwnDurationNotTheReaders(t *testing.T) {
	t.Parallel()
	r := newMotoRig(t)
	ctx := context.Background()
	owner, taker := r.claimer(t, 40*time.Second, 3), r.claimer(t, 1*time.Second, 3)
	id := "20261207T000000.000Z-long"
	_, err := owner.open(ctx, id, "s3://"+r.data+"/manifests/"+id+".json")
	require.NoError(t, err)
	time.Sleep(2500 * time.Millisecond) // past the reader's lease and its margin
	state, err := taker.state(ctx, id)
	require.NoError(t, err)
	require.Equal(t, stateOpen, state, "the owner holds it for 40 s")
}

// Item 7: an unversioned bucket's events say version-id "null" (moto's say it of
// every upload, with one constant sequencer). A key uploaded again with other
// bytes after the first upload's run started is a new file, in a run of its own.
func TestAKeyUploadedAgainInAnUnversionedBucketRunsAgain(t *testing.T) {
	t.Parallel()
	r := newMotoRig(t)
	b := r.batcher(t, Config{MaxFiles: 1, Window: time.Minute}, 3)
	m1, f1 := r.upload(t, "in/a", "first bytes", "")
	require.NoError(t, b.Handle(context.Background(), m1))
	m2, f2 := r.upload(t, "in/a", "second bytes", "")
	require.NotEqual(t, f1.ETag, f2.ETag)
	require.NoError(t, b.Handle(context.Background(), m2))
	require.NoError(t, b.Handle(context.Background(), m2), "a redelivery of the second upload is a duplicate")
	require.Equal(t, map[string]int{"in/a@" + f1.ETag: 1, "in/a@" + f2.ETag: 1}, inRuns(r.runs(t)))
}

// A lease write (a renewal) lands and its answer is lost on the SDK's last
// attempt, its read-back too: the owner does not know the ETag it made. Its next
// write finds the record changed, sees its own owner id in it, and goes on: the
// lease is not taken for lost (which would give a live batch up), and the commit
// lands.
func TestALeaseWriteWhoseAnswerWasLostIsStillTheOwners(t *testing.T) {
	t.Parallel()
	r := newMotoRig(t)
	ctx := context.Background()
	owner := r.claimer(t, LeaseDefault, 1)
	id := "20261207T000000.000Z-owner"
	l, err := owner.open(ctx, id, "s3://"+r.data+"/manifests/"+id+".json")
	require.NoError(t, err)
	onLease := func(req *http.Request, _ []byte) bool { return strings.HasSuffix(req.URL.Path, leaseKey(id)) }
	r.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: onLease, Times: 1, Drop: true})
	require.NoError(t, l.write(ctx, stateOpen, ""), "read back: the renewal landed")

	r.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: onLease, Times: 1, Drop: true})
	r.faults.Add(awstest.Fault{Op: "s3:GetObject", Match: onLease, Times: 1, Drop: true})
	require.Error(t, l.write(ctx, stateOpen, ""), "neither the answer nor the read-back came")
	require.NoError(t, l.write(ctx, stateOpen, ""), "the record names this owner: its own earlier write")
	require.True(t, l.fresh())
	l.commit(ctx, "jr_1")

	out, err := r.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.data), Key: aws.String(leaseKey(id))})
	require.NoError(t, err)
	defer out.Body.Close()
	var rec leaseRecord
	require.NoError(t, json.NewDecoder(out.Body).Decode(&rec))
	require.Equal(t, stateCommitted, rec.State)
	require.Equal(t, "jr_1", rec.RunID)
	require.Equal(t, 2, r.faults.Hits("s3:PutObject"))
}

package batch

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
)

// The claims against the real emulator, with replies lost or delayed at the SDK's
// boundary (awstest.Faults): S3 acted, the batcher does not know.

// faultStack is an emuStack (a landing bucket that keeps no versions) whose
// batchers and claimers reach the emulator through a fault proxy, one attempt a
// call: every error is the SDK's last attempt.
type faultStack struct {
	*emuStack
	faults *awstest.Faults
}

func newFaultStack(t *testing.T) *faultStack {
	t.Helper()
	f := awstest.NewFaults(t, awstest.Endpoint(t))
	via := f.Config(t)
	via.RetryMaxAttempts = 1
	return &faultStack{emuStack: newEmuStackRuns(t, via, false, 100), faults: f}
}

// claimer is a claimer with lease, as a batcher of the stack has one.
func (st *faultStack) claimer(lease time.Duration) *claimer {
	cfg := Config{LandingBucket: st.landing, DataBucket: st.data, GlueJob: st.job, Lease: lease}
	return newClaimer(cfg, st.s3, st.glue, zaptest.NewLogger(st.t), NewMetrics(prometheus.NewRegistry()))
}

// upload is put, with the file its event names as the batcher reads it (moto's
// version "null" and one sequencer).
func (st *faultStack) upload(key, body string) (consumer.Message, File) {
	st.t.Helper()
	m, _ := st.put(key, body)
	e, err := event.Parse([]byte(m.Body))
	require.NoError(st.t, err)
	f, err := ParseObjectCreated(e, st.landing, "")
	require.NoError(st.t, err)
	return m, f
}

// inRuns counts the runs each file version (key and ETag) is in.
func (st *faultStack) inRuns() map[string]int {
	n := map[string]int{}
	for _, m := range st.runs() {
		for _, f := range m.Files {
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
			st := newFaultStack(t)
			ma, a := st.upload("in/a", "a1")
			mb, fb := st.upload("in/b", "b1")
			if tc.takeover { // a batch that claimed a and gave up
				c := st.claimer(LeaseDefault)
				l, err := c.open(context.Background(), "19700101T000000.000Z-gaveup", "s3://"+st.data+"/manifests/gaveup.json")
				require.NoError(t, err)
				res, err := c.claim(context.Background(), "19700101T000000.000Z-gaveup", a)
				require.NoError(t, err)
				require.Equal(t, claimed, res)
				l.abandon(context.Background())
			}
			b := st.batcher(Config{MaxFiles: 2, Window: time.Minute})
			st.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: claimOf(a, tc.takeover), Times: 1, Drop: true})
			for _, err := range handleAll(b, []consumer.Message{ma, mb}) {
				require.NoError(t, err)
			}
			require.Equal(t, 1, st.faults.Hits("s3:PutObject"), "the claim's answer was lost")
			// A redelivery of a's message (batched with a new file, c) finds a in
			// a started run.
			mc, fc := st.upload("in/c", "c1")
			for _, err := range handleAll(b, []consumer.Message{ma, mc}) {
				require.NoError(t, err)
			}
			require.Equal(t, map[string]int{"in/a@" + a.ETag: 1, "in/b@" + fb.ETag: 1, "in/c@" + fc.ETag: 1}, st.inRuns(), "each file in one run")
		})
	}
}

// Item 1, when even the read-back fails: the claim may name the batch, so the
// batch starts nothing and releases its claims; redelivered, both files run once.
func TestAClaimInDoubtGivesItsBatchUpAndNothingIsLost(t *testing.T) {
	t.Parallel()
	st := newFaultStack(t)
	ma, a := st.upload("in/a", "a1")
	mb, b1 := st.upload("in/b", "b1")
	b := st.batcher(Config{MaxFiles: 2, Window: time.Minute})
	st.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: claimOf(a, false), Times: 1, Drop: true})
	st.faults.Add(awstest.Fault{Op: "s3:GetObject", Match: claimOf(a, false), Drop: true})
	errs := handleAll(b, []consumer.Message{ma, mb})
	require.Error(t, errs[0])
	require.ErrorIs(t, errs[0], errClaimInDoubt)
	require.Error(t, errs[1], "b's batch was given up too")
	require.Empty(t, st.runs(), "no run started while a's claim was in doubt")

	st.faults.Clear() // S3 answers again; SQS redelivers both
	for _, err := range handleAll(b, []consumer.Message{ma, mb}) {
		require.NoError(t, err)
	}
	require.Equal(t, map[string]int{"in/a@" + a.ETag: 1, "in/b@" + b1.ETag: 1}, st.inRuns())
}

// Item 5: a renewal whose answer comes back late. The owner may start a run while
// it thinks its lease fresh, and its StartJobRun may take Lease/4: until then no
// taker may find the lease stale. Judged by the record's deadline (stamped when the
// renewal was sent), the owner is careful for the delay; judged by LastModified
// and the reply's arrival, a taker abandoned the lease under the owner.
func TestARenewalAnsweredLateLetsNoTakerAbandonALeaseItsOwnerThinksFresh(t *testing.T) {
	t.Parallel()
	const lease = 8 * time.Second
	st := newFaultStack(t)
	ctx := context.Background()
	owner, taker := st.claimer(lease), st.claimer(lease)
	id := "20261207T000000.000Z-late"
	l, err := owner.open(ctx, id, "s3://"+st.data+"/manifests/"+id+".json")
	require.NoError(t, err)
	st.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: func(req *http.Request, _ []byte) bool { return strings.HasSuffix(req.URL.Path, leaseKey(id)) },
		Times: 1, Delay: lease * 3 / 4})
	require.NoError(t, l.write(ctx, stateOpen, ""), "the renewal landed; its answer came late")
	require.Equal(t, 1, st.faults.Hits("s3:PutObject"))

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
	st := newFaultStack(t)
	ctx := context.Background()
	owner, taker := st.claimer(40*time.Second), st.claimer(1*time.Second)
	id := "20261207T000000.000Z-long"
	_, err := owner.open(ctx, id, "s3://"+st.data+"/manifests/"+id+".json")
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
	st := newFaultStack(t)
	b := st.batcher(Config{MaxFiles: 1, Window: time.Minute})
	m1, f1 := st.upload("in/a", "first bytes")
	require.NoError(t, b.Handle(context.Background(), m1))
	m2, f2 := st.upload("in/a", "second bytes")
	require.NotEqual(t, f1.ETag, f2.ETag)
	require.NoError(t, b.Handle(context.Background(), m2))
	require.NoError(t, b.Handle(context.Background(), m2), "a redelivery of the second upload is a duplicate")
	require.Equal(t, map[string]int{"in/a@" + f1.ETag: 1, "in/a@" + f2.ETag: 1}, st.inRuns())
}

// A lease write (a renewal) lands and its answer is lost on the SDK's last
// attempt, its read-back too: the owner does not know the ETag it made. Its next
// write finds the record changed, sees its own owner id in it, and goes on: the
// lease is not taken for lost (which would give a live batch up), and the commit
// lands.
func TestALeaseWriteWhoseAnswerWasLostIsStillTheOwners(t *testing.T) {
	t.Parallel()
	st := newFaultStack(t)
	ctx := context.Background()
	owner := st.claimer(LeaseDefault)
	id := "20261207T000000.000Z-owner"
	l, err := owner.open(ctx, id, "s3://"+st.data+"/manifests/"+id+".json")
	require.NoError(t, err)
	onLease := func(req *http.Request, _ []byte) bool { return strings.HasSuffix(req.URL.Path, leaseKey(id)) }
	st.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: onLease, Times: 1, Drop: true})
	require.NoError(t, l.write(ctx, stateOpen, ""), "read back: the renewal landed")

	st.faults.Add(awstest.Fault{Op: "s3:PutObject", Match: onLease, Times: 1, Drop: true})
	st.faults.Add(awstest.Fault{Op: "s3:GetObject", Match: onLease, Times: 1, Drop: true})
	require.Error(t, l.write(ctx, stateOpen, ""), "neither the answer nor the read-back came")
	require.NoError(t, l.write(ctx, stateOpen, ""), "the record names this owner: its own earlier write")
	require.True(t, l.fresh())
	l.commit(ctx, "jr_1")

	out, err := st.direct.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(st.data), Key: aws.String(leaseKey(id))})
	require.NoError(t, err)
	defer out.Body.Close()
	var rec leaseRecord
	require.NoError(t, json.NewDecoder(out.Body).Decode(&rec))
	require.Equal(t, stateCommitted, rec.State)
	require.Equal(t, "jr_1", rec.RunID)
	require.Equal(t, 2, st.faults.Hits("s3:PutObject"))
}

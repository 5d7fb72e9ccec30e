package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/s3record"
)

// s3EventSeq is an Object Created event of one upload (its sequencer).
func s3EventSeq(key, etag, sequencer string) consumer.Message {
	body, _ := json.Marshal(map[string]any{
		"version": "0", "id": key + sequencer, "detail-type": "Object Created", "source": "aws.s3", "time": "2026-11-22T10:00:00Z",
		"detail": map[string]any{"bucket": map[string]any{"name": "landing"}, "object": map[string]any{"key": key, "size": 10, "etag": etag, "sequencer": sequencer}},
	})
	return consumer.Message{ID: key + sequencer, Queue: "landing", Body: string(body), ReceiveCount: 1}
}

// read is the body of an object, nil when there is none.
func (f *fakeS3) read(name string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.objs[name]
}

// listedOnce checks every key is in exactly one manifest and returns how many
// manifests there are.
func listedOnce(t *testing.T, ms []Manifest, keys ...string) int {
	t.Helper()
	seen := map[string]int{}
	for _, m := range ms {
		for _, f := range m.Files {
			seen[f.Key]++
		}
	}
	for _, k := range keys {
		require.Equal(t, 1, seen[k], "key %s in exactly one manifest", k)
	}
	return len(ms)
}

func TestARedeliveryAfterItsBatchStartedIsAcknowledgedAndLeftOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, &fakeGlue{})
		r.upload("a")
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")))
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")), "acknowledged: the file is in a started run")
		require.Equal(t, 1, listedOnce(t, r.manifests(t), "a"))
		require.Len(t, r.glue.started, 1)
		require.Equal(t, 1.0, testutil.ToFloat64(r.b.metrics.claims.WithLabelValues("made")))
		require.Equal(t, 1.0, testutil.ToFloat64(r.b.metrics.claims.WithLabelValues("duplicate")))
		r.stop(t)
	})
}

func TestAReuploadOfIdenticalBytesIsANewFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, &fakeGlue{})
		r.upload("a")
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")))
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "02")))
		require.Len(t, r.manifests(t), 2, "a second PUT of the same bytes is a new upload (a new sequencer)")
		r.stop(t)
	})
}

// Two batchers on one landing queue (a deploy overlap) get the same events, some
// twice: each file is in exactly one manifest, and every message is acknowledged.
func TestTwoBatchersWithDuplicatesListEachFileOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newFakeS3()
		g := &fakeGlue{}
		cfg := Config{MaxFiles: 7, Window: 10 * time.Second}
		r1, r2 := newRigWithS3(t, cfg, g, store), newRigWithS3(t, cfg, g, store)
		var keys []string
		var msgs []consumer.Message
		for i := range 60 {
			k := fmt.Sprintf("in/f%02d", i)
			keys = append(keys, k)
			r1.upload(k)
			msgs = append(msgs, s3EventSeq(k, "1", "01"))
			if i%3 == 0 {
				msgs = append(msgs, s3EventSeq(k, "1", "01"), s3EventSeq(k, "1", "01"))
			}
		}
		errs := make([]error, len(msgs))
		var wg sync.WaitGroup
		for i, m := range msgs {
			b := r1.b
			if i%2 == 1 {
				b = r2.b
			}
			wg.Go(func() { errs[i] = b.Handle(context.Background(), m) })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		listedOnce(t, r1.manifests(t), keys...)
		dups := testutil.ToFloat64(r1.b.metrics.claims.WithLabelValues("duplicate")) + testutil.ToFloat64(r2.b.metrics.claims.WithLabelValues("duplicate"))
		require.Positive(t, dups, "some duplicates crossed batchers")
		r1.stop(t)
		r2.stop(t)
	})
}

// deadBatch leaves behind what a batcher killed after claiming key (and, if
// started, after starting its run) leaves: an open lease and a claim.
func deadBatch(t *testing.T, r *rig, key string, started bool) string {
	t.Helper()
	id := "19700101T000000.000Z-dead"
	manifest := "s3://data/manifests/" + id + ".json"
	c := r.b.claims
	_, err := c.open(context.Background(), id, manifest)
	require.NoError(t, err)
	res, err := c.claim(context.Background(), id, File{Bucket: "landing", Key: key, ETag: "1", Sequencer: "01"})
	require.NoError(t, err)
	require.Equal(t, claimed, res)
	if started {
		r.glue.mu.Lock()
		r.glue.history = append(r.glue.history, types.JobRun{Id: aws.String("jr_dead"), Arguments: map[string]string{"--manifest": manifest}})
		r.glue.mu.Unlock()
	}
	return id
}

func TestAFileOfADeadBatcherIsTakenOverWhenItsLeaseRunsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 10, Window: 20 * time.Second}, &fakeGlue{})
		r.upload("a")
		dead := deadBatch(t, r, "a", false)
		start := time.Now()
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")))
		require.GreaterOrEqual(t, time.Since(start), LeaseDefault, "held, not taken, while the lease may be renewed")
		ms := r.manifests(t)
		require.Equal(t, 1, listedOnce(t, ms, "a"))
		require.Equal(t, 1.0, testutil.ToFloat64(r.b.metrics.claims.WithLabelValues("taken_over")))
		require.Positive(t, testutil.ToFloat64(r.b.metrics.claims.WithLabelValues("busy")))
		var rec leaseRecord
		require.NoError(t, json.Unmarshal(r.s3.read("data/"+leaseKey(dead)), &rec))
		require.Equal(t, stateAbandoned, rec.State)
		require.NoError(t, json.Unmarshal(r.s3.read("data/"+leaseKey(ms[0].BatchID)), &rec))
		require.Equal(t, stateCommitted, rec.State)
		require.Equal(t, "jr_1", rec.RunID)
		r.stop(t)
	})
}

// A batcher killed between StartJobRun and recording its commit: its run is found
// in Glue, and the file is not batched again.
func TestAFileOfADeadBatcherWhoseRunStartedIsNotBatchedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 10, Window: 20 * time.Second}, &fakeGlue{})
		r.upload("a")
		dead := deadBatch(t, r, "a", true)
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")), "acknowledged")
		require.Empty(t, r.manifests(t), "no second manifest")
		require.Empty(t, r.glue.started)
		var rec leaseRecord
		require.NoError(t, json.Unmarshal(r.s3.read("data/"+leaseKey(dead)), &rec))
		require.Equal(t, stateCommitted, rec.State)
		r.stop(t)
	})
}

// A batch whose start fails abandons its lease: the redelivered file is taken
// over at once, not after the lease.
func TestAFailedBatchReleasesItsFilesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGlue{final: &types.EntityNotFoundException{Message: aws.String("no such job")}}
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, g)
		r.upload("a")
		require.Error(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")))
		g.mu.Lock()
		g.final = nil
		g.mu.Unlock()
		start := time.Now()
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")))
		require.Less(t, time.Since(start), LeaseDefault)
		require.Equal(t, 1.0, testutil.ToFloat64(r.b.metrics.claims.WithLabelValues("taken_over")))
		r.stop(t)
	})
}

// Glue refuses with ConcurrentRunsExceeded (MaxConcurrentRuns 1) for far longer
// than StartTimeout and the lease: the batch waits, renews its lease, and starts.
func TestGlueAtItsConcurrentRunsIsWaitedOutNeverFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGlue{busyUntil: time.Now().Add(3 * time.Hour)}
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, g)
		r.upload("a")
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")))
		require.False(t, time.Now().Before(g.busyUntil))
		require.Len(t, g.started, 1)
		require.Positive(t, testutil.ToFloat64(r.b.metrics.glueBusy))
		require.Zero(t, testutil.ToFloat64(r.b.metrics.startFailures))
		var rec leaseRecord
		ms := r.manifests(t)
		require.Len(t, ms, 1)
		require.NoError(t, json.Unmarshal(r.s3.read("data/"+leaseKey(ms[0].BatchID)), &rec))
		require.Equal(t, stateCommitted, rec.State, "the lease held through the wait")
		r.stop(t)
	})
}

// Item 5: a lease is stale once the deadline its record states, plus a quarter of
// the lease its record states, has passed; a record of a version that wrote no
// deadline (a deploy overlap) by LastModified and the reader's lease.
func TestALeaseIsStaleByWhatItsRecordSays(t *testing.T) {
	t.Parallel()
	sent := time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)
	c := &claimer{lease: 20 * time.Second}
	withDeadline := leaseRecord{State: stateOpen, RenewedAt: sent, Until: sent.Add(2 * time.Minute), LeaseSeconds: 120}
	old := leaseRecord{State: stateOpen, RenewedAt: sent}
	modified := sent.Add(time.Second) // S3 stamped it on arrival
	for _, tc := range []struct {
		name  string
		rec   leaseRecord
		after time.Duration
		stale bool
	}{
		{"within its own lease, past the reader's", withDeadline, time.Minute, false},
		{"past its deadline, within the margin", withDeadline, 2*time.Minute + 29*time.Second, false},
		{"past its deadline and the margin", withDeadline, 2*time.Minute + 31*time.Second, true},
		{"old record within the reader's lease and margin", old, 25 * time.Second, false},
		{"old record past the reader's lease and margin", old, 27 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.stale, c.stale(tc.rec, modified, sent.Add(tc.after)))
		})
	}
}

// Item 7: "null" is no version. Two uploads of a key to an unversioned bucket
// (version-id "null") with other bytes are two files, whatever the sequencer.
func TestANullVersionIsNoIdentity(t *testing.T) {
	t.Parallel()
	first := File{Bucket: "landing", Key: "a", ETag: "1", Version: nullVersion, Sequencer: "617f08299329d189"}
	second := first
	second.ETag = "2"
	require.NotEqual(t, claimKey(first), claimKey(second))
	versioned := first
	versioned.Version = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
	require.Equal(t, "v:3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", upload(versioned))
}

// A batcher built without AWS, as `worker validate` builds one, is no panic waiting
// for a use: its claims answer with s3record's error.
func TestABatcherBuiltWithoutClientsErrsInsteadOfPanicking(t *testing.T) {
	b, err := New(Config{LandingBucket: "landing", DataBucket: "data", GlueJob: "etl", MaxFiles: 1, Window: time.Minute},
		nil, nil, nil, zaptest.NewLogger(t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	_, err = b.claims.open(context.Background(), "b1", "manifests/b1.json")
	require.ErrorIs(t, err, s3record.ErrNoClient)
	_, err = b.claims.state(context.Background(), "b1")
	require.ErrorIs(t, err, s3record.ErrNoClient)
}

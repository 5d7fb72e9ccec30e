package batch

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue/types"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// A StartJobRun whose reply is lost after Glue started the run: the batcher finds
// the run in Glue's history, commits it, and neither retries nor abandons; the
// redelivered message is acknowledged. The old batcher abandoned the batch and ran
// the file again.
func TestALostStartJobRunReplyIsResolvedFromGlue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGlue{lostReplies: 1}
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, g)
		r.upload("a")
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")), "the run started: its message is done")
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")), "a redelivery is acknowledged")
		require.Len(t, g.started, 1, "one run")
		require.Equal(t, 1.0, testutil.ToFloat64(r.b.metrics.startChecks.WithLabelValues("started")))
		ms := r.manifests(t)
		require.Len(t, ms, 1)
		var rec leaseRecord
		require.NoError(t, json.Unmarshal(r.s3.read("data/"+leaseKey(ms[0].BatchID)), &rec))
		require.Equal(t, stateCommitted, rec.State)
		require.Equal(t, "jr_1", rec.RunID)
		r.stop(t)
	})
}

// A lease marked abandoned whose run started all the same (written by a version
// that did not ask Glue): its taker asks Glue, finds the run, and leaves the file
// out. The old taker took the claim over and ran the file again.
func TestATakerOfAnAbandonedLeaseAsksGlue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, &fakeGlue{})
		r.upload("a")
		id := "19700101T000000.000Z-gave-up"
		manifest := manifestURI("data", id)
		l, err := r.b.claims.open(context.Background(), id, manifest)
		require.NoError(t, err)
		res, err := r.b.claims.claim(context.Background(), id, File{Bucket: "landing", Key: "a", ETag: "1", Sequencer: "01"})
		require.NoError(t, err)
		require.Equal(t, claimed, res)
		now := time.Now()
		r.glue.mu.Lock()
		r.glue.history = append(r.glue.history, types.JobRun{Id: aws.String("jr_unseen"), StartedOn: &now, Arguments: map[string]string{"--manifest": manifest}})
		r.glue.mu.Unlock()
		l.abandon(context.Background())

		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")), "acknowledged: the file is in a started run")
		require.Empty(t, r.glue.started, "not run again")
		var rec leaseRecord
		require.NoError(t, json.Unmarshal(r.s3.read("data/"+leaseKey(id)), &rec))
		require.Equal(t, stateCommitted, rec.State)
		r.stop(t)
	})
}

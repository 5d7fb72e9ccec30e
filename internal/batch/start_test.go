package batch

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/glue/types"
	"github.com/aws/smithy-go"
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

// A StartJobRun that never reached Glue (a refused connection): Glue lists no run
// of the manifest, so it is tried again, as the SDK would have.
func TestAStartJobRunThatNeverReachedGlueIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGlue{resets: 2}
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute}, g)
		r.upload("a")
		require.NoError(t, r.b.Handle(context.Background(), s3EventSeq("a", "1", "01")))
		require.Len(t, g.started, 1)
		require.Equal(t, 2.0, testutil.ToFloat64(r.b.metrics.startChecks.WithLabelValues("not_started")))
		r.stop(t)
	})
}

// A lost reply, and a run history Glue refuses to show: the batch is held while
// the batcher asks again, for StartTimeout, not for good; then the outcome is
// unknown: the message is redelivered, and the lease neither abandoned nor
// reported START_FAILED (its taker asks Glue in its turn).
func TestAStartGlueCannotConfirmIsLeftOpenAfterStartTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &fakeGlue{lostReplies: 1, listErr: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not allowed"}}
		r := newRig(t, Config{MaxFiles: 1, Window: time.Minute, StartTimeout: 5 * time.Minute}, g)
		r.upload("a")
		start := time.Now()
		err := r.b.Handle(context.Background(), s3EventSeq("a", "1", "01"))
		require.ErrorIs(t, err, errStartUnknown)
		require.Less(t, time.Since(start), 10*time.Minute, "bounded by StartTimeout")
		require.Equal(t, 1.0, testutil.ToFloat64(r.b.metrics.startChecks.WithLabelValues("unknown")))
		require.Empty(t, r.pub.events[DetailError])
		ms := r.manifests(t)
		require.Len(t, ms, 1)
		var rec leaseRecord
		require.NoError(t, json.Unmarshal(r.s3.read("data/"+leaseKey(ms[0].BatchID)), &rec))
		require.Equal(t, stateOpen, rec.State)
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

// listingGlue lists pages of runs as given and counts the pages asked for.
type listingGlue struct {
	glueAPI
	pages [][]types.JobRun
	asked int
}

func (g *listingGlue) GetJobRuns(_ context.Context, in *glue.GetJobRunsInput, _ ...func(*glue.Options)) (*glue.GetJobRunsOutput, error) {
	i, _ := strconv.Atoi(aws.ToString(in.NextToken))
	g.asked++
	out := &glue.GetJobRunsOutput{JobRuns: g.pages[i]}
	if i+1 < len(g.pages) {
		out.NextToken = aws.String(strconv.Itoa(i + 1))
	}
	return out, nil
}

// Glue lists runs newest first: a page all older than the batch ends the search.
// Listed in another order (moto lists oldest first), every page is read.
func TestJobRunsReadBackOnlyAsFarAsTheBatchesAge(t *testing.T) {
	t.Parallel()
	now := time.Now()
	at := func(ago time.Duration, manifest string) types.JobRun {
		started := now.Add(-ago)
		return types.JobRun{Id: aws.String(manifest), StartedOn: &started, Arguments: map[string]string{"--manifest": manifest}}
	}
	since := now.Add(-time.Hour)
	for _, tc := range []struct {
		name      string
		pages     [][]types.JobRun
		found     bool
		pagesRead int
	}{
		{"newest first, found on the first page", [][]types.JobRun{{at(time.Minute, "x"), at(2*time.Minute, "m")}, {at(2*time.Hour, "y")}}, true, 1},
		{"newest first, the second page is older than the batch", [][]types.JobRun{{at(time.Minute, "x")}, {at(2*time.Hour, "y"), at(3*time.Hour, "z")}, {at(4*time.Hour, "m")}}, false, 2},
		{"oldest first, read to the end", [][]types.JobRun{{at(3*time.Hour, "y"), at(2*time.Hour, "z")}, {at(time.Minute, "m")}}, true, 2},
		{"a run not started yet counts as recent", [][]types.JobRun{{{Id: aws.String("m"), Arguments: map[string]string{"--manifest": "m"}}}}, true, 1},
		{"a run older than the batch is not its run", [][]types.JobRun{{at(2*time.Hour, "m")}}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := &listingGlue{pages: tc.pages}
			id, found, err := jobRuns{glue: g, job: "etl"}.find(context.Background(), "m", since)
			require.NoError(t, err)
			require.Equal(t, tc.found, found)
			if found {
				require.Equal(t, "m", id)
			}
			require.Equal(t, tc.pagesRead, g.asked)
		})
	}
}

package batch

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/glue/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/taskbridge/taskbridge/internal/awsjson"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// run is a started Glue run to follow.
type run struct {
	batchID   string
	runID     string
	fileCount int
	manifest  string
	span      trace.Span // the run's span, ended at finish; nil for a resumed run
}

// Follower checks started runs with GetJobRun until they end and publishes
// etl-success or etl-error, then records the result at results/<batchId>.json. On
// start it picks up every recent run of the job that names a manifest of ours and has
// no recorded result, still going or ended while no worker ran, so a restart loses
// no result. A crash between publishing and recording publishes the result again:
// results are delivered at least once.
type Follower struct {
	cfg     Config
	glue    glueAPI
	s3      s3API
	pub     Publisher
	log     *zap.Logger
	metrics *Metrics

	mu    sync.Mutex
	runs  map[string]run // by run id; guarded by mu
	added chan struct{}  // wakes Run when a run is added
}

func newFollower(cfg Config, g glueAPI, s3Client s3API, pub Publisher, log *zap.Logger, m *Metrics) *Follower {
	return &Follower{cfg: cfg, glue: g, s3: s3Client, pub: pub, log: log.With(zap.String("component", "glue_follower")), metrics: m,
		runs: map[string]run{}, added: make(chan struct{}, 1)}
}

func (f *Follower) follow(r run) {
	f.mu.Lock()
	f.runs[r.runID] = r
	f.mu.Unlock()
	select {
	case f.added <- struct{}{}:
	default:
	}
}

// Run follows runs until ctx is done.
func (f *Follower) Run(ctx context.Context) {
	f.resume(ctx)
	for {
		d := f.cfg.GluePollInterval
		t := time.NewTimer(d/2 + rand.N(d/2+1)) // jitter: a fleet does not poll in lockstep
		select {
		case <-ctx.Done():
			t.Stop()
			f.mu.Lock()
			if n := len(f.runs); n > 0 {
				f.log.Info("stopping with runs still going; a restart resumes them", zap.Int("runs", n))
			}
			f.mu.Unlock()
			return
		case <-f.added:
			t.Stop()
		case <-t.C:
		}
		f.checkAll(ctx)
	}
}

func (f *Follower) checkAll(ctx context.Context) {
	f.mu.Lock()
	runs := make([]run, 0, len(f.runs))
	for _, r := range f.runs {
		runs = append(runs, r)
	}
	f.mu.Unlock()
	for _, r := range runs {
		out, err := f.glue.GetJobRun(ctx, &glue.GetJobRunInput{JobName: aws.String(f.cfg.GlueJob), RunId: aws.String(r.runID)})
		if err != nil {
			f.log.Warn("get job run failed; will check again", zap.String("job_run_id", r.runID), zap.Error(err))
			continue
		}
		if out.JobRun == nil || !finished(out.JobRun.JobRunState) {
			continue
		}
		f.finish(ctx, r, out.JobRun)
	}
}

func finished(s types.JobRunState) bool {
	switch s {
	case types.JobRunStateSucceeded, types.JobRunStateFailed, types.JobRunStateTimeout,
		types.JobRunStateStopped, types.JobRunStateError, types.JobRunStateExpired:
		return true
	}
	return false
}

// finish publishes the run's result; a failed publish is tried again next tick.
func (f *Follower) finish(ctx context.Context, r run, jr *types.JobRun) {
	state := string(jr.JobRunState)
	detail := ResultDetail{BatchID: r.batchID, JobName: f.cfg.GlueJob, JobRunID: r.runID, State: state, FileCount: r.fileCount, Manifest: r.manifest}
	detailType := DetailSuccess
	if jr.JobRunState != types.JobRunStateSucceeded {
		detailType = DetailError
		detail.Error = aws.ToString(jr.ErrorMessage)
		if detail.Error == "" {
			detail.Error = "run ended " + state
		}
	}
	pctx := ctx
	if r.span != nil {
		pctx = trace.ContextWithSpan(ctx, r.span) // the result event joins the batch's trace
	}
	if err := f.pub.Publish(pctx, detailType, detail); err != nil {
		f.log.Error("publish run result failed; will try again", zap.String("job_run_id", r.runID), zap.Error(err))
		return
	}
	if r.span != nil {
		r.span.SetAttributes(attribute.String("taskbridge.run_state", state))
		r.span.End()
	}
	f.record(ctx, detail)
	f.mu.Lock()
	delete(f.runs, r.runID)
	f.mu.Unlock()
	f.metrics.runs.WithLabelValues(state).Inc()
	f.log.Info("glue run ended", zap.String("batch_id", r.batchID), zap.String("job_run_id", r.runID), zap.String("state", state))
}

func resultKey(batchID string) string { return "results/" + batchID + ".json" }

// record writes the published result where resume looks for it. A failure only
// means a restart publishes the result once more.
func (f *Follower) record(ctx context.Context, d ResultDetail) {
	body, _ := awsjson.Marshal(d) // plain strings and ints: cannot fail
	_, err := f.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(f.cfg.DataBucket), Key: aws.String(resultKey(d.BatchID)),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	})
	if err != nil {
		f.log.Warn("record run result failed; a restart publishes it again", zap.String("batch_id", d.BatchID), zap.Error(err))
	}
}

// resumeHorizon bounds how far back resume looks: a worker down for longer is an
// outage someone reruns by hand, and the first start of a version that records
// results does not republish a long history.
const resumeHorizon = 24 * time.Hour

// resume follows the job's recent runs that name a manifest of ours and have no
// recorded result. Checking a finished run publishes it at once.
func (f *Follower) resume(ctx context.Context) {
	runs := jobRuns{glue: f.glue, job: f.cfg.GlueJob}
	err := runs.each(ctx, time.Now().Add(-resumeHorizon), func(jr types.JobRun) bool {
		manifest := jr.Arguments["--manifest"]
		batchID, ours := batchOfManifest(f.cfg.DataBucket, manifest)
		if !ours || (finished(jr.JobRunState) && f.recorded(ctx, batchID)) {
			return true
		}
		n, _ := strconv.Atoi(jr.Arguments["--file_count"])
		f.follow(run{batchID: batchID, runID: aws.ToString(jr.Id), fileCount: n, manifest: manifest})
		return true
	})
	if err != nil {
		f.log.Warn("list job runs to resume failed", zap.Error(err))
	}
}

// jobRuns reads a Glue job's run history: the one place GetJobRuns is paged.
type jobRuns struct {
	glue glueAPI
	job  string
}

// runsPageSize is GetJobRuns' largest page.
const runsPageSize = 200

// each calls visit with the job's runs started at or after since (and those with
// no start time yet) until visit returns false or the history ends. Glue lists
// runs newest first (GetJobRuns, AWS Glue API reference), so a page whose runs are
// all older than since, in that order, ends the walk; a page in another order (an
// emulator's) does not, and the history is read to its end.
func (r jobRuns) each(ctx context.Context, since time.Time, visit func(types.JobRun) bool) error {
	in := &glue.GetJobRunsInput{JobName: aws.String(r.job), MaxResults: aws.Int32(runsPageSize)}
	for {
		out, err := r.glue.GetJobRuns(ctx, in)
		if err != nil {
			return fmt.Errorf("list runs of glue job %s: %w", r.job, err)
		}
		for _, jr := range out.JobRuns {
			if jr.StartedOn != nil && jr.StartedOn.Before(since) {
				continue
			}
			if !visit(jr) {
				return nil
			}
		}
		if aws.ToString(out.NextToken) == "" || olderNewestFirst(out.JobRuns, since) {
			return nil
		}
		in.NextToken = out.NextToken
	}
}

// olderNewestFirst: every run of page started before since, listed newest first.
func olderNewestFirst(page []types.JobRun, since time.Time) bool {
	if len(page) == 0 {
		return false
	}
	for i, jr := range page {
		if jr.StartedOn == nil || !jr.StartedOn.Before(since) {
			return false
		}
		if i > 0 && jr.StartedOn.After(*page[i-1].StartedOn) {
			return false
		}
	}
	return true
}

// find returns the id of a run that names manifest, started at or after since. An
// error means Glue could not say: such a run may exist.
func (r jobRuns) find(ctx context.Context, manifest string, since time.Time) (id string, found bool, err error) {
	err = r.each(ctx, since, func(jr types.JobRun) bool {
		if jr.Arguments["--manifest"] == manifest {
			id, found = aws.ToString(jr.Id), true
		}
		return !found
	})
	if err != nil {
		return "", false, err
	}
	return id, found, nil
}

// recorded reports whether a batch's result was published and recorded. When S3
// cannot say, the run is followed again: a duplicate result beats a lost one.
func (f *Follower) recorded(ctx context.Context, batchID string) bool {
	_, err := f.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(f.cfg.DataBucket), Key: aws.String(resultKey(batchID))})
	return err == nil
}

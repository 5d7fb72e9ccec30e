package batch

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/glue/types"
	"go.uber.org/zap"
)

// run is a started Glue run to follow.
type run struct {
	batchID   string
	runID     string
	fileCount int
	manifest  string
}

// Follower checks started runs with GetJobRun until they end and publishes
// etl-success or etl-error. On start it also picks up runs of the job that are still
// going and name a manifest, so a restart does not lose the result of a run it
// started before.
type Follower struct {
	cfg     Config
	glue    glueAPI
	pub     Publisher
	log     *zap.Logger
	metrics *Metrics

	mu    sync.Mutex
	runs  map[string]run // by run id; guarded by mu
	added chan struct{}  // wakes Run when a run is added
}

func newFollower(cfg Config, g glueAPI, pub Publisher, log *zap.Logger, m *Metrics) *Follower {
	return &Follower{cfg: cfg, glue: g, pub: pub, log: log.With(zap.String("component", "glue_follower")), metrics: m,
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
	if err := f.pub.Publish(ctx, detailType, detail); err != nil {
		f.log.Error("publish run result failed; will try again", zap.String("job_run_id", r.runID), zap.Error(err))
		return
	}
	f.mu.Lock()
	delete(f.runs, r.runID)
	f.mu.Unlock()
	f.metrics.runs.WithLabelValues(state).Inc()
	f.log.Info("glue run ended", zap.String("batch_id", r.batchID), zap.String("job_run_id", r.runID), zap.String("state", state))
}

// resume picks up the job's unfinished runs that carry a manifest of ours.
func (f *Follower) resume(ctx context.Context) {
	out, err := f.glue.GetJobRuns(ctx, &glue.GetJobRunsInput{JobName: aws.String(f.cfg.GlueJob)})
	if err != nil {
		f.log.Warn("list job runs to resume failed", zap.Error(err))
		return
	}
	prefix := "s3://" + f.cfg.DataBucket + "/manifests/"
	for _, jr := range out.JobRuns {
		manifest := jr.Arguments["--manifest"]
		if finished(jr.JobRunState) || !strings.HasPrefix(manifest, prefix) {
			continue
		}
		n, _ := strconv.Atoi(jr.Arguments["--file_count"])
		f.follow(run{batchID: strings.TrimSuffix(strings.TrimPrefix(manifest, prefix), ".json"), runID: aws.ToString(jr.Id), fileCount: n, manifest: manifest})
	}
}

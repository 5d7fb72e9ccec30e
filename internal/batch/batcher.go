package batch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
	"github.com/taskbridge/taskbridge/internal/tracing"
)

type s3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

type glueAPI interface {
	StartJobRun(ctx context.Context, in *glue.StartJobRunInput, optFns ...func(*glue.Options)) (*glue.StartJobRunOutput, error)
	GetJobRun(ctx context.Context, in *glue.GetJobRunInput, optFns ...func(*glue.Options)) (*glue.GetJobRunOutput, error)
	GetJobRuns(ctx context.Context, in *glue.GetJobRunsInput, optFns ...func(*glue.Options)) (*glue.GetJobRunsOutput, error)
}

// Publisher puts an event on the bus; internal/event implements it.
type Publisher interface {
	Publish(ctx context.Context, detailType string, detail any) error
}

// Result event detail types.
const (
	DetailSuccess = "etl-success"
	DetailError   = "etl-error"
)

// Config of the batcher.
type Config struct {
	LandingBucket string
	KeyPrefix     string // only keys under it are batched
	DataBucket    string // manifests go to manifests/<batchId>.json, published results to results/<batchId>.json
	GlueJob       string
	MaxFiles      int           // flush at this many files (1..10000)
	Window        time.Duration // flush this long after a batch's first file
	// StartTimeout bounds the retries of StartJobRun while Glue refuses a run for
	// throttling or an internal error; default 5 min. ConcurrentRunsExceeded is
	// waited out however long it lasts (the batch's messages stay in hand).
	StartTimeout time.Duration
	// Lease is how long a batch's claims hold without their batcher renewing them
	// (see claim.go): the landing queue's visibility timeout; default 2 min, at
	// least 20 s.
	Lease time.Duration
	// GluePollInterval is how often a started run is checked (default 10 s).
	GluePollInterval time.Duration
	// StopTimeout bounds what a stop spends flushing the batches closed by then
	// and the open one (default 15 s); batches still queued when it runs out are
	// not started and their files are redelivered.
	StopTimeout time.Duration
}

// Validate reports every wrong field.
func (c Config) Validate() error {
	var errs []error
	if c.LandingBucket == "" || c.DataBucket == "" || c.GlueJob == "" {
		errs = append(errs, errors.New("batch: LandingBucket, DataBucket and GlueJob are required"))
	}
	if err := checkMaxFiles(c.MaxFiles); err != nil {
		errs = append(errs, fmt.Errorf("batch: %w", err))
	}
	if err := checkWindow(c.Window); err != nil {
		errs = append(errs, fmt.Errorf("batch: %w", err))
	}
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("batch: StopTimeout must not be negative, got %s", c.StopTimeout))
	}
	if c.Lease != 0 && c.Lease < 20*time.Second {
		errs = append(errs, fmt.Errorf("batch: Lease must be at least 20s, got %s", c.Lease))
	}
	return errors.Join(errs...)
}

// CheckOverrides reports a topology's s3Batch maxFiles and window out of the ranges
// Validate holds the batcher to; a zero one is not set (the WORKER_BATCH_* setting
// applies). `worker validate` calls it through the topology check, so a topology it
// passes is one New accepts.
func CheckOverrides(maxFiles int, window time.Duration) error {
	var errs []error
	if maxFiles != 0 {
		errs = append(errs, checkMaxFiles(maxFiles))
	}
	if window != 0 {
		errs = append(errs, checkWindow(window))
	}
	return errors.Join(errs...)
}

func checkMaxFiles(n int) error {
	if n < 1 || n > 10000 {
		return fmt.Errorf("maxFiles must be 1..10000, got %d", n)
	}
	return nil
}

func checkWindow(d time.Duration) error {
	if d < time.Second || d > 12*time.Hour {
		return fmt.Errorf("window must be 1s..12h, got %s", d)
	}
	return nil
}

// ResultDetail is the detail of etl-success and etl-error.
type ResultDetail struct {
	BatchID   string `json:"batchId"`
	JobName   string `json:"jobName"`
	JobRunID  string `json:"jobRunId"`
	State     string `json:"state"`
	FileCount int    `json:"fileCount"`
	Manifest  string `json:"manifest"`
	Error     string `json:"error,omitempty"`
}

// openBatch is a batch that is collecting files or being flushed. Its fields up to
// done are guarded by Batcher.mu until the batch is closed; then only the flushing
// goroutine touches them, and err is read after done is closed.
type openBatch struct {
	id      string
	files   []File
	seen    map[File]bool
	opened  time.Time
	timer   *time.Timer
	reason  string
	done    chan struct{}  // closed when the batch's outcome is known
	err     error          // nil: manifest written and run started
	fileErr map[File]error // the outcome of a file left out of the manifest (verify, claim)
	dup     map[File]bool  // left out: in a run another batch started (acknowledged)
	busy    map[File]bool  // left out: claimed by a batch that may still start (try the next batch)
}

// Batcher groups landing events into Glue runs. Handle is called concurrently by the
// landing queue's consumer; Run owns flushing and must run for Handle to return.
type Batcher struct {
	cfg      Config
	s3       s3API
	glue     glueAPI
	pub      Publisher
	log      *zap.Logger
	metrics  *Metrics
	follower *Follower
	claims   *claimer

	mu      sync.Mutex
	open    *openBatch // guarded by mu
	stopped bool       // guarded by mu: Run is stopping; no new batches
	// closed holds the batches ready to flush, in order; guarded by mu. It is a
	// slice, not a channel, so that closing a batch never blocks under mu (a full
	// channel that only Run reads would hang Run's own stop, the window timers and
	// every Handle). Its length is bounded all the same: each closed batch holds at
	// least one message in hand, and the poller's concurrency bounds those.
	closed []*openBatch
	ready  chan struct{} // capacity 1: wakes Run when a batch is closed
}

// New returns a Batcher; it flushes nothing until Run.
func New(cfg Config, s3Client s3API, glueClient glueAPI, pub Publisher, log *zap.Logger, m *Metrics) (*Batcher, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = StartTimeoutDefault
	}
	if cfg.GluePollInterval == 0 {
		cfg.GluePollInterval = 10 * time.Second
	}
	if cfg.Lease == 0 {
		cfg.Lease = LeaseDefault
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = stopTimeoutDefault
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Batcher{
		cfg: cfg, s3: s3Client, glue: glueClient, pub: pub, log: log.With(zap.String("component", "batcher")), metrics: m,
		// The follower names itself on the caller's logger: zap would repeat a key
		// added twice in one JSON line.
		follower: newFollower(cfg, glueClient, s3Client, pub, log, m),
		claims:   newClaimer(cfg, s3Client, glueClient, log, m),
		ready:    make(chan struct{}, 1),
	}, nil
}

// withEnd is a context with ctx's values (its span) that ends when end does, not
// when ctx does.
func withEnd(ctx, end context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(end, cancel)
	return c, func() { stop(); cancel() }
}

// stopTimeoutDefault is Config.StopTimeout when it is 0.
const stopTimeoutDefault = 15 * time.Second

// Handle adds the message's file to the open batch and waits for that batch's
// outcome: nil once the run started or the file is found in a run another batch
// started, an error otherwise (the message is redelivered). A file claimed by a
// batch that may still start waits in hand for the next batch, which asks again.
func (b *Batcher) Handle(ctx context.Context, m consumer.Message) error {
	env, err := event.Parse([]byte(m.Body))
	if err != nil {
		return consumer.DeadLetter(err)
	}
	f, err := ParseObjectCreated(env, b.cfg.LandingBucket, b.cfg.KeyPrefix)
	if err != nil {
		return consumer.DeadLetter(err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("add %s to a batch: %w", f.Key, err)
		}
		batch, err := b.add(f)
		if err != nil {
			return err
		}
		select {
		case <-batch.done:
		case <-ctx.Done():
			return fmt.Errorf("wait for batch %s: %w", batch.id, ctx.Err())
		}
		switch {
		case batch.fileErr[f] != nil:
			return batch.fileErr[f]
		case batch.dup[f]:
			b.log.Debug("file already in a started run; message acknowledged", zap.String("batch_id", batch.id), zap.String("key", f.Key), zap.String("message_id", m.ID))
			return nil
		case batch.busy[f]:
			continue
		}
		if batch.err == nil {
			b.log.Debug("file in a started run", zap.String("batch_id", batch.id), zap.String("key", f.Key), zap.String("message_id", m.ID))
		}
		return batch.err
	}
}

var errStopped = errors.New("batcher stopped; the file will be redelivered")

// add puts f in the open batch (opening one if needed) and returns that batch.
func (b *Batcher) add(f File) (*openBatch, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return nil, errStopped
	}
	if b.open == nil {
		batch := &openBatch{id: newBatchID(), seen: map[File]bool{}, fileErr: map[File]error{}, dup: map[File]bool{}, busy: map[File]bool{},
			opened: time.Now(), done: make(chan struct{})}
		batch.timer = time.AfterFunc(b.cfg.Window, func() { b.closeBatch(batch, "window") })
		b.open = batch
	}
	batch := b.open
	if batch.seen[f] { // the same object event again: counts once, shares the outcome
		return batch, nil
	}
	batch.seen[f] = true
	batch.files = append(batch.files, f)
	b.metrics.openFiles.Set(float64(len(batch.files)))
	if len(batch.files) >= b.cfg.MaxFiles {
		b.closeLocked(batch, "count")
	}
	return batch, nil
}

func (b *Batcher) closeBatch(batch *openBatch, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closeLocked(batch, reason)
}

// closeLocked hands batch to Run for flushing, once.
func (b *Batcher) closeLocked(batch *openBatch, reason string) {
	if b.open != batch {
		return // closed already (count and window raced)
	}
	batch.timer.Stop()
	batch.reason = reason
	b.open = nil
	b.metrics.openFiles.Set(0)
	b.closed = append(b.closed, batch)
	select {
	case b.ready <- struct{}{}:
	default: // Run is woken already
	}
}

// next takes the oldest closed batch, nil if there is none.
func (b *Batcher) next() *openBatch {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.closed) == 0 {
		return nil
	}
	batch := b.closed[0]
	b.closed[0] = nil
	b.closed = b.closed[1:]
	return batch
}

// Run flushes closed batches and follows their runs until ctx is done; then it
// flushes the open batch (reason shutdown) and those still queued, and returns.
// Everything after ctx is done, the end of a flush in progress included, fits in
// StopTimeout.
func (b *Batcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// grace outlives ctx by StopTimeout: what a stop must still do (learn the
	// outcome of a start it cut, record it, flush what is closed) runs on it.
	grace, endGrace := context.WithCancel(context.WithoutCancel(ctx))
	defer endGrace()
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-grace.Done():
			return
		}
		t := time.NewTimer(b.cfg.StopTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			endGrace()
		case <-grace.Done():
		}
	})
	wg.Go(func() { b.follower.Run(ctx) })
	for ctx.Err() == nil {
		if batch := b.next(); batch != nil {
			b.flush(ctx, grace, batch)
			continue
		}
		select {
		case <-b.ready:
		case <-ctx.Done():
		}
	}
	b.stop(grace)
	return nil
}

// stop closes the open batch and flushes what is closed, on grace: the files'
// messages are deleted only if their run starts now. What the budget leaves
// unflushed fails at once, to be redelivered.
func (b *Batcher) stop(grace context.Context) {
	b.mu.Lock()
	b.stopped = true
	if b.open != nil {
		b.closeLocked(b.open, "shutdown")
	}
	b.mu.Unlock()
	var unflushed int
	for batch := b.next(); batch != nil; batch = b.next() {
		if grace.Err() != nil {
			batch.err = errStopped
			close(batch.done)
			unflushed++
			continue
		}
		b.flush(grace, grace, batch)
	}
	if unflushed > 0 {
		b.log.Warn("stop budget spent; batches left unflushed, their files will be redelivered", zap.Int("batches", unflushed), zap.Duration("stop_timeout", b.cfg.StopTimeout))
	}
}

// flush checks the batch's files, claims those that exist, writes the manifest of
// those it claimed and starts the run; the batch's waiters learn the outcome. What
// must be done once the batch is in flight, even if ctx ends (learn whether its run
// started, record that, release its lease), runs on grace.
func (b *Batcher) flush(ctx, grace context.Context, batch *openBatch) {
	defer close(batch.done)
	ctx, span := tracing.Start(ctx, "batch", "", trace.SpanKindInternal)
	defer func() { tracing.End(span, batch.err) }()
	grace, endGrace := withEnd(ctx, grace) // the batch's span, grace's end
	defer endGrace()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("taskbridge.batch_id", batch.id), attribute.String("taskbridge.flush_reason", batch.reason))
	}
	b.metrics.flushes.WithLabelValues(batch.reason).Inc()
	log := b.log.With(zap.String("batch_id", batch.id), zap.String("reason", batch.reason))
	vctx, vspan := tracing.Start(ctx, "verify", "", trace.SpanKindInternal) // a HeadObject span per file
	checked := b.verify(vctx, batch)
	vspan.End()
	if len(checked) == 0 {
		log.Info("no file of the batch is left to run")
		return
	}
	manifest := manifestURI(b.cfg.DataBucket, batch.id)
	l, err := b.claims.open(ctx, batch.id, manifest)
	if err != nil {
		batch.err = err
		log.Error("batch not started; its files will be redelivered", zap.Error(err))
		return
	}
	lctx, stop := l.keep(ctx)
	defer stop()
	files := b.claim(lctx, batch, checked)
	log = log.With(zap.Int("batch_size", len(files)))
	if len(files) == 0 {
		l.abandon(grace)
		log.Info("no file of the batch is left to run")
		return
	}
	b.metrics.files.Observe(float64(len(files)))
	runID, err := b.start(lctx, grace, l, batch.id, files, manifest)
	// A stop that cut the start must still record its outcome.
	actx, cancel := context.WithTimeout(grace, b.cfg.Lease/4)
	defer cancel()
	if err != nil {
		batch.err = err
		if errors.Is(err, errStartUnknown) {
			// The run may have started: the lease is left open to go stale, and its
			// taker asks Glue before it runs the files again.
			log.Error("batch start unconfirmed; its lease is left to expire, its files will be redelivered", zap.Error(err))
			return
		}
		b.metrics.startFailures.Inc()
		l.abandon(actx)
		log.Error("batch not started; its files will be redelivered", zap.Error(err))
		detail := ResultDetail{BatchID: batch.id, JobName: b.cfg.GlueJob, State: "START_FAILED", FileCount: len(files), Manifest: manifest, Error: err.Error()}
		if perr := b.pub.Publish(actx, DetailError, detail); perr != nil {
			log.Error("publish etl-error failed", zap.Error(perr))
		}
		return
	}
	l.commit(actx, runID)
	log.Info("batch started", zap.String("job_run_id", runID), zap.Duration("held", time.Since(batch.opened)))
	// The run's span lasts until the follower sees it end; its result event carries it.
	_, runSpan := tracing.Start(ctx, "glue run", "", trace.SpanKindInternal)
	if runSpan.IsRecording() {
		runSpan.SetAttributes(attribute.String("taskbridge.job_run_id", runID), attribute.Int("taskbridge.file_count", len(files)))
	}
	b.follower.follow(run{batchID: batch.id, runID: runID, fileCount: len(files), manifest: manifest, span: runSpan})
}

// claim claims the checked files for batch and returns the objects to list, each
// once: two events of one object version count once, and in a bucket that keeps
// no versions two uploads of one key in a batch list the object as it is now. A file
// that is someone else's is marked dup or busy; one that could not be claimed gets
// its error and is redelivered.
func (b *Batcher) claim(ctx context.Context, batch *openBatch, checked []verified) []File {
	results := make([]claimResult, len(checked))
	errs := make([]error, len(checked))
	sem := make(chan struct{}, headConcurrency)
	var wg sync.WaitGroup
	for i, v := range checked {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i], errs[i] = b.claims.claim(ctx, batch.id, v.claimFile())
		})
	}
	wg.Wait()
	if doubt := inDoubt(errs); doubt != nil {
		// A claim may name this batch without its file in the manifest: starting
		// the batch would commit it and lose the file. Start nothing; abandoning
		// the lease releases every claim of the batch.
		giveUp(batch, checked, results, errs, doubt)
		b.log.Warn("a claim's answer was lost and could not be read back; batch given up, its files will be redelivered", zap.String("batch_id", batch.id), zap.Error(doubt))
		return nil
	}
	var files []File
	listed := map[File]bool{}
	var failed []string
	var dups, waiting int
	for i, v := range checked {
		switch {
		case errs[i] != nil:
			batch.fileErr[v.event] = errs[i]
			failed = append(failed, v.event.Key)
		case results[i] == duplicate:
			batch.dup[v.event] = true
			dups++
		case results[i] == busy:
			batch.busy[v.event] = true
			waiting++
		case !listed[v.object]:
			listed[v.object] = true
			files = append(files, v.object)
		}
	}
	if dups+waiting > 0 {
		b.log.Info("files claimed by other batches left out", zap.String("batch_id", batch.id), zap.Int("in_started_runs", dups), zap.Int("in_batches_not_started", waiting))
	}
	if len(failed) > 0 {
		b.log.Warn("files that could not be claimed left out of the batch; their messages will be redelivered",
			append(batchFields(batch.id, len(failed), failed), zap.Error(errors.Join(errs...)))...)
	}
	return files
}

// errStartUnknown: StartJobRun failed in a way that may hide a started run, and
// Glue's run history could not tell. Neither a retry nor abandoning is safe.
var errStartUnknown = errors.New("glue run start unconfirmed: the run may have started")

// start writes the manifest and starts the run. Glue's ConcurrentRunsExceeded
// (MaxConcurrentRuns, 1 by default) is waited out for as long as it lasts, the
// batch's messages in hand and its lease renewed; throttling, internal errors and
// timeouts are retried until StartTimeout. A run is started only while the lease is
// fresh. StartJobRun is not idempotent: after any error, before a retry or giving
// up, Glue's run history is asked whether a run names the manifest (see resolve).
func (b *Batcher) start(ctx, grace context.Context, l *lease, batchID string, files []File, manifest string) (string, error) {
	if err := b.writeManifest(ctx, batchID, files, manifest); err != nil {
		return "", err
	}
	ctx, gspan := tracing.Start(ctx, "glue start", "", trace.SpanKindInternal) // waits for a free run included
	defer gspan.End()
	retry := startRetry{deadline: time.Now().Add(b.cfg.StartTimeout)}
	for attempt := 1; ; attempt++ {
		if !l.fresh() {
			// The renewer is behind (S3 slow) or lost the lease: wait for it, a
			// run started now could land after a taker found the lease stale.
			if !consumer.Sleep(ctx, b.cfg.Lease/20) {
				return "", fmt.Errorf("start glue job %s: %w", b.cfg.GlueJob, context.Cause(ctx))
			}
			continue
		}
		runID, err := b.startJobRun(ctx, len(files), manifest)
		if err == nil {
			return runID, nil
		}
		if notImplemented(err) {
			// An endpoint without Glue (LocalStack's community edition answers
			// 501, to GetJobRuns too): nothing started, no history to ask.
			return "", fmt.Errorf("start glue job %s: %w", b.cfg.GlueJob, err)
		}
		runID, started, rerr := b.resolve(ctx, grace, l, batchID, manifest, err)
		switch {
		case rerr != nil:
			return "", fmt.Errorf("%w: start glue job %s: %w; its run history: %w", errStartUnknown, b.cfg.GlueJob, err, rerr)
		case started:
			return runID, nil
		case ctx.Err() != nil: // stopping, or the lease is lost: the run surely did not start
			return "", fmt.Errorf("start glue job %s: %w", b.cfg.GlueJob, context.Cause(ctx))
		}
		delay, ok := retry.next(attempt, err)
		if !ok {
			return "", fmt.Errorf("start glue job %s: %w", b.cfg.GlueJob, err)
		}
		b.countRetry(batchID, retry.busyFor, delay, err)
		if !consumer.Sleep(ctx, delay) {
			return "", fmt.Errorf("start glue job %s: %w", b.cfg.GlueJob, context.Cause(ctx))
		}
	}
}

// writeManifest puts the batch's manifest (its file list) at manifestKey(batchID).
func (b *Batcher) writeManifest(ctx context.Context, batchID string, files []File, manifest string) error {
	body, err := awsjson.Marshal(Manifest{BatchID: batchID, CreatedAt: time.Now().UTC(), Files: files})
	if err != nil {
		return fmt.Errorf("marshal manifest: %w", err)
	}
	ctx, span := tracing.Start(ctx, "manifest", "", trace.SpanKindInternal)
	_, err = b.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.cfg.DataBucket), Key: aws.String(manifestKey(batchID)),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	})
	tracing.End(span, err)
	if err != nil {
		return fmt.Errorf("write manifest %s: %w", manifest, err)
	}
	return nil
}

// startJobRun makes one StartJobRun request for the manifest, bounded by Lease/4.
func (b *Batcher) startJobRun(ctx context.Context, fileCount int, manifest string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Lease/4)
	defer cancel()
	out, err := b.glue.StartJobRun(ctx, &glue.StartJobRunInput{
		JobName:   aws.String(b.cfg.GlueJob),
		Arguments: map[string]string{"--manifest": manifest, "--file_count": strconv.Itoa(fileCount)},
	}, func(o *glue.Options) {
		// One attempt a call: the SDK would retry a request whose reply was
		// lost after Glue acted, starting the run twice (or answering
		// ConcurrentRunsExceeded for its own run). start's loop retries, and
		// asks Glue first.
		o.RetryMaxAttempts = 1
	})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.JobRunId), nil
}

// startRetry decides whether a refused start is tried again, and after how long.
type startRetry struct {
	deadline time.Time // StartTimeout: the end of retries other than a busy Glue
	busyFor  int       // attempts refused for concurrent runs in a row
}

// next is the wait before the attempt after one that failed with err (known not
// to have started a run); ok is false when err ends the start.
func (r *startRetry) next(attempt int, err error) (delay time.Duration, ok bool) {
	switch {
	case concurrentRunsExceeded(err):
		r.busyFor++
		return consumer.Backoff(r.busyFor, time.Second, time.Minute), true
	case (retryableStart(err) || !answered(err)) && time.Now().Before(r.deadline): // a reset, a timeout: Glue did not refuse
		r.busyFor = 0
		return consumer.Backoff(attempt, 500*time.Millisecond, 30*time.Second), true
	default:
		return 0, false
	}
}

// countRetry counts and logs a start about to be retried after delay; busyFor is
// how many attempts in a row Glue refused for its concurrent runs.
func (b *Batcher) countRetry(batchID string, busyFor int, delay time.Duration, err error) {
	if busyFor > 0 {
		b.metrics.glueBusy.Inc()
	}
	b.metrics.startRetries.Inc()
	switch {
	case busyFor > 1: // one line per wait, not one a minute for hours
		b.log.Debug("glue still at its concurrent runs; waiting", zap.String("batch_id", batchID), zap.Int("attempt", busyFor), zap.Duration("backoff", delay))
	case busyFor == 1:
		b.log.Info("glue job at its concurrent runs; holding the batch until a run ends", zap.String("batch_id", batchID))
	default:
		b.log.Warn("glue refused the run; retrying while holding the batch", zap.String("batch_id", batchID), zap.Error(err), zap.Duration("backoff", delay))
	}
}

// resolve tells whether a StartJobRun that answered startErr started the run
// all the same: its reply lost after Glue acted, the request cut by its deadline
// or a stop, or the last of the SDK's attempts refused because of the first one.
// It reads Glue's run history for the manifest on grace (a stop must learn the
// outcome too), and tries again while ctx lasts, for at most StartTimeout (a
// history it may not read must not hold the flush queue for good); then the
// outcome is unknown (an error), and the lease's taker asks Glue in its turn.
func (b *Batcher) resolve(ctx, grace context.Context, l *lease, batchID, manifest string, startErr error) (string, bool, error) {
	if !answered(startErr) {
		// No answer from Glue: the request may still be on its way in. Give it a
		// moment to land before reading the history that would show it.
		settle, cancel := context.WithTimeout(grace, startSettle)
		<-settle.Done()
		cancel()
	}
	runs := jobRuns{glue: b.glue, job: b.cfg.GlueJob}
	since := l.createdAt().Add(-b.cfg.Lease) // a run of this manifest is younger than its lease; minus clock skew
	giveUp := time.Now().Add(b.cfg.StartTimeout)
	for try := 1; ; try++ {
		cctx, cancel := context.WithTimeout(grace, checkTimeout(b.cfg.Lease))
		runID, found, err := runs.find(cctx, manifest, since)
		cancel()
		switch {
		case err == nil && found:
			b.metrics.startChecks.WithLabelValues("started").Inc()
			b.log.Warn("glue run found after StartJobRun failed: it started", zap.String("batch_id", batchID), zap.String("job_run_id", runID), zap.NamedError("start_error", startErr))
			return runID, true, nil
		case err == nil:
			b.metrics.startChecks.WithLabelValues("not_started").Inc()
			return "", false, nil
		}
		if try == 1 {
			b.log.Warn("could not tell whether the glue run started; asking again", zap.String("batch_id", batchID), zap.Error(err))
		}
		if time.Now().After(giveUp) || !consumer.Sleep(ctx, consumer.Backoff(try, time.Second, 30*time.Second)) {
			b.metrics.startChecks.WithLabelValues("unknown").Inc()
			return "", false, err
		}
	}
}

// startSettle is how long a StartJobRun that got no answer is given to land
// before Glue's run history is read for it.
const startSettle = 2 * time.Second

// answered: err is Glue's own answer, not a transport error or a timeout.
func answered(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api)
}

// notImplemented: the endpoint answered HTTP 501, it has no such call (AWS never
// answers so); the call acted on nothing.
func notImplemented(err error) bool {
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotImplemented
}

// errCode is the code of the AWS error in err's chain (Glue's, or S3's HeadObject),
// or "". Conditional writes' codes are s3record's.
func errCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// concurrentRunsExceeded: the job runs MaxConcurrentRuns already; wait, never fail.
func concurrentRunsExceeded(err error) bool {
	return errCode(err) == "ConcurrentRunsExceededException"
}

// retryableStart: Glue is busy, not wrong. Classified by error code, never by text.
func retryableStart(err error) bool {
	switch errCode(err) {
	case "ThrottlingException", "ResourceNumberLimitExceededException", "InternalServiceException":
		return true
	}
	return false
}

// newBatchID is sortable by time and unique across processes.
func newBatchID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b)
}

package batch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/event"
)

type s3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
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
	// StartTimeout bounds the retries of StartJobRun while Glue refuses a run
	// (concurrent runs exceeded, throttling); default 5 min.
	StartTimeout time.Duration
	// GluePollInterval is how often a started run is checked (default 10 s).
	GluePollInterval time.Duration
}

// Validate reports every wrong field.
func (c Config) Validate() error {
	var errs []error
	if c.LandingBucket == "" || c.DataBucket == "" || c.GlueJob == "" {
		errs = append(errs, errors.New("batch: LandingBucket, DataBucket and GlueJob are required"))
	}
	if c.MaxFiles < 1 || c.MaxFiles > 10000 {
		errs = append(errs, fmt.Errorf("batch: MaxFiles must be 1..10000, got %d", c.MaxFiles))
	}
	if c.Window < time.Second || c.Window > 12*time.Hour {
		errs = append(errs, fmt.Errorf("batch: Window must be 1s..12h, got %s", c.Window))
	}
	return errors.Join(errs...)
}

// Manifest is what manifests/<batchId>.json holds.
type Manifest struct {
	BatchID   string    `json:"batchId"`
	CreatedAt time.Time `json:"createdAt"`
	Files     []File    `json:"files"`
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
	fileErr map[File]error // the outcome of a file left out of the manifest (verify)
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

	mu      sync.Mutex
	open    *openBatch      // guarded by mu
	stopped bool            // guarded by mu: Run has returned; no new batches
	closed  chan *openBatch // batches ready to flush, in order
}

// New returns a Batcher; it flushes nothing until Run.
func New(cfg Config, s3Client s3API, glueClient glueAPI, pub Publisher, log *zap.Logger, m *Metrics) (*Batcher, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 5 * time.Minute
	}
	if cfg.GluePollInterval == 0 {
		cfg.GluePollInterval = 10 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Batcher{
		cfg: cfg, s3: s3Client, glue: glueClient, pub: pub, log: log.With(zap.String("component", "batcher")), metrics: m,
		// The follower names itself on the caller's logger: zap would repeat a key
		// added twice in one JSON line.
		follower: newFollower(cfg, glueClient, s3Client, pub, log, m),
		closed:   make(chan *openBatch, 1024),
	}, nil
}

// Handle adds the message's file to the open batch and waits for that batch's
// outcome: nil once the run started, an error otherwise (the message is redelivered).
func (b *Batcher) Handle(ctx context.Context, m consumer.Message) error {
	env, err := event.Parse([]byte(m.Body))
	if err != nil {
		return consumer.DeadLetter(err)
	}
	f, err := ParseObjectCreated(env, b.cfg.LandingBucket, b.cfg.KeyPrefix)
	if err != nil {
		return consumer.DeadLetter(err)
	}
	batch, err := b.add(f)
	if err != nil {
		return err
	}
	select {
	case <-batch.done:
		if err := batch.fileErr[f]; err != nil {
			return err
		}
		if batch.err == nil {
			b.log.Debug("file in a started run", zap.String("batch_id", batch.id), zap.String("key", f.Key), zap.String("message_id", m.ID))
		}
		return batch.err
	case <-ctx.Done():
		return fmt.Errorf("wait for batch %s: %w", batch.id, ctx.Err())
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
		batch := &openBatch{id: newBatchID(), seen: map[File]bool{}, fileErr: map[File]error{}, opened: time.Now(), done: make(chan struct{})}
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
	b.closed <- batch
}

// Run flushes closed batches and follows their runs until ctx is done; then it
// flushes the open batch (reason shutdown) on a bounded context and returns.
func (b *Batcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { b.follower.Run(ctx) })
	defer wg.Wait()
	for {
		select {
		case batch := <-b.closed:
			b.flush(ctx, batch)
		case <-ctx.Done():
			b.mu.Lock()
			b.stopped = true
			if b.open != nil && len(b.open.files) > 0 {
				b.closeLocked(b.open, "shutdown")
			}
			b.mu.Unlock()
			// Flush what is closed, on a context of its own: the files' messages are
			// deleted only if their run starts now.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			defer cancel()
			for {
				select {
				case batch := <-b.closed:
					b.flush(fctx, batch)
				default:
					return nil
				}
			}
		}
	}
}

// flush checks the batch's files, writes the manifest of those that exist and starts
// the run; the batch's waiters learn the outcome.
func (b *Batcher) flush(ctx context.Context, batch *openBatch) {
	defer close(batch.done)
	b.metrics.flushes.WithLabelValues(batch.reason).Inc()
	files := b.verify(ctx, batch)
	log := b.log.With(zap.String("batch_id", batch.id), zap.Int("batch_size", len(files)), zap.String("reason", batch.reason))
	if len(files) == 0 {
		log.Info("no file of the batch is left to run")
		return
	}
	b.metrics.files.Observe(float64(len(files)))
	manifest := "s3://" + b.cfg.DataBucket + "/manifests/" + batch.id + ".json"
	runID, err := b.start(ctx, batch.id, files, manifest)
	if err != nil {
		batch.err = err
		b.metrics.startFailures.Inc()
		log.Error("batch not started; its files will be redelivered", zap.Error(err))
		detail := ResultDetail{BatchID: batch.id, JobName: b.cfg.GlueJob, State: "START_FAILED", FileCount: len(files), Manifest: manifest, Error: err.Error()}
		if perr := b.pub.Publish(context.WithoutCancel(ctx), DetailError, detail); perr != nil {
			log.Error("publish etl-error failed", zap.Error(perr))
		}
		return
	}
	log.Info("batch started", zap.String("job_run_id", runID), zap.Duration("held", time.Since(batch.opened)))
	b.follower.follow(run{batchID: batch.id, runID: runID, fileCount: len(files), manifest: manifest})
}

func (b *Batcher) start(ctx context.Context, batchID string, files []File, manifest string) (string, error) {
	body, err := awsjson.Marshal(Manifest{BatchID: batchID, CreatedAt: time.Now().UTC(), Files: files})
	if err != nil {
		return "", fmt.Errorf("marshal manifest: %w", err)
	}
	if _, err := b.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.cfg.DataBucket), Key: aws.String("manifests/" + batchID + ".json"),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	}); err != nil {
		return "", fmt.Errorf("write manifest %s: %w", manifest, err)
	}
	deadline := time.Now().Add(b.cfg.StartTimeout)
	for attempt := 1; ; attempt++ {
		out, err := b.glue.StartJobRun(ctx, &glue.StartJobRunInput{
			JobName:   aws.String(b.cfg.GlueJob),
			Arguments: map[string]string{"--manifest": manifest, "--file_count": strconv.Itoa(len(files))},
		})
		if err == nil {
			return aws.ToString(out.JobRunId), nil
		}
		if !retryableStart(err) || time.Now().After(deadline) {
			return "", fmt.Errorf("start glue job %s: %w", b.cfg.GlueJob, err)
		}
		b.metrics.startRetries.Inc()
		delay := consumer.Backoff(attempt, 500*time.Millisecond, 30*time.Second)
		b.log.Warn("glue refused the run; retrying while holding the batch", zap.String("batch_id", batchID), zap.Error(err), zap.Duration("backoff", delay))
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("start glue job %s: %w", b.cfg.GlueJob, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// retryableStart: Glue is busy, not wrong. Classified by error code, never by text.
func retryableStart(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode() {
	case "ConcurrentRunsExceededException", "ThrottlingException", "ResourceNumberLimitExceededException", "InternalServiceException":
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

package batch

// Claims: each landing file in exactly one started run, whatever SQS and S3 deliver
// twice and however many batchers share the landing queue.
//
// Two kinds of object in the data bucket, both written only with S3 conditional
// writes (PutObject with If-None-Match: * to create, If-Match: <ETag> to replace; S3
// answers 412 PreconditionFailed when the condition fails and 409
// ConditionalRequestConflict when another conditional write of the key is in flight,
// which is retried):
//
//   - claims/batches/<batchId>.json, the batch's lease: {state: open | committed |
//     abandoned}. The flushing batcher creates it before it claims anything and
//     rewrites it (If-Match, a new body each time) every Lease/4 while the batch is
//     in flight; S3's LastModified of it is the owner's last sign of life. After the
//     Glue run started it writes committed; if the batch fails and surely did not
//     start (Glue lists no run of its manifest), it writes abandoned; a start whose
//     outcome Glue could not tell leaves the lease open, to go stale.
//   - claims/files/<sha256(bucket, key, upload)>, a file's claim: {batchId}. Made
//     with If-None-Match: * after HeadObject verified the file, before the manifest.
//
// A claim that exists already is judged by its batch's lease:
//   - our own batch (a retried write that had landed): ours;
//   - committed: the file is in a started run; its message is acknowledged (deleted)
//     and the file left out (a duplicate);
//   - open and renewed within Lease: the batch may still start; the file is left
//     out of this batch and waits, its message still in hand (invisible), for the
//     next batch of this batcher, which asks again (no receive is spent);
//   - abandoned, gone (expired), or open but not renewed for Lease (its owner
//     died): first, if a Glue run names the batch's manifest (the owner died between
//     StartJobRun and writing committed), the lease is set committed and the file is
//     a duplicate; else the lease is set abandoned (If-Match: one taker wins, and an
//     owner that wakes up finds its lease lost) and the claim taken over (If-Match on
//     the claim's ETag: one taker wins).
//
// "Committed" is "the Glue run started": the manifest alone is not, since a batch
// whose start fails is redelivered and batched again. An owner calls StartJobRun
// only while its last renewal is younger than Lease/2, with a deadline of Lease/4,
// so a run it starts is registered before a taker may find its lease stale; the
// remaining Lease/4 covers clock skew (a taker compares S3's LastModified with its
// own clock). Lease is the landing queue's visibility timeout: an owner that died
// stopped extending its messages too, so they come back when its lease has run out
// or nearly.
//
// Claims expire by the bucket's lifecycle rule after 15 days, longer than SQS keeps
// a message (at most 14 days): any redelivery of an event finds its claim.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/consumer"
)

// ClaimPrefix is where claims and batch leases live in the data bucket.
const ClaimPrefix = "claims/"

// LeaseDefault is Config.Lease when it is 0: the landing queue's default visibility.
const LeaseDefault = 2 * time.Minute

// Lease states.
const (
	stateOpen      = "open"
	stateCommitted = "committed"
	stateAbandoned = "abandoned"
)

// leaseRecord is claims/batches/<batchId>.json.
type leaseRecord struct {
	BatchID   string    `json:"batchId"`
	State     string    `json:"state"`
	Manifest  string    `json:"manifest"`
	RunID     string    `json:"runId,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	// RenewedAt changes the body, hence the ETag, on every renewal: a taker's
	// If-Match on what it read fails once the owner renewed.
	RenewedAt time.Time `json:"renewedAt"`
}

// claimRecord is claims/files/<hash>.
type claimRecord struct {
	BatchID   string    `json:"batchId"`
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	Upload    string    `json:"upload"`
	ClaimedAt time.Time `json:"claimedAt"`
}

func leaseKey(batchID string) string { return ClaimPrefix + "batches/" + batchID + ".json" }

// upload names one upload of f's object. A version id does in a versioned bucket.
// Else the ETag names the bytes and the event's sequencer the PUT: S3 gives each
// event of a key a new sequencer and a duplicate delivery repeats it, so identical
// bytes uploaded again are a new file (the issue asked for ETag or version; the ETag
// alone would drop such a re-upload as a duplicate). An event without a sequencer
// (not from S3) falls back to the ETag. moto 5.2.5 sends one constant sequencer, so
// there a re-upload of identical bytes counts as a duplicate.
func upload(f File) string {
	if f.Version != "" {
		return "v:" + f.Version
	}
	return "e:" + f.ETag + "/" + f.Sequencer
}

// claimKey hashes bucket, key and upload: a key may be 1,024 bytes, a claim's too.
func claimKey(f File) string {
	h := sha256.New()
	for _, s := range []string{f.Bucket, f.Key, upload(f)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return ClaimPrefix + "files/" + hex.EncodeToString(h.Sum(nil))
}

// claimResult is what claiming a file found.
type claimResult int

const (
	claimed   claimResult = iota // the file is this batch's
	duplicate                    // in a committed batch: acknowledge, leave out
	busy                         // in a batch that may still start: wait for the next
)

var errLeaseLost = errors.New("batch lease lost: another batcher took it over after it was not renewed in time")

// claimer makes and judges claims. Safe for concurrent use.
type claimer struct {
	s3      s3API
	glue    glueAPI
	bucket  string
	glueJob string
	lease   time.Duration
	log     *zap.Logger
	metrics *Metrics

	mu    sync.Mutex
	final map[string]string // batch id → committed or abandoned, decided for good; guarded by mu
}

func newClaimer(cfg Config, s3Client s3API, g glueAPI, log *zap.Logger, m *Metrics) *claimer {
	return &claimer{s3: s3Client, glue: g, bucket: cfg.DataBucket, glueJob: cfg.GlueJob, lease: cfg.Lease,
		log: log, metrics: m, final: map[string]string{}}
}

// s3 error classes of conditional writes, by code.
func errCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

func preconditionFailed(err error) bool { return errCode(err) == "PreconditionFailed" }

// conflict: another conditional write of the key is in flight (409); try again.
func conflict(err error) bool { return errCode(err) == "ConditionalRequestConflict" }

// put writes body at key under a condition: ifMatch "" means If-None-Match: *.
func (c *claimer) put(ctx context.Context, key string, body any, ifMatch string) (string, error) {
	b, err := awsjson.Marshal(body)
	if err != nil {
		return "", fmt.Errorf("marshal %s: %w", key, err)
	}
	in := &s3.PutObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key), Body: bytes.NewReader(b), ContentType: aws.String("application/json")}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := c.s3.PutObject(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// get reads key into v; found is false when there is no such object.
func (c *claimer) get(ctx context.Context, key string, v any) (etag string, modified time.Time, found bool, err error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key)})
	if err != nil {
		if notFound(err) {
			return "", time.Time{}, false, nil
		}
		return "", time.Time{}, false, fmt.Errorf("get s3://%s/%s: %w", c.bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("read s3://%s/%s: %w", c.bucket, key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return "", time.Time{}, false, fmt.Errorf("decode s3://%s/%s: %w", c.bucket, key, err)
	}
	return aws.ToString(out.ETag), aws.ToTime(out.LastModified), true, nil
}

// maxTries bounds a claim's rounds of conflicting writes before it is retried later.
const maxTries = 6

// claim claims f for batchID.
func (c *claimer) claim(ctx context.Context, batchID string, f File) (claimResult, error) {
	key := claimKey(f)
	rec := claimRecord{BatchID: batchID, Bucket: f.Bucket, Key: f.Key, Upload: upload(f)}
	for try := range maxTries {
		if try > 0 && !consumer.Sleep(ctx, consumer.Backoff(try, 50*time.Millisecond, 2*time.Second)) {
			return 0, ctx.Err()
		}
		rec.ClaimedAt = time.Now().UTC()
		_, err := c.put(ctx, key, rec, "")
		switch {
		case err == nil:
			c.metrics.claims.WithLabelValues("made").Inc()
			return claimed, nil
		case conflict(err):
			continue
		case !preconditionFailed(err):
			return 0, fmt.Errorf("claim s3://%s/%s: %w", f.Bucket, f.Key, err)
		}
		var cur claimRecord
		etag, _, found, err := c.get(ctx, key, &cur)
		if err != nil {
			return 0, fmt.Errorf("read claim of s3://%s/%s: %w", f.Bucket, f.Key, err)
		}
		if !found {
			continue // expired or removed in between: create it again
		}
		if cur.BatchID == batchID {
			return claimed, nil // our own write, answered late and retried
		}
		state, err := c.state(ctx, cur.BatchID)
		if err != nil {
			return 0, err
		}
		switch state {
		case stateCommitted:
			c.metrics.claims.WithLabelValues("duplicate").Inc()
			return duplicate, nil
		case stateOpen:
			c.metrics.claims.WithLabelValues("busy").Inc()
			return busy, nil
		}
		rec.ClaimedAt = time.Now().UTC()
		_, err = c.put(ctx, key, rec, etag)
		switch {
		case err == nil:
			c.metrics.claims.WithLabelValues("taken_over").Inc()
			c.log.Info("file taken over from an abandoned batch", zap.String("batch_id", batchID), zap.String("from_batch_id", cur.BatchID), zap.String("key", f.Key))
			return claimed, nil
		case preconditionFailed(err), conflict(err), notFound(err):
			continue // another taker was first, or the claim changed: look again
		default:
			return 0, fmt.Errorf("take over claim of s3://%s/%s: %w", f.Bucket, f.Key, err)
		}
	}
	return 0, fmt.Errorf("claim s3://%s/%s: still contended after %d tries", f.Bucket, f.Key, maxTries)
}

// state is a batch's lease state as a taker sees it: committed, abandoned (take
// over its files), or open (it may still start).
func (c *claimer) state(ctx context.Context, batchID string) (string, error) {
	c.mu.Lock()
	s, ok := c.final[batchID]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	for range maxTries {
		var rec leaseRecord
		etag, modified, found, err := c.get(ctx, leaseKey(batchID), &rec)
		if err != nil {
			return "", fmt.Errorf("read lease of batch %s: %w", batchID, err)
		}
		if !found {
			// Leases are written before any claim and expire with them: a claim
			// outliving its lease is as old as the lifecycle rule allows.
			return c.decide(batchID, stateAbandoned), nil
		}
		if rec.State == stateAbandoned {
			// Its owner abandons only what surely did not start, but an older
			// version did not ask Glue first: a run may name it all the same.
			started, err := c.runStarted(ctx, rec)
			if err != nil {
				return "", err
			}
			if !started {
				return c.decide(batchID, stateAbandoned), nil
			}
			next := rec
			next.State, next.RenewedAt = stateCommitted, time.Now().UTC()
			if _, err := c.put(ctx, leaseKey(batchID), next, etag); err != nil && !preconditionFailed(err) && !conflict(err) {
				return "", fmt.Errorf("record the run of abandoned batch %s: %w", batchID, err)
			}
			c.log.Warn("an abandoned batch's run started after all; its files count as run", zap.String("batch_id", batchID))
			return c.decide(batchID, stateCommitted), nil
		}
		if rec.State != stateOpen {
			return c.decide(batchID, rec.State), nil
		}
		if time.Since(modified) <= c.lease {
			return stateOpen, nil
		}
		// Stale: its owner died. Did it start the run before dying?
		started, err := c.runStarted(ctx, rec)
		if err != nil {
			return "", err
		}
		next := rec
		next.State, next.RenewedAt = stateAbandoned, time.Now().UTC()
		if started {
			next.State = stateCommitted
		}
		_, err = c.put(ctx, leaseKey(batchID), next, etag)
		switch {
		case err == nil:
			c.log.Warn("lease of a batch whose batcher stopped renewing it decided", zap.String("batch_id", batchID), zap.String("state", next.State))
			return c.decide(batchID, next.State), nil
		case preconditionFailed(err), conflict(err):
			continue // renewed, or decided by another taker: read again
		default:
			return "", fmt.Errorf("decide lease of batch %s: %w", batchID, err)
		}
	}
	return "", fmt.Errorf("lease of batch %s: still contended after %d tries", batchID, maxTries)
}

func (c *claimer) decide(batchID, state string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.final) > 100_000 { // a bound, not a cache policy: decisions are cheap to read again
		clear(c.final)
	}
	c.final[batchID] = state
	return state
}

// runStarted reports whether a run of the job names the manifest of rec's batch.
// The batch cannot have started before its lease was made; a lease's age (minus
// clock skew) bounds how far back Glue's history is read, and checkTimeout how long.
func (c *claimer) runStarted(ctx context.Context, rec leaseRecord) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout(c.lease))
	defer cancel()
	_, found, err := jobRuns{glue: c.glue, job: c.glueJob}.find(ctx, rec.Manifest, rec.CreatedAt.Add(-c.lease))
	return found, err
}

// checkTimeout bounds one look in Glue's run history.
func checkTimeout(lease time.Duration) time.Duration { return min(lease/4, 10*time.Second) }

// lease is a flushing batch's hold on its claims; only the flushing goroutine and
// the renewer it starts touch it, under mu.
type lease struct {
	c       *claimer
	mu      sync.Mutex
	rec     leaseRecord
	etag    string
	renewed time.Time // when the last write of rec succeeded
	lost    bool
}

// open creates the batch's lease; nothing is claimed before it exists.
func (c *claimer) open(ctx context.Context, batchID, manifest string) (*lease, error) {
	now := time.Now()
	l := &lease{c: c, rec: leaseRecord{BatchID: batchID, State: stateOpen, Manifest: manifest, CreatedAt: now.UTC(), RenewedAt: now.UTC()}}
	etag, err := c.put(ctx, leaseKey(batchID), l.rec, "")
	if err != nil {
		return nil, fmt.Errorf("create lease of batch %s: %w", batchID, err)
	}
	l.etag, l.renewed = etag, now
	return l, nil
}

// keep renews the lease every Lease/4 until stop; the returned context is cancelled
// when the lease is lost, so the batch stops before it could start a run.
func (l *lease) keep(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		every := l.c.lease / 4
		for {
			t := time.NewTimer(every)
			select {
			case <-done:
				t.Stop()
				return
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if err := l.write(ctx, stateOpen, ""); err != nil {
				if errors.Is(err, errLeaseLost) {
					cancel(err)
					return
				}
				l.c.log.Warn("renew batch lease failed; will try again", zap.String("batch_id", l.rec.BatchID), zap.Error(err))
			}
		}
	})
	return ctx, func() { close(done); wg.Wait(); cancel(nil) }
}

// createdAt is when the lease was made: no run of its batch is older.
func (l *lease) createdAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.CreatedAt
}

// fresh reports whether a run may be started now: the last renewal is recent
// enough that no taker can find the lease stale before StartJobRun returns.
func (l *lease) fresh() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.lost && time.Since(l.renewed) < l.c.lease/2
}

// write replaces the lease record (state, run id) if it is still ours.
func (l *lease) write(ctx context.Context, state, runID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return errLeaseLost
	}
	next := l.rec
	next.State, next.RenewedAt = state, time.Now().UTC()
	if runID != "" {
		next.RunID = runID
	}
	etag, err := l.c.put(ctx, leaseKey(next.BatchID), next, l.etag)
	switch {
	case err == nil:
		l.rec, l.etag, l.renewed = next, etag, time.Now()
		return nil
	case preconditionFailed(err):
		l.lost = true
		return errLeaseLost
	default:
		return fmt.Errorf("write lease of batch %s: %w", next.BatchID, err)
	}
}

// commit records that the batch's run started. A taker may have found the run and
// written committed already; that is the same outcome.
func (l *lease) commit(ctx context.Context, runID string) {
	for try := range maxTries {
		err := l.write(ctx, stateCommitted, runID)
		if err == nil {
			return
		}
		if errors.Is(err, errLeaseLost) {
			var rec leaseRecord
			if _, _, found, gerr := l.c.get(ctx, leaseKey(l.rec.BatchID), &rec); gerr == nil && found && rec.State == stateCommitted {
				return
			}
			l.c.log.Error("lease of a started batch was taken over: its files may be in two runs", zap.String("batch_id", l.rec.BatchID), zap.String("job_run_id", runID))
			return
		}
		if !consumer.Sleep(ctx, consumer.Backoff(try, 100*time.Millisecond, 5*time.Second)) {
			break
		}
	}
	// Not written: a taker that finds the lease stale sees the run in Glue.
	l.c.log.Warn("could not record the batch as committed; takers will find its run", zap.String("batch_id", l.rec.BatchID))
}

// abandon releases the batch's claims at once (else takers wait for the lease).
func (l *lease) abandon(ctx context.Context) {
	if err := l.write(ctx, stateAbandoned, ""); err != nil && !errors.Is(err, errLeaseLost) {
		l.c.log.Warn("could not abandon the batch lease; its files are taken over when it expires", zap.String("batch_id", l.rec.BatchID), zap.Error(err))
	}
}

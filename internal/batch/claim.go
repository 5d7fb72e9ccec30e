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
//     abandoned, owner, renewedAt, until, leaseSeconds}. The flushing batcher creates
//     it before it claims anything and rewrites it (If-Match, a new body each time)
//     every Lease/4 while the batch is in flight. Each write says how long it holds:
//     until = the time the owner sent it + its Lease (the owner's clock), so a reply
//     that comes back late makes the owner more careful, never a taker bolder, and a
//     taker with another Lease setting (a deploy that changed the visibility
//     timeout) judges by the owner's. After the Glue run started the owner writes
//     committed; if the batch fails and surely did not start (Glue lists no run of
//     its manifest), it writes abandoned; a start whose outcome Glue could not tell
//     leaves the lease open, to go stale.
//   - claims/files/<sha256(bucket, key, upload)>, a file's claim: {batchId}. Made
//     with If-None-Match: * after HeadObject verified the file, before the manifest.
//
// A claim that exists already is judged by its batch's lease:
//   - our own batch (a write whose answer was lost, or a retried one that had
//     landed): ours;
//   - committed: the file is in a started run; its message is acknowledged (deleted)
//     and the file left out (a duplicate);
//   - open and until + Lease/4 not passed: the batch may still start; the file is
//     left out of this batch and waits, its message still in hand (invisible), for
//     the next batch of this batcher, which asks again (no receive is spent);
//   - abandoned, gone (expired), or open and stale (its owner died): first, if a
//     Glue run names the batch's manifest (the owner died between StartJobRun and
//     writing committed), the lease is set committed and the file is a duplicate;
//     else the lease is set abandoned (If-Match: one taker wins, and an
//     owner that wakes up finds its lease lost) and the claim taken over (If-Match on
//     the claim's ETag: one taker wins).
//
// "Committed" is "the Glue run started": the manifest alone is not, since a batch
// whose start fails is redelivered and batched again. An owner calls StartJobRun
// only while the last renewal it saw succeed was sent less than Lease/2 ago, with a
// deadline of Lease/4, so a run it starts is registered by until - Lease/4; a taker
// finds the lease stale only after until + Lease/4 by its own clock: half a lease
// covers clock skew and a request that reaches Glue late. A record written before
// it carried until (a deploy overlap) is judged the old way: S3's LastModified plus
// the reader's Lease, with the same margin. Lease is the landing queue's visibility
// timeout: an owner that died stopped extending its messages too, so they come back
// when its lease has run out or nearly.
//
// Every write can succeed and still answer an error (a timeout, a reset, a 5xx,
// the SDK's last attempt, or 412 on a retried attempt whose first one won). Such a
// write is resolved by reading the object back, never by assuming it failed: a
// claim that names this batch is this batch's; a lease record whose owner is this
// flush (a random id it writes) was written by it. A claim whose fate stays unknown
// (the read-back failed too) may name the batch: the batch then starts nothing and
// abandons its lease, which releases the claim to whoever takes the file next.
//
// Claims expire by the bucket's lifecycle rule after 15 days, longer than SQS keeps
// a message (at most 14 days): any redelivery of an event finds its claim.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/s3record"
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
	// RenewedAt (when the owner sent this write) changes the body, hence the ETag,
	// on every renewal: a taker's If-Match on what it read fails once the owner
	// renewed.
	RenewedAt time.Time `json:"renewedAt"`
	// Until is RenewedAt + the owner's Lease: the owner holds the batch until then.
	// Absent in records of versions before it (judged by LastModified, see stale).
	Until        time.Time `json:"until,omitzero"`
	LeaseSeconds float64   `json:"leaseSeconds,omitempty"`
	// Owner is a random id of the flush that writes the record, so that it knows
	// its own write when the answer was lost. A taker's decision clears it.
	Owner string `json:"owner,omitempty"`
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
// alone would drop such a re-upload as a duplicate). "null" is no version: S3 says it
// of every upload to an unversioned or versioning-suspended bucket (moto of every
// upload), so it would make every upload of a key one file. An event without a
// sequencer (not from S3) falls back to the ETag. moto 5.2.5 sends one constant
// sequencer, so there a re-upload of identical bytes counts as a duplicate.
func upload(f File) string {
	if f.Version != "" && f.Version != nullVersion {
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

// put writes body at key of the data bucket under a condition: ifMatch "" creates
// (If-None-Match: *), else it replaces the version of that ETag (If-Match).
func (c *claimer) put(ctx context.Context, key string, body any, ifMatch string) (string, error) {
	return s3record.Put(ctx, c.s3, c.bucket, key, body, ifMatch)
}

// get reads key of the data bucket into v; found is false when there is no such object.
func (c *claimer) get(ctx context.Context, key string, v any) (etag string, modified time.Time, found bool, err error) {
	return s3record.Get(ctx, c.s3, c.bucket, key, v)
}

// maxTries bounds a claim's rounds of conflicting writes before it is retried later.
const maxTries = 6

// errClaimInDoubt marks a claim whose write may have landed unseen: S3 may hold a
// claim naming the batch while the batch does not know it. Such a batch must not
// start (see Batcher.claim).
var errClaimInDoubt = errors.New("claim in doubt: its write may have landed and could not be read back")

// claim claims f for batchID: it creates the claim, or takes over one of a batch
// that will never start. A write that answered an error may have landed, so every
// failed write is followed by reading the claim back: one naming this batch is this
// batch's, one naming another is judged by its lease, and none is created again.
// The error wraps errClaimInDoubt when a write of this claim may have landed and
// no read-back told.
func (c *claimer) claim(ctx context.Context, batchID string, f File) (claimResult, error) {
	key := claimKey(f)
	rec := claimRecord{BatchID: batchID, Bucket: f.Bucket, Key: f.Key, Upload: upload(f)}
	write := true    // false: read the claim before writing again
	ifMatch := ""    // "": create; else take over the claim with this ETag
	var unseen error // the error of our last write until a read-back tells its fate
	var readErr error
	for try := range maxTries {
		if try > 0 && !consumer.Sleep(ctx, consumer.Backoff(try, 50*time.Millisecond, 2*time.Second)) {
			return 0, c.claimErr(f, unseen, ctx.Err())
		}
		if write {
			rec.ClaimedAt = time.Now().UTC()
			_, err := c.put(ctx, key, rec, ifMatch)
			if err == nil {
				c.claimedBy(batchID, f, ifMatch, nil)
				return claimed, nil
			}
			// 412 (the claim exists: someone's, or ours from a retried attempt),
			// 409 (a conditional write of the key in flight, maybe ours), a lost
			// answer: all are told by reading the claim.
			unseen = err
		}
		var cur claimRecord
		etag, _, found, err := c.get(ctx, key, &cur)
		if err != nil {
			write, readErr = false, err
			continue
		}
		switch {
		case !found:
			if refused(unseen) {
				return 0, fmt.Errorf("claim s3://%s/%s: %w", f.Bucket, f.Key, unseen)
			}
			// None: ours did not land (or the claim expired in between): create it.
			write, ifMatch, unseen = true, "", nil
			continue
		case cur.BatchID == batchID:
			// Ours: a write whose answer was lost, or an earlier attempt of a
			// retried one.
			c.claimedBy(batchID, f, ifMatch, unseen)
			return claimed, nil
		}
		unseen = nil // it names another batch: no write of ours holds
		res, takeOver, err := c.othersClaim(ctx, batchID, f, cur.BatchID)
		if !takeOver {
			return res, err
		}
		write, ifMatch = true, etag // abandoned: take it over, one taker wins
	}
	if unseen == nil && readErr == nil {
		return 0, fmt.Errorf("claim s3://%s/%s: still contended after %d tries", f.Bucket, f.Key, maxTries)
	}
	return 0, c.claimErr(f, unseen, readErr)
}

// othersClaim judges f's claim by other, the batch it names, from that batch's
// lease: its files are run (duplicate), it may still start (busy), or it is
// abandoned and takeOver is true.
func (c *claimer) othersClaim(ctx context.Context, batchID string, f File, other string) (res claimResult, takeOver bool, err error) {
	state, err := c.state(ctx, other)
	if err != nil {
		return 0, false, err
	}
	switch state {
	case stateCommitted:
		c.metrics.claims.WithLabelValues("duplicate").Inc()
		return duplicate, false, nil
	case stateOpen:
		c.metrics.claims.WithLabelValues("busy").Inc()
		return busy, false, nil
	}
	if other != "" {
		c.log.Debug("taking over the claim of an abandoned batch", zap.String("batch_id", batchID), zap.String("from_batch_id", other), zap.String("key", f.Key))
	}
	return 0, true, nil
}

// claimErr is the error of a claim given up; in doubt if a write may have landed.
func (c *claimer) claimErr(f File, unseen, err error) error {
	if unseen == nil {
		return fmt.Errorf("claim s3://%s/%s: %w", f.Bucket, f.Key, err)
	}
	return fmt.Errorf("claim s3://%s/%s: %w: %w", f.Bucket, f.Key, errClaimInDoubt, errors.Join(unseen, err))
}

// claimedBy counts a claim made (or taken over, when ifMatch is set); lost is the
// error of a write found landed only by reading it back (nil if it answered).
func (c *claimer) claimedBy(batchID string, f File, ifMatch string, lost error) {
	result := "made"
	if ifMatch != "" {
		result = "taken_over"
		c.log.Info("file taken over from an abandoned batch", zap.String("batch_id", batchID), zap.String("key", f.Key))
	}
	c.metrics.claims.WithLabelValues(result).Inc()
	if lost != nil {
		c.log.Info("claim's answer lost; read back, it names this batch", zap.String("batch_id", batchID), zap.String("key", f.Key), zap.NamedError("lost", lost))
	}
}

// refused: S3 answered the write with a refusal that a retry cannot change (a
// 4xx other than a failed or conflicting condition, a timeout or throttling).
// Anything else may have come after S3 acted.
func refused(err error) bool {
	var re *smithyhttp.ResponseError
	if err == nil || !errors.As(err, &re) || s3record.NotFound(err) { // 404 of If-Match: the claim is gone
		return false
	}
	switch code := re.HTTPStatusCode(); code {
	case 408, 409, 412, 429:
		return false
	default:
		return code >= 400 && code < 500
	}
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
	var lastErr error
	for try := range maxTries {
		if try > 0 && lastErr != nil && !consumer.Sleep(ctx, consumer.Backoff(try, 50*time.Millisecond, 2*time.Second)) {
			return "", fmt.Errorf("decide lease of batch %s: %w", batchID, errors.Join(lastErr, ctx.Err()))
		}
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
			return c.recheckAbandoned(ctx, batchID, rec, etag)
		}
		if rec.State != stateOpen {
			return c.decide(batchID, rec.State), nil
		}
		if !c.stale(rec, modified, time.Now()) {
			return stateOpen, nil
		}
		// Stale: its owner died. Did it start the run before dying?
		started, err := c.runStarted(ctx, rec)
		if err != nil {
			return "", err
		}
		next := rec
		next.State, next.RenewedAt, next.Owner = stateAbandoned, time.Now().UTC(), ""
		if started {
			next.State = stateCommitted
		}
		_, err = c.put(ctx, leaseKey(batchID), next, etag)
		if err == nil {
			c.log.Warn("lease of a batch whose batcher stopped renewing it decided", zap.String("batch_id", batchID), zap.String("state", next.State))
			return c.decide(batchID, next.State), nil
		}
		// Renewed, decided by another taker, or our own decision whose answer was
		// lost: read again, the record tells.
		lastErr = err
	}
	return "", fmt.Errorf("lease of batch %s: still undecided after %d tries: %w", batchID, maxTries, lastErr)
}

// recheckAbandoned decides the lease rec (version etag) that its owner marked
// abandoned. Its owner abandons only what surely did not start, but an older
// version did not ask Glue first: a run may name it all the same.
func (c *claimer) recheckAbandoned(ctx context.Context, batchID string, rec leaseRecord, etag string) (string, error) {
	started, err := c.runStarted(ctx, rec)
	if err != nil {
		return "", err
	}
	if !started {
		return c.decide(batchID, stateAbandoned), nil
	}
	next := rec
	next.State, next.RenewedAt, next.Owner = stateCommitted, time.Now().UTC(), ""
	if _, err := c.put(ctx, leaseKey(batchID), next, etag); err != nil && !s3record.PreconditionFailed(err) && !s3record.Conflict(err) {
		return "", fmt.Errorf("record the run of abandoned batch %s: %w", batchID, err)
	}
	c.log.Warn("an abandoned batch's run started after all; its files count as run", zap.String("batch_id", batchID))
	return c.decide(batchID, stateCommitted), nil
}

// stale reports whether an open lease's owner is gone at now: its deadline passed
// by more than a quarter of its lease (clock skew, a request that reached Glue
// late). A record without a deadline, written before records carried one, is
// judged by S3's LastModified and this batcher's Lease.
func (c *claimer) stale(rec leaseRecord, modified, now time.Time) bool {
	until, lease := rec.Until, time.Duration(rec.LeaseSeconds*float64(time.Second))
	if until.IsZero() || lease <= 0 {
		until, lease = modified.Add(c.lease), c.lease
	}
	return now.After(until.Add(lease / 4))
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
	renewed time.Time // when the last write of rec that succeeded was sent
	lost    bool
}

// open creates the batch's lease; nothing is claimed before it exists.
func (c *claimer) open(ctx context.Context, batchID, manifest string) (*lease, error) {
	now := time.Now()
	owner := make([]byte, 8)
	_, _ = rand.Read(owner)
	l := &lease{c: c, rec: leaseRecord{BatchID: batchID, State: stateOpen, Manifest: manifest, CreatedAt: now.UTC(), RenewedAt: now.UTC(),
		Until: now.UTC().Add(c.lease), LeaseSeconds: c.lease.Seconds(), Owner: hex.EncodeToString(owner)}}
	etag, err := c.put(ctx, leaseKey(batchID), l.rec, "")
	if err != nil {
		// The answer may have been lost after S3 wrote it: read it back.
		var cur leaseRecord
		curTag, _, found, gerr := c.get(ctx, leaseKey(batchID), &cur)
		if gerr != nil || !found || !l.ours(cur, l.rec) {
			return nil, fmt.Errorf("create lease of batch %s: %w", batchID, errors.Join(err, gerr))
		}
		etag = curTag
	}
	l.etag, l.renewed = etag, now
	return l, nil
}

// ours reports whether cur, read back, is the write want of this lease's owner.
func (l *lease) ours(cur, want leaseRecord) bool {
	return cur.Owner == want.Owner && cur.State == want.State && cur.RenewedAt.Equal(want.RenewedAt)
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

// write replaces the lease record (state, run id) if it is still ours. A write
// that answered an error may have landed: the record is read back, and one this
// owner wrote (this write, or an earlier one whose answer was lost and whose ETag
// the owner never learnt) is ours, anything else a taker's decision.
func (l *lease) write(ctx context.Context, state, runID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return errLeaseLost
	}
	var err error
	for range 3 {
		sent := time.Now()
		next := l.rec
		next.State, next.RenewedAt = state, sent.UTC()
		next.Until, next.LeaseSeconds = next.RenewedAt.Add(l.c.lease), l.c.lease.Seconds()
		if runID != "" {
			next.RunID = runID
		}
		var etag string
		etag, err = l.c.put(ctx, leaseKey(next.BatchID), next, l.etag)
		if err == nil {
			l.rec, l.etag, l.renewed = next, etag, sent
			return nil
		}
		var cur leaseRecord
		curTag, _, found, gerr := l.c.get(ctx, leaseKey(next.BatchID), &cur)
		switch {
		case gerr != nil:
			return fmt.Errorf("write lease of batch %s: %w", next.BatchID, errors.Join(err, gerr))
		case !found || cur.Owner != l.rec.Owner:
			l.lost = true // decided by a taker (or expired)
			return errLeaseLost
		case l.ours(cur, next):
			l.rec, l.etag, l.renewed = next, curTag, sent // landed; its answer was lost
			return nil
		case curTag == l.etag:
			return fmt.Errorf("write lease of batch %s: %w", next.BatchID, err) // did not land
		}
		// An earlier write of ours landed unseen: write again on its ETag. Its
		// send time is unknown here, so freshness stays that of the last answer.
		l.rec, l.etag = cur, curTag
	}
	return fmt.Errorf("write lease of batch %s: %w", l.rec.BatchID, err)
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

// inDoubt returns the first claim error that leaves a claim in doubt.
func inDoubt(errs []error) error {
	for _, err := range errs {
		if errors.Is(err, errClaimInDoubt) {
			return err
		}
	}
	return nil
}

// giveUp marks every file of a batch that starts nothing: one claimed or in doubt
// is redelivered with doubt as its error; a duplicate or busy one keeps its fate.
func giveUp(batch *openBatch, checked []verified, results []claimResult, errs []error, doubt error) {
	for i, v := range checked {
		switch {
		case errs[i] != nil:
			batch.fileErr[v.event] = errs[i]
		case results[i] == duplicate:
			batch.dup[v.event] = true
		case results[i] == busy:
			batch.busy[v.event] = true
		default:
			batch.fileErr[v.event] = fmt.Errorf("batch %s given up: %w", batch.id, doubt)
		}
	}
}

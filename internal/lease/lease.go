// Package lease keeps one holder of a long job across SQS's 12 h visibility cap:
// an object in the data bucket, written only with S3 conditional writes
// (If-None-Match: * to create, If-Match: <ETag> to replace), that its holder
// renews. The consumer's hand-over (internal/consumer, handover.go) uses it.
//
// An object leases/<queue>/<id>.json: {holder, seq, state, renewedAt, ttlSeconds}.
// state is held (a job runs; alive while S3's LastModified + ttl is not past),
// released (the job ended without an outcome: whoever comes next runs it again)
// or done (the job's outcome is settled: whatever still names the lease is
// dropped). Every write names its holder and a new seq, so a write whose
// reply was lost is recognised by reading the object back: the conditional write
// failed (412) but the body is ours, so it had landed. A taker compares S3's
// LastModified with its own clock: the margin a caller adds covers clock skew.
//
// Leases expire by the data bucket's lifecycle rule (15 days under leases/), longer
// than SQS keeps the message that names one.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/taskbridge/taskbridge/internal/s3record"
)

// Prefix is where leases live in the data bucket.
const Prefix = "leases/"

// States of a lease.
const (
	Held     = "held"
	Released = "released"
	Done     = "done"
)

// ErrHeld is returned by Hold and TakeOver when another holder has the lease.
var ErrHeld = errors.New("lease held by another worker")

// ErrLost is returned by Renew and Finish once another worker took the lease over:
// its old holder must stop the job.
var ErrLost = errors.New("lease lost to another worker")

// Store makes and reads the leases of one bucket. Safe for concurrent use.
type Store struct {
	s3     s3record.API
	bucket string
	ttl    time.Duration
	// NowFunc is the clock leases are judged by (default time.Now).
	NowFunc func() time.Time
}

// NewStore keeps leases in bucket; each lives ttl past its last write.
func NewStore(client s3record.API, bucket string, ttl time.Duration) *Store {
	if client == nil || bucket == "" || ttl < time.Second {
		panic("lease.NewStore: a client, a bucket and a ttl of at least 1s are needed")
	}
	return &Store{s3: client, bucket: bucket, ttl: ttl, NowFunc: time.Now}
}

// TTL is how long a lease lives past its last write.
func (s *Store) TTL() time.Duration { return s.ttl }

// Key is the lease of the message id of queue.
func Key(queue, id string) string { return Prefix + queue + "/" + id + ".json" }

type record struct {
	Holder string `json:"holder"`
	// Seq counts the holder's writes: every write is a new body, hence a new
	// ETag, and a taker's If-Match on what it read fails once the holder renewed.
	Seq        int       `json:"seq"`
	State      string    `json:"state"`
	RenewedAt  time.Time `json:"renewedAt"`
	TTLSeconds float64   `json:"ttlSeconds"`
}

// same reports whether r and o are the same write.
func (r record) same(o record) bool {
	return r.Holder == o.Holder && r.Seq == o.Seq && r.State == o.State && r.RenewedAt.Equal(o.RenewedAt) && r.TTLSeconds == o.TTLSeconds
}

// View is a lease as read.
type View struct {
	Key     string
	State   string
	Holder  string
	Expires time.Time // S3's LastModified + the ttl written
	etag    string
}

// Live reports whether a holder may still be running the job at now.
func (v View) Live(now time.Time) bool { return v.State == Held && now.Before(v.Expires) }

// Lease is one holder's hold of a key. Renew and Finish may be called from
// different goroutines.
type Lease struct {
	s      *Store
	key    string
	holder string

	mu      sync.Mutex
	etag    string
	renewed time.Time // local time of the last write that landed
	seq     int
	lost    bool
}

// Key is the lease's object key.
func (l *Lease) Key() string { return l.key }

// Renewed is when the last write of the lease landed (local clock).
func (l *Lease) Renewed() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed
}

func newHolder() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Hold creates the lease of key, held by a new holder. ErrHeld: it exists.
func (s *Store) Hold(ctx context.Context, key string) (*Lease, error) {
	l := &Lease{s: s, key: key, holder: newHolder()}
	if err := l.write(ctx, Held, ""); err != nil {
		if errors.Is(err, ErrLost) {
			return nil, fmt.Errorf("hold %s: %w", key, ErrHeld)
		}
		return nil, err
	}
	return l, nil
}

// Inspect reads key; found is false when there is no lease.
func (s *Store) Inspect(ctx context.Context, key string) (v View, found bool, err error) {
	var rec record
	etag, modified, found, err := s3record.Get(ctx, s.s3, s.bucket, key, &rec)
	if err != nil || !found {
		return View{}, found, err
	}
	return View{Key: key, State: rec.State, Holder: rec.Holder, etag: etag,
		Expires: modified.Add(time.Duration(rec.TTLSeconds * float64(time.Second)))}, true, nil
}

// TakeOver takes the lease as v read it (a dead holder's, or a released one) for
// a new holder: one taker wins; the others get ErrHeld.
func (s *Store) TakeOver(ctx context.Context, v View) (*Lease, error) {
	l := &Lease{s: s, key: v.Key, holder: newHolder()}
	if err := l.write(ctx, Held, v.etag); err != nil {
		if errors.Is(err, ErrLost) {
			return nil, fmt.Errorf("take over %s: %w", v.Key, ErrHeld)
		}
		return nil, err
	}
	return l, nil
}

// Renew rewrites the lease, still held, if it is still this holder's.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.write(ctx, Held, l.etag)
}

// Finish writes the lease's last state (Done or Released) if it is still this
// holder's.
func (l *Lease) Finish(ctx context.Context, state string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.write(ctx, state, l.etag)
}

// write puts this holder's record of state over the object of ETag ifMatch (""
// for none). A write that fails is settled by reading the object back: a body of
// this holder's is an earlier write whose reply was lost (or this one): its ETag
// is taken and, if it is not this write, the write is made once more on it;
// another holder's body (or none, after a replace) means the lease is lost:
// ErrLost. Any other failure is returned, with nothing changed. l.mu is held by
// the caller, or l is not yet shared.
func (l *Lease) write(ctx context.Context, state, ifMatch string) error {
	if l.lost {
		return ErrLost
	}
	l.seq++
	rec := record{Holder: l.holder, Seq: l.seq, State: state, RenewedAt: l.s.NowFunc().UTC(), TTLSeconds: l.s.ttl.Seconds()}
	for try := 0; ; try++ {
		etag, err := l.s.put(ctx, l.key, rec, ifMatch)
		if err == nil {
			l.etag, l.renewed = etag, l.s.NowFunc()
			return nil
		}
		var now record
		etag, _, found, rerr := s3record.Get(ctx, l.s.s3, l.s.bucket, l.key, &now)
		switch {
		case rerr != nil:
			return fmt.Errorf("write lease %s: %w (read back: %w)", l.key, err, rerr)
		case found && now.same(rec):
			l.etag, l.renewed = etag, l.s.NowFunc() // it landed; its reply was lost
			return nil
		case found && now.Holder == l.holder && try == 0:
			ifMatch = etag // an earlier write of ours whose reply was lost: go on from it
		case s3record.PreconditionFailed(err) || (found && now.Holder != l.holder):
			l.lost = true
			return fmt.Errorf("lease %s: %w", l.key, ErrLost)
		default:
			return fmt.Errorf("write lease %s: %w", l.key, err)
		}
	}
}

// put writes body at key under a condition: ifMatch "" means If-None-Match: *. A
// 409 (another conditional write of the key in flight) is tried again a few times.
func (s *Store) put(ctx context.Context, key string, body record, ifMatch string) (string, error) {
	for try := 0; ; try++ {
		etag, err := s3record.Put(ctx, s.s3, s.bucket, key, body, ifMatch)
		if err == nil || !s3record.Conflict(err) || try >= 4 {
			return etag, err
		}
		t := time.NewTimer(time.Duration(50<<try) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

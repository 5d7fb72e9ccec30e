package lease_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/lease"
)

// TestMain starts moto on first use, stops it, and checks for leaked goroutines.
func TestMain(m *testing.M) { awstest.Main(m) }

// loseReplies is the real S3 client, except that the next n PutObject calls that
// land answer with an error, as a reply lost after S3 acted would.
type loseReplies struct {
	*s3.Client
	n atomic.Int32
}

func (c *loseReplies) PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	out, err := c.Client.PutObject(ctx, in, optFns...)
	if err == nil && c.n.Add(-1) >= 0 {
		return nil, errors.New("read tcp: connection reset by peer (the write landed)")
	}
	return out, err
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func setup(t *testing.T) (*s3.Client, string) {
	t.Helper()
	client := s3.NewFromConfig(awstest.Config(t), func(o *s3.Options) { o.UsePathStyle = true })
	bucket := awstest.Stack(t) + "-data"
	_, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	return client, bucket
}

// One holder at a time on moto: a second Hold is refused; a live lease is not
// taken; once its ttl passed without a renewal it is, by one of two takers; the old
// holder then finds it lost.
func TestOneHolderAtATimeOnMoto(t *testing.T) {
	client, bucket := setup(t)
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	store := func() *lease.Store {
		s := lease.NewStore(client, bucket, 10*time.Second)
		s.NowFunc = clk.Now
		return s
	}
	key := lease.Key("train", "m-1")
	first, err := store().Hold(ctx, key)
	require.NoError(t, err)
	_, err = store().Hold(ctx, key)
	require.ErrorIs(t, err, lease.ErrHeld)

	v, found, err := store().Inspect(ctx, key)
	require.NoError(t, err)
	require.True(t, found)
	require.True(t, v.Live(clk.Now()), "just written: live")
	require.NoError(t, first.Renew(ctx))
	_, err = store().TakeOver(ctx, v)
	require.ErrorIs(t, err, lease.ErrHeld, "the view is older than the renewal: the taker loses")

	clk.add(time.Minute) // the holder stopped renewing: killed
	v, _, err = store().Inspect(ctx, key)
	require.NoError(t, err)
	require.False(t, v.Live(clk.Now()))
	var won, lost atomic.Int32
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := store().TakeOver(ctx, v); err == nil {
				won.Add(1)
			} else if errors.Is(err, lease.ErrHeld) {
				lost.Add(1)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int32(1), won.Load(), "one taker wins")
	require.Equal(t, int32(1), lost.Load())
	require.ErrorIs(t, first.Renew(ctx), lease.ErrLost, "the old holder learns it lost the lease")
	require.ErrorIs(t, first.Finish(ctx, lease.Done), lease.ErrLost)
}

// A write whose reply was lost is recognised as landed by reading it back, for a
// create, a renewal and a finish: the holder keeps its lease.
func TestLostRepliesAreResolvedByReadingBackOnMoto(t *testing.T) {
	client, bucket := setup(t)
	ctx := context.Background()
	lossy := &loseReplies{Client: client}
	s := lease.NewStore(lossy, bucket, 10*time.Second)
	key := lease.Key("train", "m-2")

	lossy.n.Store(1)
	held, err := s.Hold(ctx, key)
	require.NoError(t, err, "the create landed, its reply was lost: read back, it is ours")
	v, _, err := s.Inspect(ctx, key)
	require.NoError(t, err)
	require.Equal(t, lease.Held, v.State)

	lossy.n.Store(1)
	require.NoError(t, held.Renew(ctx), "a renewal whose reply was lost is read back as landed")
	lossy.n.Store(1)
	require.NoError(t, held.Renew(ctx))
	require.NoError(t, held.Renew(ctx), "the ETag taken from the read-back is current: no lease lost")

	lossy.n.Store(1)
	require.NoError(t, held.Finish(ctx, lease.Done))
	v, _, err = s.Inspect(ctx, key)
	require.NoError(t, err)
	require.Equal(t, lease.Done, v.State)
	require.False(t, v.Live(time.Now()), "a done lease is never live")

	// A reply lost on a take-over: the taker still has it, the other taker not.
	other := lease.Key("train", "m-4")
	dead, err := s.Hold(ctx, other)
	require.NoError(t, err)
	require.NoError(t, dead.Finish(ctx, lease.Released))
	v, _, err = s.Inspect(ctx, other)
	require.NoError(t, err)
	lossy.n.Store(1)
	taker, err := s.TakeOver(ctx, v)
	require.NoError(t, err)
	_, err = s.TakeOver(ctx, v)
	require.ErrorIs(t, err, lease.ErrHeld)
	require.NoError(t, taker.Renew(ctx))
}

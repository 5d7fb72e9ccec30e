package batch

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// While Glue refuses runs, closed batches queue behind the one being flushed. With
// more of them than the old 1,024-slot channel held and a batch open, closing
// batches, a Handle with a deadline and the stop all still return: nothing waits
// on Run under the batcher's mutex. Real time, not synctest: a goroutine blocked
// on a mutex is not durably blocked, so a hang would stall the bubble's clock
// instead of failing; the watchdogs below are generous bounds, not timings.
func TestAStopWithAFullFlushQueueAndAnOpenBatchEndsWithinItsBudget(t *testing.T) {
	t.Parallel()
	g := &fakeGlue{busyUntil: time.Now().Add(24 * time.Hour)}
	r := newRig(t, Config{MaxFiles: 2, Window: time.Hour, StopTimeout: time.Second}, g)
	const batches = 1030
	files := make([]File, 0, 2*batches+1)
	for i := range 2*batches + 1 {
		key := fmt.Sprintf("in/f%04d", i)
		r.upload(key)
		files = append(files, File{Bucket: "landing", Key: key, Size: 10, ETag: "1"})
	}
	added := make(chan []*openBatch, 1)
	go func() {
		var got []*openBatch
		for _, f := range files {
			batch, err := r.b.add(f)
			if err != nil {
				panic(err)
			}
			if len(got) == 0 || got[len(got)-1] != batch {
				got = append(got, batch)
			}
		}
		added <- got
	}()
	var all []*openBatch
	select {
	case all = <-added:
	case <-time.After(30 * time.Second):
		t.Fatal("adding files blocked: a batch was closed under the mutex into a full queue")
	}
	require.Len(t, all, batches+1)
	require.Equal(t, 1.0, testutil.ToFloat64(r.b.metrics.openFiles), "the last batch is open")

	// A Handle whose context ends returns, its batch still waiting on Glue.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	herr := make(chan error, 1)
	go func() { herr <- r.b.Handle(ctx, s3Event("landing", files[len(files)-1].Key, "1")) }()
	select {
	case err := <-herr:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(30 * time.Second):
		t.Fatal("Handle ignored its context")
	}

	stopped := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
		t.Logf("stop with %d batches queued and one open: %s (StopTimeout %s)", batches, time.Since(stopped), r.b.cfg.StopTimeout)
	case <-time.After(30 * time.Second): // StopTimeout is 1 s
		t.Fatal("the stop did not end")
	}
	for _, batch := range all {
		<-batch.done // every waiter learns an outcome
		require.Error(t, batch.err, "batch %s: Glue refused every run", batch.id)
	}
	require.True(t, errors.Is(all[len(all)-1].err, errStopped), "the last ones are left to redelivery once the budget is spent")
	require.Empty(t, g.started)
}

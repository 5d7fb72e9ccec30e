package batch

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// handleEach handles msgs concurrently and returns each one's error by message id.
func handleEach(b *Batcher, msgs ...consumer.Message) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Go(func() {
			err := b.Handle(context.Background(), m)
			mu.Lock()
			errs[m.ID] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return errs
}

// Issue 12 item 14: a forged Object Created event for a key that does not exist
// went into the manifest. Now the object is checked first: the forged file is left
// out and its message dead-lettered; the real one runs, described as S3 has it.
func TestAForgedEventForAMissingObjectIsDeadLetteredAndLeftOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 2, Window: time.Minute, KeyPrefix: "in/"}, &fakeGlue{})
		r.upload("in/real.csv")
		errs := handleEach(r.b, s3Event("landing", "in/real.csv", "event-etag"), s3Event("landing", "in/forged.csv", "x"))
		require.NoError(t, errs["in/real.csv"])
		forged := errs["in/forged.csv"]
		require.True(t, consumer.IsDeadLetter(forged), "%v", forged)
		require.ErrorIs(t, forged, ErrNoObject)
		require.ErrorContains(t, forged, "object does not exist: s3://landing/in/forged.csv")

		ms := r.manifests(t)
		require.Len(t, ms, 1)
		require.Equal(t, []File{{Bucket: "landing", Key: "in/real.csv", Size: int64(len("in/real.csv")), ETag: etagOf([]byte("in/real.csv"))[1:33]}}, ms[0].Files,
			"size and ETag are HeadObject's, not the event's")
		require.Equal(t, "1", r.glue.started[0]["--file_count"])
		require.Equal(t, 1.0, testutil.ToFloat64(r.b.metrics.dropped.WithLabelValues("missing")))
		r.stop(t)
	})
}

func TestABatchOfOnlyMissingObjectsStartsNoRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 2, Window: time.Minute}, &fakeGlue{})
		for _, err := range handleEach(r.b, s3Event("landing", "gone-1", "1"), s3Event("landing", "gone-2", "1")) {
			require.True(t, consumer.IsDeadLetter(err))
		}
		require.Empty(t, r.manifests(t))
		require.Empty(t, r.glue.started)
		r.stop(t)
	})
}

// A HeadObject that fails for another reason (after the SDK's retries) keeps the
// file for a retry: its message is redelivered, not dead-lettered, and the rest of
// the batch runs without it.
func TestAFileThatCannotBeCheckedIsRedelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 3, Window: time.Minute}, &fakeGlue{})
		r.upload("ok", "flaky", "denied")
		r.s3.headErr = func(key string) error {
			switch key {
			case "flaky":
				return &smithy.GenericAPIError{Code: "SlowDown", Message: "reduce your request rate"}
			case "denied": // also what a missing key answers without s3:ListBucket
				return &smithy.GenericAPIError{Code: "Forbidden", Message: "Forbidden"}
			}
			return nil
		}
		errs := handleEach(r.b, s3Event("landing", "ok", "1"), s3Event("landing", "flaky", "1"), s3Event("landing", "denied", "1"))
		require.NoError(t, errs["ok"])
		for _, k := range []string{"flaky", "denied"} {
			require.Error(t, errs[k])
			require.False(t, consumer.IsDeadLetter(errs[k]), "%s: %v", k, errs[k])
			require.NotErrorIs(t, errs[k], ErrNoObject)
		}
		ms := r.manifests(t)
		require.Len(t, ms, 1)
		require.Len(t, ms[0].Files, 1)
		require.Equal(t, "ok", ms[0].Files[0].Key)
		require.Equal(t, 2.0, testutil.ToFloat64(r.b.metrics.dropped.WithLabelValues("head_error")))
		r.stop(t)
	})
}

// Issue 12 item 15: S3's EventBridge events carry the raw key, its notifications
// to SQS/SNS/Lambda a URL-encoded one (see verify). Either way the manifest names
// the object that exists: the key as it is first, else its URL-decoded form.
func TestTheManifestNamesTheRealKeyOfARawOrEncodedEventKey(t *testing.T) {
	for name, tc := range map[string]struct {
		objects  []string
		eventKey string
		want     string // "" when the message is dead-lettered
	}{
		"raw space":                    {[]string{"in/a b.csv"}, "in/a b.csv", "in/a b.csv"},
		"encoded space":                {[]string{"in/a b.csv"}, "in/a+b.csv", "in/a b.csv"},
		"encoded space as %20":         {[]string{"in/a b.csv"}, "in/a%20b.csv", "in/a b.csv"},
		"raw plus":                     {[]string{"in/a+b.csv"}, "in/a+b.csv", "in/a+b.csv"},
		"raw plus beside a space twin": {[]string{"in/a+b.csv", "in/a b.csv"}, "in/a+b.csv", "in/a+b.csv"},
		"encoded plus":                 {[]string{"in/a+b.csv"}, "in/a%2Bb.csv", "in/a+b.csv"},
		"raw percent":                  {[]string{"in/100%.csv"}, "in/100%.csv", "in/100%.csv"},
		"encoded percent":              {[]string{"in/100%.csv"}, "in/100%25.csv", "in/100%.csv"},
		"raw percent escape":           {[]string{"in/x%41.csv"}, "in/x%41.csv", "in/x%41.csv"},
		"encoded unicode":              {[]string{"in/café ü.csv"}, "in/caf%C3%A9+%C3%BC.csv", "in/café ü.csv"},
		"neither exists":               {nil, "in/a+b.csv", ""},
		"dot segments stay literal":    {[]string{"out.csv"}, "in/%2E%2E/out.csv", ""},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, Config{MaxFiles: 1, Window: time.Minute, KeyPrefix: "in/"}, &fakeGlue{})
				r.upload(tc.objects...)
				err := r.b.Handle(context.Background(), s3Event("landing", tc.eventKey, "1"))
				if tc.want == "" {
					require.True(t, consumer.IsDeadLetter(err), "%v", err)
					require.ErrorIs(t, err, ErrNoObject)
					require.Empty(t, r.manifests(t))
					r.stop(t)
					return
				}
				require.NoError(t, err)
				ms := r.manifests(t)
				require.Len(t, ms, 1)
				require.Len(t, ms[0].Files, 1)
				require.Equal(t, tc.want, ms[0].Files[0].Key)
				require.Equal(t, int64(len(tc.want)), ms[0].Files[0].Size)
				r.stop(t)
			})
		})
	}
}

// HeadObject calls of one batch run concurrently, at most headConcurrency at once.
func TestHeadsRunConcurrentlyWithinTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxFiles: 100, Window: time.Minute}, &fakeGlue{})
		var mu sync.Mutex
		inFlight, peak := 0, 0
		r.s3.headErr = func(string) error {
			mu.Lock()
			inFlight++
			peak = max(peak, inFlight)
			mu.Unlock()
			r.s3.mu.Unlock() // let the others in while this one waits
			time.Sleep(100 * time.Millisecond)
			r.s3.mu.Lock()
			mu.Lock()
			inFlight--
			mu.Unlock()
			return nil
		}
		var msgs []consumer.Message
		for i := range 100 {
			key := "k" + string(rune('A'+i/26)) + string(rune('a'+i%26))
			r.upload(key)
			msgs = append(msgs, s3Event("landing", key, "1"))
		}
		start := time.Now()
		for _, err := range handleEach(r.b, msgs...) {
			require.NoError(t, err)
		}
		require.Equal(t, headConcurrency, peak)
		require.Equal(t, 700*time.Millisecond, time.Since(start), "100 heads of 100 ms, 16 at a time: 7 rounds")
		r.stop(t)
	})
}

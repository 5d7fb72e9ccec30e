//go:build chaos

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
)

// TestChaosBatchExactlyOnce1000Files is issue 19's full proof (the normal suite runs
// 200 files): 1,000 files, 10 % of their events twice, two batchers, one SIGKILLed
// and restarted midway, as soon as it made its first claim (mid-flush: its claims
// are taken over, or its run found, by the others); every file in exactly one
// started run, none lost.
func TestChaosBatchExactlyOnce1000Files(t *testing.T) {
	r := runBatchExactlyOnce(t, 1000, true)
	record(t, chaosRow{fmt.Sprintf("1,000 S3 files + %d duplicate events, 2 batchers, one SIGKILLed mid-flush (%d runs, %d in two, %.0f claims taken over)", r.duplicates, r.runs, r.twice, r.takenOver),
		r.files + r.duplicates, r.files - r.lost, r.duplicates, 0, r.lost, r.took})
}

// TestChaosBatchExactlyOnceLostAnswers is issue 27's proof: 1,000 files, 100 of
// them overwritten with other bytes before their first event's batch flushed (a
// versioned landing bucket: both versions are files), every tenth event sent
// twice, two batchers whose every call goes through a fault proxy that loses
// replies after S3 or Glue acted (claims, leases, manifests, StartJobRun), holds
// lease renewals' replies past the lease margin, and one batcher SIGTERMed while
// its StartJobRun is in flight, then restarted: every file version in exactly one
// started run, none lost.
func TestChaosBatchExactlyOnceLostAnswers(t *testing.T) {
	r := runBatchLostAnswers(t, 1000, 100)
	record(t, chaosRow{fmt.Sprintf("%d S3 files + %d overwritten + %d duplicate events, 2 batchers, replies lost/late at S3 and Glue (%s), one SIGTERMed in StartJobRun (%d runs, %d in two)",
		r.versions-r.overwritten, r.overwritten, r.duplicates, r.faults, r.runs, r.twice),
		r.versions + r.duplicates, r.versions - r.lost, r.duplicates, r.deadLettered, r.lost, r.took})
}

type lostAnswers struct {
	versions, overwritten, duplicates int
	runs, twice, lost, unrun          int
	deadLettered                      int
	faults                            string
	took                              time.Duration
}

// everyNth matches one request in n of those path matches (by a counter), and at
// most times of them.
func everyNth(n int, path func(string) bool) func(*http.Request, []byte) bool {
	var mu sync.Mutex
	seen := 0
	return func(r *http.Request, _ []byte) bool {
		if !path(r.URL.Path) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		seen++
		return seen%n == 0
	}
}

// someKeys matches every attempt at one key in n (by the key's hash): with
// Times enough, the SDK's last attempt is lost too.
func someKeys(n uint32, path func(string) bool) func(*http.Request, []byte) bool {
	return func(r *http.Request, _ []byte) bool {
		if !path(r.URL.Path) {
			return false
		}
		h := fnv.New32a()
		h.Write([]byte(r.URL.Path))
		return h.Sum32()%n == 0
	}
}

func runBatchLostAnswers(t *testing.T, files, overwrite int) lostAnswers {
	start := time.Now()
	ctx := context.Background()
	topo := filepath.Join(t.TempDir(), "topology.json")
	require.NoError(t, os.WriteFile(topo, []byte(`{"source": "taskbridge.worker", "queues": [
		{"name": "landing", "s3Batch": {}, "concurrency": 100, "visibilityTimeoutSeconds": 30, "maxReceiveCount": 10}]}`), 0o600))
	st := newStack(t, "WORKER_ROLES=batch", "WORKER_BATCH_WINDOW=3s", "WORKER_GLUE_POLL_INTERVAL=1s", "WORKER_TOPOLOGY="+topo)
	_, err := st.s3.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(st.out.LandingBucket), NotificationConfiguration: &s3types.NotificationConfiguration{},
	})
	require.NoError(t, err)
	_, err = st.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(st.out.LandingBucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}})
	require.NoError(t, err)

	// Every upload, and the event S3 would send of it (with its version id).
	type upload struct{ key, etag, event string }
	var uploads []upload
	var mu sync.Mutex
	put := func(i int, key, body string) {
		out, err := st.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.out.LandingBucket), Key: aws.String(key), Body: bytes.NewReader([]byte(body))})
		require.NoError(t, err)
		etag := strings.Trim(aws.ToString(out.ETag), `"`)
		ev := st.versionedEvent(key, etag, aws.ToString(out.VersionId), int64(len(body)), fmt.Sprintf("%018X", i+1))
		mu.Lock()
		uploads = append(uploads, upload{key, etag, ev})
		mu.Unlock()
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range files {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			key := fmt.Sprintf("lost/file-%04d.csv", i)
			put(i, key, fmt.Sprintf("a,b\n%d,1\n", i))
			if i < overwrite { // overwritten with other bytes before any batch flushes
				put(files+i, key, fmt.Sprintf("a,b\n%d,2\n", i))
			}
		})
	}
	wg.Wait()
	var bodies []string
	for i, u := range uploads {
		bodies = append(bodies, u.event)
		if i%10 == 0 {
			bodies = append(bodies, u.event)
		}
	}
	rnd := rand.New(rand.NewPCG(27, 1))
	rnd.Shuffle(len(bodies), func(i, j int) { bodies[i], bodies[j] = bodies[j], bodies[i] })

	// The workers reach the emulator only through the fault proxy. Each fault
	// counts the requests it acted on (its Match said yes: it had Times left).
	f := awstest.NewFaults(t, awstest.Endpoint(t))
	var hitsMu sync.Mutex
	hits := map[string]int{}
	counted := func(name string, match func(*http.Request, []byte) bool) func(*http.Request, []byte) bool {
		return func(r *http.Request, b []byte) bool {
			if !match(r, b) {
				return false
			}
			hitsMu.Lock()
			hits[name]++
			hitsMu.Unlock()
			return true
		}
	}
	claims := func(p string) bool { return strings.Contains(p, "/claims/files/") }
	leases := func(p string) bool { return strings.Contains(p, "/claims/batches/") }
	manifests := func(p string) bool { return strings.Contains(p, "/manifests/") }
	always := func(string) bool { return true }
	isRenewal := func(r *http.Request, b []byte) bool {
		return leases(r.URL.Path) && r.Header.Get("If-Match") != "" && bytes.Contains(b, []byte(`"state":"open"`))
	}
	faults := []struct {
		name string
		awstest.Fault
	}{
		// First the SIGTERM's: the first StartJobRun held 5 s after Glue acted.
		{"StartJobRun held 5 s, SIGTERM meanwhile", awstest.Fault{Op: "glue:StartJobRun", Match: everyNth(1, always), Times: 1, Delay: 5 * time.Second}},
		{"claim put, every attempt lost (1 key in 40)", awstest.Fault{Op: "s3:PutObject", Match: someKeys(40, claims), Times: 3 * 40, Drop: true}},
		{"claim put lost (1 in 15)", awstest.Fault{Op: "s3:PutObject", Match: everyNth(15, claims), Drop: true}},
		// For 1 key in 200 (of those 1 in 40) the read-back is lost too, every
		// attempt, a claim's 6 tries: the claim is in doubt, its batch given up.
		{"claim read, every attempt lost (1 key in 200)", awstest.Fault{Op: "s3:GetObject", Match: someKeys(200, claims), Times: 3 * 6 * 4, Drop: true}},
		{"claim read lost (1 in 10)", awstest.Fault{Op: "s3:GetObject", Match: everyNth(10, claims), Drop: true}},
		{"renewal answered 10 s late (> Lease/4)", awstest.Fault{Op: "s3:PutObject", Match: isRenewal, Times: 6, Delay: 10 * time.Second}},
		{"lease put lost (1 in 6)", awstest.Fault{Op: "s3:PutObject", Match: everyNth(6, leases), Drop: true}},
		{"manifest put lost (1 in 5)", awstest.Fault{Op: "s3:PutObject", Match: everyNth(5, manifests), Drop: true}},
		{"StartJobRun answered 10 s late (> its Lease/4 deadline)", awstest.Fault{Op: "glue:StartJobRun", Match: everyNth(7, always), Times: 4, Delay: 10 * time.Second}},
		{"StartJobRun lost (1 in 3)", awstest.Fault{Op: "glue:StartJobRun", Match: everyNth(3, always), Drop: true}},
		{"GetJobRuns lost (1 in 7)", awstest.Fault{Op: "glue:GetJobRuns", Match: everyNth(7, always), Drop: true}},
	}
	for _, fl := range faults {
		fl.Fault.Match = counted(fl.name, fl.Fault.Match)
		f.Add(fl.Fault)
	}
	at := "AWS_ENDPOINT_URL=" + f.URL()

	// One batcher takes the first events; it is stopped while its first
	// StartJobRun is in flight (held at the proxy after Glue acted), and two
	// batchers take over its messages and the rest.
	w1 := st.startWorker(at)
	half := len(bodies) / 2
	st.sendLanding(bodies[:half])
	eventually(t, 3*time.Minute, "a StartJobRun in flight", func() bool { return f.Hits("glue:StartJobRun") > 0 })
	w1.signal(syscall.SIGTERM)
	<-w1.done
	require.NoError(t, w1.waitErr, "exit 0 on SIGTERM")
	w2, w3 := st.startWorker(at), st.startWorker(at)
	st.sendLanding(bodies[half:])

	// Every message leaves the landing queue: deleted once its file is in a started
	// run (or found in one), or dead-lettered.
	eventually(t, 15*time.Minute, "the landing queue empty", func() bool { return st.queueDepth(st.out.Queues["landing"]) == 0 })
	deadLettered := st.queueDepth(st.out.DLQs["landing"])
	res := lostAnswers{versions: len(uploads), overwritten: overwrite, duplicates: len(bodies) - len(uploads), deadLettered: deadLettered, took: time.Since(start)}
	// A run started twice with one manifest runs its files twice: count runs by
	// Glue's list, not by manifest.
	perManifest := map[string]int{}
	for _, m := range st.glueManifests() {
		perManifest[m]++
	}
	seen := map[string]int{}
	for _, m := range st.manifests() {
		n := perManifest["s3://"+st.out.DataBucket+"/manifests/"+m.BatchID+".json"]
		if n == 0 {
			res.unrun++
			continue
		}
		res.runs += n
		for _, file := range m.Files {
			seen[file.Key+"@"+file.ETag] += n
		}
	}
	for _, u := range uploads {
		switch n := seen[u.key+"@"+u.etag]; {
		case n == 0:
			res.lost++
		case n > 1:
			res.twice += n - 1
		}
	}
	var hit []string
	for _, op := range []string{"s3:PutObject", "s3:GetObject", "glue:StartJobRun", "glue:GetJobRuns"} {
		hit = append(hit, fmt.Sprintf("%s %d/%d", strings.TrimPrefix(strings.TrimPrefix(op, "s3:"), "glue:"), f.Hits(op), f.Calls(op)))
	}
	res.faults = strings.Join(hit, ", ")
	hitsMu.Lock()
	for _, fl := range faults {
		t.Logf("fault %-58s acted on %d requests", fl.name, hits[fl.name])
	}
	hitsMu.Unlock()
	lines := func(s string) int {
		n := 0
		for _, w := range []*workerProc{w1, w2, w3} {
			n += strings.Count(w.Logs(), s)
		}
		return n
	}
	readBack, gaveUp, decided := lines("read back, it names this batch"), lines("batch given up"), lines("lease of a batch whose batcher stopped renewing it decided")
	t.Logf("claims found landed by reading back: %d; batches given up for a claim in doubt: %d; stale leases decided by a taker: %d; claims taken over: %.0f",
		readBack, gaveUp, decided, max(w2.metric(`worker_batch_claims_total{result="taken_over"}`), 0)+max(w3.metric(`worker_batch_claims_total{result="taken_over"}`), 0))
	t.Logf("%d file versions (%d overwritten keys), %d duplicate events, %d runs (+%d manifests never run), %d in two runs, %d lost, %d dead-lettered; faulted (hits/calls): %s; %s",
		res.versions, overwrite, res.duplicates, res.runs, res.unrun, res.twice, res.lost, res.deadLettered, res.faults, res.took.Round(time.Second))
	require.Zero(t, res.lost, "no file version lost")
	require.Zero(t, res.twice, "no file version in two runs")
	require.Zero(t, res.deadLettered, "no event dead-lettered")
	return res
}

// versionedEvent is the Object Created event of one upload to a versioned bucket.
func (st *stackEnv) versionedEvent(key, etag, version string, size int64, sequencer string) string {
	b, _ := json.Marshal(map[string]any{
		"version": "0", "id": "lost-" + sequencer, "detail-type": "Object Created", "source": "aws.s3",
		"account": "123456789012", "time": time.Now().UTC().Format(time.RFC3339), "region": "us-east-1",
		"resources": []string{"arn:aws:s3:::" + st.out.LandingBucket},
		"detail": map[string]any{
			"version": "0", "bucket": map[string]any{"name": st.out.LandingBucket},
			"object": map[string]any{"key": key, "size": size, "etag": etag, "version-id": version, "sequencer": sequencer},
			"reason": "PutObject",
		},
	})
	return string(b)
}

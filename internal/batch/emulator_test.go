package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/glue"
	gluetypes "github.com/aws/aws-sdk-go-v2/service/glue/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/consumer"
)

// emuStack is a landing bucket (versioned, as terraform ships it), a data bucket
// and a Glue job of their own on the emulator; its batchers' clients use via (the
// emulator's config, or a fault proxy's).
type emuStack struct {
	t                  *testing.T
	s3                 *s3.Client
	glue               *glue.Client
	landing, data, job string
	direct             *s3.Client // the emulator itself, for setup and reading back
	directGlue         *glue.Client
	versioned          bool
}

func newEmuStack(t *testing.T, via aws.Config, versioned bool) *emuStack {
	t.Helper()
	return newEmuStackRuns(t, via, versioned, 10)
}

// newEmuStackRuns is newEmuStack with a Glue job that allows maxRuns at once.
func newEmuStackRuns(t *testing.T, via aws.Config, versioned bool, maxRuns int32) *emuStack {
	t.Helper()
	awstest.RequireMoto(t, "a Glue job (LocalStack's community edition has no Glue)")
	cfg := awstest.Config(t)
	name := awstest.Stack(t)
	st := &emuStack{t: t, landing: name + "-landing", data: name + "-data", job: name + "-etl", versioned: versioned}
	pathStyle := func(o *s3.Options) { o.UsePathStyle = true }
	st.direct = s3.NewFromConfig(cfg, pathStyle)
	st.directGlue = glue.NewFromConfig(cfg)
	st.s3 = s3.NewFromConfig(via, pathStyle)
	st.glue = glue.NewFromConfig(via)
	ctx := context.Background()
	for _, b := range []string{st.landing, st.data} {
		_, err := st.direct.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
		require.NoError(t, err)
	}
	if versioned {
		_, err := st.direct.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(st.landing),
			VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}})
		require.NoError(t, err)
	}
	_, err := st.directGlue.CreateJob(ctx, &glue.CreateJobInput{
		Name: aws.String(st.job), Role: aws.String(awstest.RoleARN(t, name+"-glue")),
		Command:           &gluetypes.JobCommand{Name: aws.String("glueetl"), ScriptLocation: aws.String("s3://" + st.data + "/glue/etl.py")},
		ExecutionProperty: &gluetypes.ExecutionProperty{MaxConcurrentRuns: maxRuns},
	})
	require.NoError(t, err)
	t.Cleanup(st.remove) // after the batchers' stops, registered later
	return st
}

// remove deletes the stack's job and buckets, every object version first. A bucket
// is emptied and removed in rounds: an object a stopping component wrote meanwhile,
// or a delete marker left by deleting a "null" version, is taken in the next round.
func (st *emuStack) remove() {
	ctx := context.Background()
	_, _ = st.directGlue.DeleteJob(ctx, &glue.DeleteJobInput{JobName: aws.String(st.job)})
	for _, b := range []string{st.landing, st.data} {
		var err error
		for range 5 {
			st.empty(ctx, b)
			if _, err = st.direct.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(b)}); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		assert.NoError(st.t, err, "remove bucket %s", b)
	}
}

// empty deletes every object version and delete marker of bucket b.
func (st *emuStack) empty(ctx context.Context, b string) {
	p := s3.NewListObjectVersionsPaginator(st.direct, &s3.ListObjectVersionsInput{Bucket: aws.String(b)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return
		}
		for _, v := range page.Versions {
			in := &s3.DeleteObjectInput{Bucket: aws.String(b), Key: v.Key, VersionId: v.VersionId}
			if _, err := st.direct.DeleteObject(ctx, in); err != nil && aws.ToString(v.VersionId) == "null" {
				in.VersionId = nil // a bucket that keeps no versions takes none
				_, _ = st.direct.DeleteObject(ctx, in)
			}
		}
		for _, m := range page.DeleteMarkers {
			_, _ = st.direct.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: m.Key, VersionId: m.VersionId})
		}
	}
}

// batcher starts a Batcher on the stack; it is stopped at the end of the test.
func (st *emuStack) batcher(cfg Config) *Batcher {
	b, _ := st.stoppableBatcher(cfg)
	return b
}

// stoppableBatcher is batcher with its stop (as SIGTERM does it), which may be
// called more than once.
func (st *emuStack) stoppableBatcher(cfg Config) (*Batcher, func()) {
	st.t.Helper()
	cfg.LandingBucket, cfg.DataBucket, cfg.GlueJob = st.landing, st.data, st.job
	if cfg.Window == 0 {
		cfg.Window = time.Minute
	}
	if cfg.GluePollInterval == 0 {
		cfg.GluePollInterval = time.Second
	}
	b, err := New(cfg, st.s3, st.glue, &fakePub{events: map[string][]ResultDetail{}}, zaptest.NewLogger(st.t), NewMetrics(prometheus.NewRegistry()))
	require.NoError(st.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); require.NoError(st.t, <-done) }) }
	st.t.Cleanup(stop)
	return b, stop
}

// put uploads body at key and returns its Object Created event, as EventBridge
// delivers it (with moto's constant sequencer: the version id tells uploads apart).
func (st *emuStack) put(key, body string) (consumer.Message, *s3.PutObjectOutput) {
	st.t.Helper()
	out, err := st.direct.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(st.landing), Key: aws.String(key), Body: strings.NewReader(body)})
	require.NoError(st.t, err)
	version := "null"
	if st.versioned {
		version = aws.ToString(out.VersionId)
		require.NotEmpty(st.t, version)
	}
	detail, _ := json.Marshal(map[string]any{"bucket": map[string]any{"name": st.landing},
		"object": map[string]any{"key": key, "size": len(body), "etag": strings.Trim(aws.ToString(out.ETag), `"`), "version-id": version, "sequencer": "0055AED6DCD90281E5"}})
	env, _ := json.Marshal(map[string]any{"version": "0", "id": key + version, "detail-type": "Object Created", "source": "aws.s3",
		"time": time.Now().UTC().Format(time.RFC3339), "detail": json.RawMessage(detail)})
	return consumer.Message{ID: key + "/" + version, Queue: "landing", Body: string(env), ReceiveCount: 1}, out
}

// runs lists the job's runs and the manifest each names, read back from S3.
func (st *emuStack) runs() map[string]Manifest {
	st.t.Helper()
	out := map[string]Manifest{}
	p := glue.NewGetJobRunsPaginator(st.directGlue, &glue.GetJobRunsInput{JobName: aws.String(st.job)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(st.t, err)
		for _, jr := range page.JobRuns {
			id, ok := batchOfManifest(st.data, jr.Arguments["--manifest"])
			require.True(st.t, ok, "run %s names %q", aws.ToString(jr.Id), jr.Arguments["--manifest"])
			obj, err := st.direct.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(st.data), Key: aws.String(manifestKey(id))})
			require.NoError(st.t, err)
			b, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			require.NoError(st.t, err)
			var m Manifest
			require.NoError(st.t, json.Unmarshal(b, &m))
			require.Equal(st.t, fmt.Sprint(len(m.Files)), jr.Arguments["--file_count"])
			out[aws.ToString(jr.Id)] = m
		}
	}
	return out
}

// read is what a Glue script reading f gets (deploy/glue/etl.py: the version the
// manifest names, else the key).
func (st *emuStack) read(f File) string {
	st.t.Helper()
	in := &s3.GetObjectInput{Bucket: aws.String(f.Bucket), Key: aws.String(f.Key)}
	if f.Version != "" {
		in.VersionId = aws.String(f.Version)
	}
	obj, err := st.direct.GetObject(context.Background(), in)
	require.NoError(st.t, err)
	defer obj.Body.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, obj.Body)
	require.NoError(st.t, err)
	return buf.String()
}

// A key overwritten before the batch of its first upload flushes: each version is
// in exactly one run, and each run's manifest names the bytes its event reported.
// The old batcher listed the key's current version for both events: v2 twice, v1
// never.
func TestAnOverwrittenKeyRunsEachVersionOnce(t *testing.T) {
	for _, tc := range []struct {
		name           string
		maxFiles, runs int
	}{
		{"a batch each", 1, 2},
		{"both in one batch", 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newEmuStack(t, awstest.Config(t), true)
			b := st.batcher(Config{MaxFiles: tc.maxFiles})
			ev1, v1 := st.put("in/data.csv", "a,b\n1,2\n")
			ev2, v2 := st.put("in/data.csv", "a,b\n3,4\n5,6\n")
			require.NotEqual(t, aws.ToString(v1.VersionId), aws.ToString(v2.VersionId))
			for _, err := range handleAll(b, []consumer.Message{ev1, ev2}) {
				require.NoError(t, err)
			}
			for _, err := range handleAll(b, []consumer.Message{ev1, ev2}) {
				require.NoError(t, err, "a redelivery is acknowledged")
			}

			runs := st.runs()
			require.Len(t, runs, tc.runs, "one run per batch, none for the redelivery")
			inRuns := map[string]int{} // bytes read → runs
			for _, m := range runs {
				for _, f := range m.Files {
					body := st.read(f)
					inRuns[body]++
					require.Equal(t, int64(len(body)), f.Size, "the manifest's size is its version's")
				}
			}
			require.Equal(t, map[string]int{"a,b\n1,2\n": 1, "a,b\n3,4\n5,6\n": 1}, inRuns, "each version in exactly one run")
			for id, m := range runs {
				out := runGlueScript(t, manifestURI(st.data, m.BatchID), len(m.Files))
				for _, f := range m.Files {
					require.Contains(t, out, fmt.Sprintf("s3://%s/%s version %s (%d bytes)", f.Bucket, f.Key, f.Version, f.Size), "run %s", id)
				}
			}
		})
	}
}

// runGlueScript runs deploy/glue/etl.py as Glue would for a run with manifest,
// against the emulator (awsglue, which only Glue has, is stood in for by its one
// function the script uses), and returns what it printed.
func runGlueScript(t *testing.T, manifest string, fileCount int) string {
	t.Helper()
	root := awstest.ModuleRoot(t)
	stub := filepath.Join(t.TempDir(), "awsglue")
	require.NoError(t, os.MkdirAll(stub, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(stub, "__init__.py"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(stub, "utils.py"), []byte(`def getResolvedOptions(argv, names):
    return {n: argv[argv.index("--" + n) + 1] for n in names}
`), 0o644))
	cmd := exec.Command(filepath.Join(root, ".venv", "bin", "python3"), filepath.Join(root, "deploy", "glue", "etl.py"),
		"--manifest", manifest, "--file_count", strconv.Itoa(fileCount))
	cmd.Env = append(append(os.Environ(), awstest.Env(t)...), "PYTHONPATH="+filepath.Dir(stub), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "etl.py: %s", out)
	return string(out)
}

// In a bucket that keeps no versions, events carry "version-id": "null": the
// manifest names no version and S3 is not asked for one (it would refuse it).
func TestAnUnversionedBucketsManifestNamesNoVersion(t *testing.T) {
	st := newEmuStack(t, awstest.Config(t), false)
	b := st.batcher(Config{MaxFiles: 1})
	ev, _ := st.put("in/plain.csv", "x\n")
	require.NoError(t, b.Handle(context.Background(), ev))
	runs := st.runs()
	require.Len(t, runs, 1)
	for _, m := range runs {
		require.Len(t, m.Files, 1)
		require.Empty(t, m.Files[0].Version)
		require.Equal(t, "x\n", st.read(m.Files[0]))
		require.Contains(t, runGlueScript(t, manifestURI(st.data, m.BatchID), 1), "s3://"+st.landing+"/in/plain.csv (2 bytes)")
	}
}

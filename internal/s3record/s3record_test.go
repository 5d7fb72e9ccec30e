package s3record_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge/internal/awstest"
	"github.com/taskbridge/taskbridge/internal/s3record"
)

// TestMain starts moto on first use, stops it, and checks for leaked goroutines.
func TestMain(m *testing.M) { awstest.Main(m) }

type rec struct {
	Owner string `json:"owner"`
	N     int    `json:"n"`
}

// newBucket makes a bucket on the emulator, reached through cfg.
func newBucket(t *testing.T, cfg aws.Config) (*s3.Client, string) {
	t.Helper()
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := awstest.Stack(t)
	_, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	require.NoError(t, err)
	return client, bucket
}

func TestCreateGetReplace(t *testing.T) {
	ctx := context.Background()
	client, bucket := newBucket(t, awstest.Config(t))
	const key = "records/a.json"

	var got rec
	_, _, found, err := s3record.Get(ctx, client, bucket, key, &got)
	require.NoError(t, err)
	require.False(t, found, "no object yet")

	before := time.Now().Add(-time.Minute)
	etag1, err := s3record.Put(ctx, client, bucket, key, rec{Owner: "a", N: 1}, "")
	require.NoError(t, err)
	require.NotEmpty(t, etag1)

	_, err = s3record.Put(ctx, client, bucket, key, rec{Owner: "b", N: 1}, "")
	require.True(t, s3record.PreconditionFailed(err), "a second create is refused: %v", err)

	etag, modified, found, err := s3record.Get(ctx, client, bucket, key, &got)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, rec{Owner: "a", N: 1}, got, "the first create's body")
	require.Equal(t, etag1, etag)
	require.True(t, modified.After(before), "LastModified %v is S3's write time", modified)

	etag2, err := s3record.Put(ctx, client, bucket, key, rec{Owner: "a", N: 2}, etag1)
	require.NoError(t, err)
	require.NotEqual(t, etag1, etag2, "a new body is a new ETag")

	_, err = s3record.Put(ctx, client, bucket, key, rec{Owner: "b", N: 9}, etag1)
	require.True(t, s3record.PreconditionFailed(err), "a replace on an old ETag is refused: %v", err)
	_, _, _, err = s3record.Get(ctx, client, bucket, key, &got)
	require.NoError(t, err)
	require.Equal(t, rec{Owner: "a", N: 2}, got, "the refused replace changed nothing")

	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(t, err)
	defer out.Body.Close()
	require.Equal(t, "application/json", aws.ToString(out.ContentType))
}

// JSON written for AWS is not HTML-escaped (awsjson).
func TestPutWritesUnescapedJSON(t *testing.T) {
	ctx := context.Background()
	client, bucket := newBucket(t, awstest.Config(t))
	_, err := s3record.Put(ctx, client, bucket, "records/html.json", rec{Owner: "<a&b>"}, "")
	require.NoError(t, err)
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("records/html.json")})
	require.NoError(t, err)
	defer out.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(out.Body)
	require.NoError(t, err)
	require.Equal(t, `{"owner":"<a&b>","n":0}`, b.String())
}

func TestReplaceOfAMissingObject(t *testing.T) {
	ctx := context.Background()
	client, bucket := newBucket(t, awstest.Config(t))
	_, err := s3record.Put(ctx, client, bucket, "records/none.json", rec{Owner: "a"}, `"0123"`)
	require.Error(t, err)
	require.False(t, s3record.Conflict(err), "%v", err)
	// AWS answers 404 to an If-Match on a missing key; moto 412.
	require.True(t, s3record.NotFound(err) || s3record.PreconditionFailed(err), "%v", err)
}

func TestGetOfAnObjectThatIsNoRecord(t *testing.T) {
	ctx := context.Background()
	client, bucket := newBucket(t, awstest.Config(t))
	for _, tc := range []struct{ name, body, want string }{
		{"not json", "not json", "decode s3://" + bucket + "/records/not json"},
		{"too large", `"` + strings.Repeat("x", s3record.MaxSize) + `"`, "over 1048576 bytes, not a record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "records/" + tc.name
			_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(tc.body)})
			require.NoError(t, err)
			var got rec
			_, _, found, err := s3record.Get(ctx, client, bucket, key, &got)
			require.False(t, found)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// A create whose reply is lost landed all the same: the caller sees an error that
// is none of the conditions, and reading back shows its body, with the ETag that a
// replace then names.
func TestCreateWhoseReplyIsLost(t *testing.T) {
	ctx := context.Background()
	faults := awstest.NewFaults(t, awstest.Endpoint(t))
	cfg := faults.Config(t)
	cfg.RetryMaxAttempts = 1
	client, bucket := newBucket(t, cfg)
	const key = "records/lost.json"
	faults.Add(awstest.Fault{Op: "s3:PutObject", Times: 1, Drop: true,
		Match: func(r *http.Request, _ []byte) bool { return strings.HasSuffix(r.URL.Path, key) }})

	_, err := s3record.Put(ctx, client, bucket, key, rec{Owner: "a", N: 1}, "")
	require.Error(t, err, "the reply was dropped")
	require.False(t, s3record.PreconditionFailed(err) || s3record.Conflict(err) || s3record.NotFound(err), "a lost reply is no condition: %v", err)
	require.Equal(t, 1, faults.Hits("s3:PutObject"))

	var got rec
	etag, _, found, err := s3record.Get(ctx, client, bucket, key, &got)
	require.NoError(t, err)
	require.True(t, found, "the write landed")
	require.Equal(t, rec{Owner: "a", N: 1}, got)

	_, err = s3record.Put(ctx, client, bucket, key, rec{Owner: "a", N: 1}, "")
	require.True(t, s3record.PreconditionFailed(err), "creating again is refused: %v", err)
	_, err = s3record.Put(ctx, client, bucket, key, rec{Owner: "a", N: 2}, etag)
	require.NoError(t, err, "the read-back ETag is the object's")
}

// A replace whose reply is lost with the SDK retrying: the retry finds its own
// write and S3 refuses it (412), though the write landed. Only the read-back tells.
func TestReplaceWhoseReplyIsLostThenRetried(t *testing.T) {
	ctx := context.Background()
	faults := awstest.NewFaults(t, awstest.Endpoint(t))
	client, bucket := newBucket(t, faults.Config(t))
	const key = "records/retried.json"
	etag, err := s3record.Put(ctx, client, bucket, key, rec{Owner: "a", N: 1}, "")
	require.NoError(t, err)
	faults.Add(awstest.Fault{Op: "s3:PutObject", Times: 1, Drop: true,
		Match: func(r *http.Request, _ []byte) bool { return strings.HasSuffix(r.URL.Path, key) }})

	_, err = s3record.Put(ctx, client, bucket, key, rec{Owner: "a", N: 2}, etag)
	require.True(t, s3record.PreconditionFailed(err), "the retried attempt meets the first one's write: %v", err)
	require.Equal(t, 1, faults.Hits("s3:PutObject"))

	var got rec
	_, _, found, err := s3record.Get(ctx, client, bucket, key, &got)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, rec{Owner: "a", N: 2}, got, "the first attempt landed")
}

// A caller built without AWS (as `worker validate` builds the batcher) gets an
// error, not a panic, if it is used after all.
func TestNoClient(t *testing.T) {
	ctx := context.Background()
	_, err := s3record.Put(ctx, nil, "b", "k", rec{}, "")
	require.ErrorIs(t, err, s3record.ErrNoClient)
	var got rec
	_, _, found, err := s3record.Get(ctx, nil, "b", "k", &got)
	require.ErrorIs(t, err, s3record.ErrNoClient)
	require.False(t, found)
}

func TestPredicates(t *testing.T) {
	t.Parallel()
	wrapped := func(code string) error {
		return fmt.Errorf("put: %w", &smithy.GenericAPIError{Code: code})
	}
	for _, tc := range []struct {
		name                             string
		err                              error
		notFound, precondition, conflict bool
	}{
		{"nil", nil, false, false, false},
		{"not an AWS error", errors.New("connection reset"), false, false, false},
		{"classified by code, never by text", errors.New("PreconditionFailed NoSuchKey"), false, false, false},
		{"GetObject's missing key", wrapped("NoSuchKey"), true, false, false},
		{"HeadObject's missing key", wrapped("NotFound"), true, false, false},
		{"a 403 is not a missing key", wrapped("AccessDenied"), false, false, false},
		{"412", wrapped("PreconditionFailed"), false, true, false},
		{"409", wrapped("ConditionalRequestConflict"), false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.notFound, s3record.NotFound(tc.err), "NotFound")
			require.Equal(t, tc.precondition, s3record.PreconditionFailed(tc.err), "PreconditionFailed")
			require.Equal(t, tc.conflict, s3record.Conflict(tc.err), "Conflict")
		})
	}
}

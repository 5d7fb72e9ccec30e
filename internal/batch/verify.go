package batch

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/consumer"
	"github.com/taskbridge/taskbridge/internal/s3record"
)

// headConcurrency bounds the HeadObject calls of one batch in flight at once.
const headConcurrency = 16

// ErrNoObject is wrapped by the error of a file whose object does not exist: a
// forged event, or one for an object deleted since. Its message goes to the DLQ.
var ErrNoObject = errors.New("object does not exist")

// verify checks every file of batch with HeadObject before it goes into a manifest
// and returns the files that exist, each with the object as S3 has it now (the key
// that exists, HeadObject's size and ETag), in the batch's order. A file whose object
// does not exist is left out and its messages are dead-lettered (a forged or stale
// event can never succeed); a file that HeadObject could not answer for (throttling,
// 5xx, a timeout, after the SDK's own retries) is left out and its messages are
// redelivered, to be checked again in a later batch. The outcome of each left-out
// file is set in batch.fileErr. verify runs on the flushing goroutine, before
// batch.done is closed.
//
// The key: S3's notifications to SQS, SNS and Lambda carry the key URL-encoded
// ("red flower.jpg" arrives as "red+flower.jpg", AWS S3 User Guide, "Event message
// structure", notification-content-structure.html). Its EventBridge events are a
// different format (User Guide, "EventBridge event message structure",
// ev-events.html) whose documentation says nothing of encoding, and real events
// carry the raw key (a published sample of an Object Created event has
// "raw/health-check/2023-08-08T14:03:40.532432.zip", colons unencoded, where a
// notification would say %3A); moto sends the raw key on EventBridge and the
// quote_plus'd one only to SQS, SNS and Lambda (getmoto/moto#9060). Some libraries
// decode EventBridge keys all the same (aws-lambda-powertools-python's
// S3EventBridgeNotificationObject.key applies unquote_plus), which would turn a raw
// "a+b" into "a b". So the key is tried as it is first, and only when no such
// object exists, its URL-decoded form (+ as space, %XX): HeadObject says which one
// is real, and the manifest names that one.
func (b *Batcher) verify(ctx context.Context, batch *openBatch) []verified {
	type result struct {
		file File
		err  error
	}
	results := make([]result, len(batch.files))
	sem := make(chan struct{}, headConcurrency)
	var wg sync.WaitGroup
	for i, f := range batch.files {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i].file, results[i].err = b.head(ctx, f)
		})
	}
	wg.Wait()

	var files []verified
	var missing, failed []string
	for i, r := range results {
		f := batch.files[i]
		switch {
		case r.err == nil:
			files = append(files, verified{event: f, object: r.file})
		case errors.Is(r.err, ErrNoObject):
			batch.fileErr[f] = consumer.DeadLetter(r.err)
			missing = append(missing, f.Key)
			b.metrics.dropped.WithLabelValues("missing").Inc()
		default:
			batch.fileErr[f] = r.err
			failed = append(failed, f.Key)
			b.metrics.dropped.WithLabelValues("head_error").Inc()
		}
	}
	if len(missing) > 0 {
		// One line per batch; the consumer logs each message it dead-letters.
		b.log.Warn("objects that do not exist dropped from the batch; their messages go to the DLQ",
			batchFields(batch.id, len(missing), missing)...)
	}
	if len(failed) > 0 {
		b.log.Warn("objects that could not be checked left out of the batch; their messages will be redelivered",
			batchFields(batch.id, len(failed), failed)...)
	}
	return files
}

// verified is a file of a batch whose object exists: event is what its event said,
// object what HeadObject says now.
type verified struct{ event, object File }

// claimFile is what a claim names: the object that exists (its real key), and the
// upload the event reported.
func (v verified) claimFile() File {
	f := v.event
	f.Bucket, f.Key = v.object.Bucket, v.object.Key
	return f
}

// head returns f's upload as S3 has it, trying its key as it is and then
// URL-decoded. In a versioned bucket it asks for the version the event reported,
// not the key's current one: a key overwritten since is a second file with an
// event of its own, and each version goes into the run of its own event.
func (b *Batcher) head(ctx context.Context, f File) (File, error) {
	version := objectVersion(f.Version)
	got, err := b.headKey(ctx, f.Bucket, f.Key, version)
	if !errors.Is(err, ErrNoObject) {
		return got, err
	}
	decoded, derr := url.QueryUnescape(f.Key)
	if derr != nil || decoded == f.Key || !strings.HasPrefix(decoded, b.cfg.KeyPrefix) {
		return File{}, err
	}
	got, derr = b.headKey(ctx, f.Bucket, decoded, version)
	if errors.Is(derr, ErrNoObject) {
		return File{}, fmt.Errorf("%w: s3://%s/%s (nor %q, its URL-decoded form)", ErrNoObject, f.Bucket, f.Key, decoded)
	}
	return got, derr
}

// objectVersion is the version id to ask S3 for: none for "null", what events of
// an unversioned or versioning-suspended bucket carry. A null version is replaced
// in place by the next upload, so it names no bytes; S3 reads the key as it is.
func objectVersion(v string) string {
	if v == "null" {
		return ""
	}
	return v
}

func (b *Batcher) headKey(ctx context.Context, bucket, key, version string) (File, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	name := "s3://" + bucket + "/" + key
	if version != "" {
		in.VersionId = aws.String(version)
		name += " version " + version
	}
	out, err := b.s3.HeadObject(ctx, in)
	if err != nil {
		if s3record.NotFound(err) || (version != "" && noSuchVersion(err)) {
			return File{}, fmt.Errorf("%w: %s", ErrNoObject, name)
		}
		return File{}, fmt.Errorf("head %s: %w", name, err)
	}
	return File{Bucket: bucket, Key: key, Version: objectVersion(aws.ToString(out.VersionId)),
		Size: aws.ToInt64(out.ContentLength), ETag: strings.Trim(aws.ToString(out.ETag), `"`)}, nil
}

// noSuchVersion: HeadObject's answer for a version that cannot be read. A delete
// marker answers 405; a version id that is not one of the bucket's (forged, or a
// bucket that keeps no versions) 400. Neither can ever succeed.
func noSuchVersion(err error) bool {
	switch errCode(err) {
	case "MethodNotAllowed", "BadRequest", "InvalidArgument", "NoSuchVersion":
		return true
	}
	return false
}

// batchFields names up to ten keys of n, for one log line per batch.
func batchFields(batchID string, n int, keys []string) []zap.Field {
	return []zap.Field{zap.String("batch_id", batchID), zap.Int("files", n), zap.Strings("keys", keys[:min(len(keys), 10)])}
}

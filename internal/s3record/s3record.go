// Package s3record owns the S3 mechanics of small JSON records kept with
// conditional writes: read with their ETag and LastModified, created with
// If-None-Match: *, replaced with If-Match: <ETag>, and S3's answers told apart by
// code. What a record means, and how a write whose reply was lost is settled by
// reading back, stays with its users (internal/lease, the batcher's claims).
//
// The functions take the client at each call, not at construction: a component
// that holds one (the batcher) can be built without AWS, as `worker validate`
// builds it, and nothing here keeps state.
package s3record

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/taskbridge/taskbridge/internal/awsjson"
)

// API is the S3 calls of records; *s3.Client satisfies it. The functions below call
// it concurrently when their callers do.
type API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// MaxSize bounds what Get reads of a record: records are small (a lease, a claim,
// a failure note of at most 32 KiB of cause); a larger object was not written as one.
const MaxSize = 1 << 20

// ErrNoClient is returned for a call without a client: a component built without
// AWS (as `worker validate` builds one) that was used after all.
var ErrNoClient = errors.New("s3record: no S3 client")

// Get reads the record at bucket/key into v (JSON). found is false when there is no
// such object. etag is what a Put that replaces this version names; modified is
// S3's LastModified (S3's clock, not the reader's).
func Get(ctx context.Context, client API, bucket, key string, v any) (etag string, modified time.Time, found bool, err error) {
	if client == nil {
		return "", time.Time{}, false, fmt.Errorf("get s3://%s/%s: %w", bucket, key, ErrNoClient)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if NotFound(err) {
			return "", time.Time{}, false, nil
		}
		return "", time.Time{}, false, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, MaxSize+1))
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("read s3://%s/%s: %w", bucket, key, err)
	}
	if len(b) > MaxSize {
		return "", time.Time{}, false, fmt.Errorf("read s3://%s/%s: over %d bytes, not a record", bucket, key, MaxSize)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return "", time.Time{}, false, fmt.Errorf("decode s3://%s/%s: %w", bucket, key, err)
	}
	return aws.ToString(out.ETag), aws.ToTime(out.LastModified), true, nil
}

// Put writes v (JSON, as awsjson writes it) at bucket/key under a condition and
// returns the new ETag. ifMatch "" creates: If-None-Match: *, PreconditionFailed
// when an object exists. Else it replaces the version of that ETag: If-Match,
// PreconditionFailed when the object changed, NotFound (AWS) or PreconditionFailed
// (moto) when it is gone. Conflict: another conditional write of the key was in
// flight. The error is S3's own, unwrapped, so the predicates apply; any error may
// also be a lost reply of a write that landed, which only reading back tells.
func Put(ctx context.Context, client API, bucket, key string, v any, ifMatch string) (string, error) {
	if client == nil {
		return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, ErrNoClient)
	}
	b, err := awsjson.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("marshal %s: %w", key, err)
	}
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(b), ContentType: aws.String("application/json")}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := client.PutObject(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// code is the code of the AWS error in err's chain, or "".
func code(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// NotFound: there is no such object. GetObject names it NoSuchKey; HeadObject (no
// body, so the SDK has only the status) and a 404 to a conditional write NotFound.
// A 403 is not taken for one: S3 answers it for a missing key to a caller without
// s3:ListBucket, but also to a role that lost its rights, and treating every
// object as gone for that would be worse than retrying.
func NotFound(err error) bool {
	switch code(err) {
	case "NoSuchKey", "NotFound":
		return true
	}
	return false
}

// PreconditionFailed: a write's condition failed (412): an object exists (create)
// or has another ETag (replace).
func PreconditionFailed(err error) bool { return code(err) == "PreconditionFailed" }

// Conflict: another conditional write of the key was in flight (409); the write
// may be tried again.
func Conflict(err error) bool { return code(err) == "ConditionalRequestConflict" }

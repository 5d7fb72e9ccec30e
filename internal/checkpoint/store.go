// Package checkpoint keeps jobs' checkpoints as objects of the data bucket: the S3
// side of jobs.CheckpointStore. It knows nothing of tasks: jobs names the keys.
package checkpoint

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/taskbridge/taskbridge/internal/s3record"
)

type s3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// maxRead bounds what Get reads of an object: a checkpoint is at most 256 KiB (the
// jobs package checks it before a Put); anything larger was not written by us.
const maxRead = 256*1024 + 1

// Store keeps checkpoints in one bucket. Safe for concurrent use. A Put whose
// answer was lost is safe to repeat (the same key and body), which the SDK's
// retryer does.
type Store struct {
	bucket string
	s3     s3API
}

// New returns a Store on bucket.
func New(bucket string, client s3API) *Store {
	if bucket == "" || client == nil {
		panic("checkpoint: New without a bucket or a client")
	}
	return &Store{bucket: bucket, s3: client}
}

// Put stores body under key.
func (s *Store) Put(ctx context.Context, key string, body []byte) error {
	_, err := s.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// Get reads key; ok is false when there is no such object.
func (s *Store) Get(ctx context.Context, key string) ([]byte, bool, error) {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		if s3record.NotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("get s3://%s/%s: %w", s.bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxRead))
	if err != nil {
		return nil, false, fmt.Errorf("read s3://%s/%s: %w", s.bucket, key, err)
	}
	if len(b) >= maxRead {
		return nil, false, fmt.Errorf("s3://%s/%s is over the checkpoint limit", s.bucket, key)
	}
	return b, true, nil
}

// Delete removes key; a missing key is no error (S3 answers a delete of one with
// success).
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}); err != nil {
		return fmt.Errorf("delete s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// Package failnote keeps the last failure a worker reported for an execution where
// anyone can read it back on any endpoint: a small JSON object under the
// execution's prefix of the data bucket. Step Functions on AWS keeps a failure's
// cause in the execution's history; emulators (moto) drop it, and a failed job's
// message is deleted, so `worker start --wait` would otherwise have nowhere to
// find why.
//
// A note is written after the failure was reported with a live token, and is
// informational: the execution's own status stays the truth.
package failnote

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/jobs"
	"github.com/taskbridge/taskbridge/internal/s3record"
)

// KeyName is the note's object name under the execution's prefix.
const KeyName = "taskbridge-last-failure.json"

// MaxCause bounds the cause kept in a note (Step Functions keeps 32,768 characters).
const MaxCause = 32768

// Note is one reported failure.
type Note struct {
	ExecutionArn string    `json:"executionArn"`
	Job          string    `json:"job"`
	Error        string    `json:"error"` // the SendTaskFailure error, <job>.<Kind>
	Cause        string    `json:"cause"`
	At           time.Time `json:"at"`
}

// s3API is what a Store calls; *s3.Client satisfies it.
type s3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Store writes and reads the notes of one data bucket. Safe for concurrent use.
type Store struct {
	s3     s3API
	bucket string
	// NowFunc is the clock (tests set it).
	NowFunc func() time.Time
}

// New returns the Store of bucket.
func New(client s3API, bucket string) *Store {
	return &Store{s3: client, bucket: bucket, NowFunc: time.Now}
}

// Key is the note's key for an execution ARN: <execution name>/KeyName, or an
// error when the ARN's name cannot be a key prefix.
func Key(executionArn string) (string, error) {
	name, err := jobs.ExecutionName(executionArn)
	if err != nil {
		return "", err
	}
	return name + "/" + KeyName, nil
}

// NoteFailure implements jobs.FailureNotes: it writes the note of the failure of
// the execution's task, replacing the one before (the last failure is the one that
// failed the execution, unless a Catch handled it).
func (s *Store) NoteFailure(ctx context.Context, executionArn, job, code, cause string) error {
	key, err := Key(executionArn)
	if err != nil {
		return err
	}
	if len(cause) > MaxCause {
		cause = cause[:MaxCause]
	}
	b, err := awsjson.Marshal(Note{ExecutionArn: executionArn, Job: job, Error: code, Cause: cause, At: s.NowFunc().UTC()})
	if err != nil {
		return err
	}
	_, err = s.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytes.NewReader(b),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("write failure note s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// Read returns the note of an execution; found is false when there is none.
func (s *Store) Read(ctx context.Context, executionArn string) (n Note, found bool, err error) {
	key, err := Key(executionArn)
	if err != nil {
		return Note{}, false, err
	}
	_, _, found, err = s3record.Get(ctx, s.s3, s.bucket, key, &n)
	if err != nil {
		return Note{}, false, fmt.Errorf("read failure note: %w", err)
	}
	if !found {
		return Note{}, false, nil
	}
	if n.ExecutionArn != executionArn {
		return Note{}, false, fmt.Errorf("failure note s3://%s/%s names another execution (%s)", s.bucket, key, n.ExecutionArn)
	}
	return n, true, nil
}

// Location is where the note of an execution is, for messages.
func (s *Store) Location(executionArn string) string {
	key, err := Key(executionArn)
	if err != nil {
		return ""
	}
	return "s3://" + s.bucket + "/" + key
}

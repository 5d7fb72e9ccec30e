package awstest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
)

func faultClients(t *testing.T, f *Faults, attempts int) (*s3.Client, *sqs.Client) {
	cfg := f.Config(t)
	cfg.RetryMaxAttempts = attempts
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), sqs.NewFromConfig(cfg)
}

// A dropped reply: the emulator wrote the object, the client got an error. On its
// last attempt that is all the client knows; with retries left, its retry of the
// conditional put is refused, as AWS refuses a second If-None-Match put.
func TestFaultsDropAReplyAfterTheEmulatorActed(t *testing.T) {
	ctx := context.Background()
	f := NewFaults(t, Endpoint(t))
	s3c, _ := faultClients(t, f, 1)
	bucket := Stack(t)
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	claims := func(r *http.Request, _ []byte) bool { return strings.Contains(r.URL.Path, "/claims/") }
	f.Add(Fault{Op: "s3:PutObject", Match: claims, Times: 1, Drop: true})

	put := func(c *s3.Client, key string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: strings.NewReader("mine"), IfNoneMatch: aws.String("*")})
		return err
	}
	if err := put(s3c, "other/a"); err != nil {
		t.Fatalf("a put the fault does not match: %v", err)
	}
	if err := put(s3c, "claims/a"); err == nil {
		t.Fatal("the dropped reply answered no error")
	}
	if _, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("claims/a")}); err != nil {
		t.Fatalf("the emulator did not act before the reply was dropped: %v", err)
	}
	if got := f.Hits("s3:PutObject"); got != 1 {
		t.Fatalf("hits = %d, want 1", got)
	}
	if got := f.Calls("s3:PutObject"); got != 2 {
		t.Fatalf("calls = %d, want 2", got)
	}

	f.Add(Fault{Op: "s3:PutObject", Match: claims, Times: 1, Drop: true})
	retrying, _ := faultClients(t, f, 3)
	err := put(retrying, "claims/b")
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "PreconditionFailed" {
		t.Fatalf("the retry after a lost reply: got %v, want PreconditionFailed", err)
	}
}

func TestFaultsDelayAReply(t *testing.T) {
	ctx := context.Background()
	f := NewFaults(t, Endpoint(t))
	_, sqsc := faultClients(t, f, 1)
	f.Add(Fault{Op: "sqs:CreateQueue", Delay: 300 * time.Millisecond})
	began := time.Now()
	if _, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(Stack(t))}); err != nil {
		t.Fatalf("create queue: %v", err)
	}
	if waited := time.Since(began); waited < 300*time.Millisecond {
		t.Fatalf("reply came after %v, before the delay", waited)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := sqsc.CreateQueue(short, &sqs.CreateQueueInput{QueueName: aws.String(Stack(t))}); err == nil {
		t.Fatal("a client that gave up before the delayed reply got no error")
	}
	if got := f.Hits("sqs:CreateQueue"); got != 2 {
		t.Fatalf("hits = %d, want 2", got)
	}
}

func TestOpNamesRequests(t *testing.T) {
	sig := func(service string) string {
		return "AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/" + service + "/aws4_request, SignedHeaders=host, Signature=x"
	}
	for _, tc := range []struct {
		method, url, target, service, want string
	}{
		{"POST", "/", "AWSGlue.StartJobRun", "glue", "glue:StartJobRun"},
		{"POST", "/", "AmazonSQS.DeleteMessageBatch", "sqs", "sqs:DeleteMessageBatch"},
		{"POST", "/", "AWSStepFunctions.SendTaskSuccess", "states", "states:SendTaskSuccess"},
		{"PUT", "/b/claims/files/x", "", "s3", "s3:PutObject"},
		{"GET", "/b/k?versionId=3", "", "s3", "s3:GetObject"},
		{"HEAD", "/b/k", "", "s3", "s3:HeadObject"},
		{"GET", "/b?list-type=2&prefix=x", "", "s3", "s3:ListObjectsV2"},
		{"GET", "/b?versioning", "", "s3", "s3:GetBucketVersioning"},
		{"POST", "/b?delete", "", "s3", "s3:DeleteObjects"},
		{"DELETE", "/b/k", "", "s3", "s3:DeleteObject"},
		{"HEAD", "/b", "", "s3", "s3:HeadBucket"},
		{"GET", "/b?prefix=x", "", "s3", "s3:ListObjects"},
		{"GET", "/b", "", "s3", "s3:ListObjects"},
		{"GET", "/b?versions&prefix=x", "", "s3", "s3:ListObjectVersions"},
		{"PUT", "/b", "", "s3", "s3:CreateBucket"},
		{"PUT", "/b?notification", "", "s3", "s3:PutBucketNotification"},
		{"DELETE", "/b", "", "s3", "s3:DeleteBucket"},
		{"POST", "/b/k?uploads", "", "s3", "s3:POST"},
	} {
		r, err := http.NewRequest(tc.method, "http://127.0.0.1"+tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", sig(tc.service))
		if tc.target != "" {
			r.Header.Set("X-Amz-Target", tc.target)
		}
		if got := Op(r); got != tc.want {
			t.Errorf("%s %s: Op = %q, want %q", tc.method, tc.url, got, tc.want)
		}
	}
	r, err := http.NewRequest("PUT", "http://127.0.0.1/b/copy", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", sig("s3"))
	r.Header.Set("X-Amz-Copy-Source", "/b/k")
	if got := Op(r); got != "s3:CopyObject" {
		t.Errorf("PUT with X-Amz-Copy-Source: Op = %q, want s3:CopyObject", got)
	}
}

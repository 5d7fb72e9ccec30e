package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// fakeReporter records outcomes; err (if set) is returned by every call.
type fakeReporter struct {
	mu        sync.Mutex
	err       error
	succeeded map[string][]byte
	failed    map[string]string // token → code
}

func newFakeReporter() *fakeReporter {
	return &fakeReporter{succeeded: map[string][]byte{}, failed: map[string]string{}}
}

func (f *fakeReporter) Succeed(_ context.Context, token string, output []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.succeeded[token] = output
	return nil
}

func (f *fakeReporter) Fail(_ context.Context, token, code, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.failed[token] = code
	return nil
}

func (f *fakeReporter) Heartbeat(context.Context, string) error { return nil }

type closedErr struct{}

func (closedErr) Error() string    { return "task closed" }
func (closedErr) TaskClosed() bool { return true }

type noBeats struct{}

func (noBeats) KeepAlive(context.Context, string, time.Duration) func() { return func() {} }

// memS3 is an in-memory bucket.
type memS3 struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func newMemS3() *memS3 { return &memS3{objs: map[string][]byte{}} }

func (m *memS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	b, _ := io.ReadAll(in.Body)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[aws.ToString(in.Key)] = b
	return &s3.PutObjectOutput{}, nil
}

func (m *memS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[aws.ToString(in.Key)]
	if !ok {
		return nil, errors.New("NoSuchKey")
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(b))}, nil
}

func (m *memS3) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.objs {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := &s3.ListObjectsV2Output{}
	for _, k := range keys {
		out.Contents = append(out.Contents, types.Object{Key: aws.String(k)})
	}
	return out, nil
}

// memPresigner "presigns" as mem://<key>, and memFetcher serves those from memS3.
type memPresigner struct{}

func (memPresigner) PresignGetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error) {
	return &v4.PresignedHTTPRequest{URL: "mem://" + aws.ToString(in.Key)}, nil
}

type memFetcher struct{ s3 *memS3 }

func (f memFetcher) Fetch(_ context.Context, url string) ([]byte, error) {
	key, ok := strings.CutPrefix(url, "mem://")
	if !ok {
		return nil, Invalid("ForbiddenURL", errors.New("not mem://"))
	}
	f.s3.mu.Lock()
	defer f.s3.mu.Unlock()
	return f.s3.objs[key], nil
}

type published struct {
	detailType string
	detail     map[string]any
}

type memPublisher struct {
	mu     sync.Mutex
	events []published
	err    error
}

func (p *memPublisher) Publish(_ context.Context, detailType string, detail any) error {
	if p.err != nil {
		return p.err
	}
	b, _ := json.Marshal(detail)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, published{detailType, m})
	return nil
}

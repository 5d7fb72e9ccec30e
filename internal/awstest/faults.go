package awstest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Faults is an HTTP proxy in front of the emulator that lets every request reach it
// and then, for the requests a Fault matches, loses or delays the reply: the
// emulator has acted, the client does not know. That is the ambiguity every AWS
// call can end in (a timeout, a reset, the SDK's last attempt), reproduced at the
// SDK's boundary with the real emulator behind it. Point a client, or a worker
// process's AWS_ENDPOINT_URL, at URL.
type Faults struct {
	srv      *httptest.Server
	upstream *url.URL
	client   *http.Client

	mu     sync.Mutex
	faults []*Fault
	calls  map[string]int
	hits   map[string]int
}

// Fault says which requests lose or delay their reply. The first added Fault that
// matches a request and has Times left acts on it.
type Fault struct {
	// Op is the request's "service:Operation", as Op returns it: "s3:PutObject",
	// "glue:StartJobRun", "sqs:DeleteMessageBatch", "states:SendTaskSuccess".
	Op string
	// Match, if set, must also hold: a key prefix, a header, a body's content.
	Match func(r *http.Request, body []byte) bool
	// Times is how many matching requests it acts on; 0 means every one.
	Times int
	// Delay holds the emulator's reply back this long (or until the client gives up).
	Delay time.Duration
	// Drop closes the client's connection with no reply, after the emulator acted.
	Drop bool

	acted int
}

// NewFaults starts a fault proxy to upstream (an endpoint URL such as Endpoint(t));
// it is closed at the end of the test.
func NewFaults(t testing.TB, upstream string) *Faults {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("parse upstream endpoint: %v", err)
	}
	f := &Faults{upstream: target, calls: map[string]int{}, hits: map[string]int{},
		// Each request upstream is the client's one attempt: no redirects followed,
		// no pooling surprises across a dropped client connection.
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	t.Cleanup(f.client.CloseIdleConnections)
	return f
}

// URL is the proxy's endpoint.
func (f *Faults) URL() string { return f.srv.URL }

// Config is Config(t) with every service at the proxy. (Setting BaseEndpoint on an
// aws.Config from Config is not enough: the services read the loaded endpoint first.)
func (f *Faults) Config(t testing.TB) aws.Config {
	t.Helper()
	return configAt(t, f.URL())
}

// Add arms a fault.
func (f *Faults) Add(fl Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &fl)
}

// Clear disarms every fault; counts stay.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// Calls is how many requests of op went through the proxy.
func (f *Faults) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *Faults) hit(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits[op]++
}

// Hits is how many requests of op a fault acted on, counted once the emulator has
// answered them: a test that waits for a hit knows the emulator acted.
func (f *Faults) Hits(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[op]
}

func (f *Faults) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	op := opOf(r, body)
	fault := f.take(op, r, body)

	status, header, reply, err := f.forward(r, body, fault != nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if fault != nil {
		f.hit(op)
	}

	if fault != nil && fault.Delay > 0 {
		select {
		case <-time.After(fault.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if fault != nil && fault.Drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection without a reply
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(reply)
}

// forward sends the request to the emulator and reads its whole reply. A faulted
// request acts after the emulator acted: a client that gives up meanwhile (a stop
// cutting its call) does not take it back.
func (f *Faults) forward(r *http.Request, body []byte, faulted bool) (status int, header http.Header, reply []byte, err error) {
	ctx := r.Context()
	if faulted {
		ctx = context.WithoutCancel(ctx)
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, f.upstreamURL(r), bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host // the client signed its own Host; the emulator does not check it
	out.ContentLength = int64(len(body))
	out.Header.Del("Transfer-Encoding")
	resp, err := f.client.Do(out)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	reply, err = io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, reply, err
}

// take counts the request and returns the fault that acts on it, if any.
func (f *Faults) take(op string, r *http.Request, body []byte) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	for _, fl := range f.faults {
		if fl.Op != op || (fl.Times > 0 && fl.acted >= fl.Times) {
			continue
		}
		if fl.Match != nil && !fl.Match(r, body) {
			continue
		}
		fl.acted++
		c := *fl
		return &c
	}
	return nil
}

func (f *Faults) upstreamURL(r *http.Request) string {
	u := *r.URL
	u.Scheme, u.Host = f.upstream.Scheme, f.upstream.Host
	return u.String()
}

// Op is a request's "service:Operation" ("s3:PutObject", "glue:StartJobRun"), read
// from its signature's scope and its target header, form action or S3 REST shape.
func Op(r *http.Request) string { return opOf(r, nil) }

func opOf(r *http.Request, body []byte) string {
	service := signedService(r)
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		return service + ":" + target[strings.LastIndex(target, ".")+1:]
	}
	if service == "s3" {
		return "s3:" + s3Op(r)
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") != "" {
			return service + ":" + form.Get("Action")
		}
	}
	if a := r.URL.Query().Get("Action"); a != "" {
		return service + ":" + a
	}
	return service + ":" + r.Method
}

// signedService is the service of the request's SigV4 scope
// (Credential=AKID/date/region/service/aws4_request), from the header or a
// presigned URL's query.
func signedService(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); auth != "" {
		if _, after, ok := strings.Cut(auth, "Credential="); ok {
			cred, _, _ = strings.Cut(after, ",")
		}
	}
	parts := strings.Split(cred, "/")
	if len(parts) < 5 {
		return ""
	}
	return parts[3]
}

// s3Op names an S3 REST request of the path style the worker uses (/bucket/key).
func s3Op(r *http.Request) string {
	path := strings.TrimPrefix(r.URL.Path, "/")
	_, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	switch r.Method {
	case http.MethodHead:
		return onObjectOrBucket(key, "HeadObject", "HeadBucket")
	case http.MethodGet:
		return s3GetOp(key, q)
	case http.MethodPut:
		return s3PutOp(key, q, r.Header)
	case http.MethodDelete:
		return onObjectOrBucket(key, "DeleteObject", "DeleteBucket")
	case http.MethodPost:
		if q.Has("delete") {
			return "DeleteObjects"
		}
	}
	return r.Method
}

// onObjectOrBucket names a request by what its path names: an object (a key) or
// its bucket.
func onObjectOrBucket(key, objectOp, bucketOp string) string {
	if key == "" {
		return bucketOp
	}
	return objectOp
}

// s3GetOp names a GET: an object's read, a listing, or a bucket's subresource
// (?policy, ?versioning, ...).
func s3GetOp(key string, q url.Values) string {
	switch {
	case key != "":
		return "GetObject"
	case q.Has("versions"):
		return "ListObjectVersions"
	case q.Get("list-type") == "2":
		return "ListObjectsV2"
	case len(q) > 0 && !q.Has("prefix") && !q.Has("delimiter") && !q.Has("marker"):
		return "GetBucket" + subresource(q)
	}
	return "ListObjects"
}

// s3PutOp names a PUT: a bucket's creation or subresource, a copy, an object's write.
func s3PutOp(key string, q url.Values, h http.Header) string {
	switch {
	case key == "" && len(q) == 0:
		return "CreateBucket"
	case key == "":
		return "PutBucket" + subresource(q)
	case h.Get("X-Amz-Copy-Source") != "":
		return "CopyObject"
	}
	return "PutObject"
}

// subresource is the bucket subresource a query names (?notification →
// "Notification"); such a request carries just that one parameter.
func subresource(q url.Values) string {
	for k := range q {
		return strings.ToUpper(k[:1]) + k[1:]
	}
	return ""
}

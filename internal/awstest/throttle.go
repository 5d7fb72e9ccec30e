package awstest

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskbridge/taskbridge/internal/throttle"
)

// ThrottledAPIs are the Step Functions APIs a Throttle limits: the ones the worker
// calls per message. Others pass through unlimited.
var ThrottledAPIs = throttle.APIs

// Throttle is an HTTP proxy in front of the emulator that throttles Step Functions
// the way the service does: a token bucket per API (burst, refill per second),
// and over it HTTP 400 with an AWS JSON 1.0 error body of type ThrottlingException.
// It counts calls and throttle answers per API.
type Throttle struct {
	srv       *httptest.Server
	burst     float64
	perSecond float64

	mu        sync.Mutex
	buckets   map[string]*bucket
	calls     map[string]int
	throttled map[string]int
	first     map[string]time.Time // first call let through
	last      map[string]time.Time // end of the last call let through
	upstream  map[string]time.Duration
}

type bucket struct {
	tokens float64
	last   time.Time
	// unused is the refill the full bucket could not hold since its first call:
	// capacity the caller left on the table.
	unused float64
}

// NewThrottle starts a throttling proxy to the emulator; it is closed at the end of
// the test.
func NewThrottle(t testing.TB, burst int, perSecond float64) *Throttle {
	t.Helper()
	target, err := url.Parse(Endpoint(t))
	if err != nil {
		t.Fatalf("parse emulator endpoint: %v", err)
	}
	th := &Throttle{burst: float64(burst), perSecond: perSecond, buckets: map[string]*bucket{}, calls: map[string]int{}, throttled: map[string]int{},
		first: map[string]time.Time{}, last: map[string]time.Time{}, upstream: map[string]time.Duration{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	th.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "AWSStepFunctions.")
		if ok && th.limited(api) && !th.take(api) {
			// The wire shape of an AWS JSON 1.0 error: the SDK reads the code from
			// __type (or X-Amzn-ErrorType).
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.Header().Set("X-Amzn-ErrorType", "ThrottlingException")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ThrottlingException","message":"Rate exceeded"}`))
			return
		}
		began := time.Now()
		proxy.ServeHTTP(w, r)
		if ok && th.limited(api) {
			th.passed(api, began)
		}
	}))
	t.Cleanup(th.srv.Close)
	return th
}

// URL is the proxy's endpoint, for AWS_ENDPOINT_URL.
func (th *Throttle) URL() string { return th.srv.URL }

func (th *Throttle) limited(api string) bool {
	for _, a := range ThrottledAPIs {
		if string(a) == api {
			return true
		}
	}
	return false
}

// take counts a call of api and takes a token of its bucket, false when empty.
func (th *Throttle) take(api string) bool {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.calls[api]++
	now := time.Now()
	b := th.buckets[api]
	if b == nil {
		b = &bucket{tokens: th.burst, last: now}
		th.buckets[api] = b
	}
	th.refill(b, now)
	if b.tokens < 1 {
		th.throttled[api]++
		return false
	}
	b.tokens--
	return true
}

func (th *Throttle) refill(b *bucket, now time.Time) {
	full := b.tokens + now.Sub(b.last).Seconds()*th.perSecond
	b.unused += max(0, full-th.burst)
	b.tokens = min(th.burst, full)
	b.last = now
}

// Unused is how many calls of api the bucket would have let through but nobody
// made, since the first call: the refill that found it full. Divided by the
// refill rate it is the time the caller lost against the bucket.
func (th *Throttle) Unused(api string) float64 {
	th.mu.Lock()
	defer th.mu.Unlock()
	b := th.buckets[api]
	if b == nil {
		return 0
	}
	th.refill(b, time.Now())
	return b.unused
}

func (th *Throttle) passed(api string, began time.Time) {
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.first[api].IsZero() {
		th.first[api] = began
	}
	th.last[api] = time.Now()
	th.upstream[api] += time.Since(began)
}

// Span is the time from the first call of api let through to the end of the last
// one, and the mean time the emulator took to answer one.
func (th *Throttle) Span(api string) (span, meanUpstream time.Duration) {
	th.mu.Lock()
	defer th.mu.Unlock()
	if n := th.calls[api] - th.throttled[api]; n > 0 {
		meanUpstream = th.upstream[api] / time.Duration(n)
	}
	return th.last[api].Sub(th.first[api]), meanUpstream
}

// Window is when the first call of api let through began and the last one ended.
func (th *Throttle) Window(api string) (first, last time.Time) {
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.first[api], th.last[api]
}

// Calls is how many calls of api reached the proxy, throttled ones included.
func (th *Throttle) Calls(api string) int {
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.calls[api]
}

// Throttled is how many calls of api were answered ThrottlingException.
func (th *Throttle) Throttled(api string) int {
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.throttled[api]
}

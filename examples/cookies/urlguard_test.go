package cookies

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskbridge/taskbridge"
)

func TestURLGuardAllowsOnlyTheDataBucket(t *testing.T) {
	t.Parallel()
	pathStyle, err := NewURLGuard("http://127.0.0.1:5000/data/probe?X-Amz-Signature=x", "probe")
	require.NoError(t, err)
	virtual, err := NewURLGuard("https://data.s3.us-east-1.amazonaws.com/probe?X-Amz-Signature=x", "probe")
	require.NoError(t, err)
	cases := []struct {
		guard *URLGuard
		url   string
		ok    bool
	}{
		{pathStyle, "http://127.0.0.1:5000/data/run-1/profiles/00000-a.json?X-Amz-Signature=y", true},
		{pathStyle, "http://169.254.169.254/latest/meta-data/", false},
		{pathStyle, "http://127.0.0.1:5000/other-bucket/key", false},
		{pathStyle, "http://127.0.0.1:5000/data/", false},
		{pathStyle, "http://127.0.0.1:5000/data/../other/key", false},
		{pathStyle, "http://user:pw@127.0.0.1:5000/data/key", false},
		{pathStyle, "https://127.0.0.1:5000/data/key", false},
		{pathStyle, "file:///etc/passwd", false},
		{pathStyle, "http://127.0.0.1:5000@evil.example/data/key", false},
		{pathStyle, "::not a url", false},
		{virtual, "https://data.s3.us-east-1.amazonaws.com/run-1/x.json?sig", true},
		{virtual, "https://other.s3.us-east-1.amazonaws.com/run-1/x.json", false},
	}
	for _, tc := range cases {
		_, err := tc.guard.Check(tc.url)
		if tc.ok {
			require.NoError(t, err, tc.url)
		} else {
			require.ErrorIs(t, err, ErrForbiddenURL, tc.url)
		}
	}
}

func TestURLGuardFetchRefusesRedirectsAndOversizedBodies(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/redirect"):
			http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
		case strings.HasSuffix(r.URL.Path, "/big"):
			_, _ = w.Write(make([]byte, maxProfileBytes+10))
		case strings.HasSuffix(r.URL.Path, "/expired"):
			w.WriteHeader(http.StatusForbidden)
		case strings.HasSuffix(r.URL.Path, "/gone"):
			w.WriteHeader(http.StatusNotFound)
		case strings.HasSuffix(r.URL.Path, "/teapot"):
			w.WriteHeader(http.StatusTeapot)
		case strings.HasSuffix(r.URL.Path, "/busy"):
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasSuffix(r.URL.Path, "/slowdown"):
			w.WriteHeader(http.StatusTooManyRequests)
		case strings.HasSuffix(r.URL.Path, "/timeout"):
			w.WriteHeader(http.StatusRequestTimeout)
		default:
			_, _ = w.Write([]byte(`{"name":"a"}`))
		}
	}))
	defer srv.Close()
	g, err := NewURLGuard(srv.URL+"/data/probe", "probe")
	require.NoError(t, err)
	ctx := context.Background()

	b, err := g.Fetch(ctx, srv.URL+"/data/ok")
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"a"}`, string(b))

	_, err = g.Fetch(ctx, srv.URL+"/data/redirect")
	kind, bad, ok := taskbridge.ErrorKind(err)
	require.True(t, ok && kind == "ForbiddenURL" && bad, "a redirect is a forbidden URL, not followed: %v", err)

	_, err = g.Fetch(ctx, srv.URL+"/data/big")
	kind, _, ok = taskbridge.ErrorKind(err)
	require.True(t, ok && kind == "TooLarge", "%v", err)

	for _, path := range []string{"/data/expired", "/data/gone", "/data/teapot"} {
		_, err = g.Fetch(ctx, srv.URL+path+"?X-Amz-Signature=secret")
		kind, bad, ok = taskbridge.ErrorKind(err)
		require.True(t, ok && kind == "URLRejected" && !bad, "%s: a 4xx is a final failure: %v", path, err)
		require.NotContains(t, err.Error(), "secret", "no signature in the error")
	}
	for _, path := range []string{"/data/busy", "/data/slowdown", "/data/timeout"} {
		_, err = g.Fetch(ctx, srv.URL+path)
		_, _, ok = taskbridge.ErrorKind(err)
		require.False(t, ok, "%s is retried: %v", path, err)
	}

	_, err = g.Fetch(ctx, "http://169.254.169.254/latest/meta-data/")
	kind, bad, ok = taskbridge.ErrorKind(err)
	require.True(t, ok && kind == "ForbiddenURL" && bad)
	require.True(t, errors.Is(err, ErrForbiddenURL))
}

// A connection error's text holds the whole URL in net/http; none of it may reach a
// log or a failure cause.
func TestURLGuardErrorsCarryNoSignature(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // connection refused from now on
	g, err := NewURLGuard(base+"/data/probe", "probe")
	require.NoError(t, err)
	_, err = g.Fetch(context.Background(), base+"/data/run-1/x.json?X-Amz-Signature=topsecret&X-Amz-Credential=AKIA")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "topsecret")
	require.NotContains(t, err.Error(), "AKIA")
	require.Contains(t, err.Error(), "/data/run-1/x.json")
}

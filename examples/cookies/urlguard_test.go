package cookies

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
	require.Error(t, err, "a redirect is not followed")

	_, err = g.Fetch(ctx, srv.URL+"/data/big")
	je, ok := asJobError(err)
	require.True(t, ok && je.kind == "TooLarge", "%v", err)

	_, err = g.Fetch(ctx, srv.URL+"/data/expired")
	je, ok = asJobError(err)
	require.True(t, ok && !je.badInput, "an expired URL is a final failure: %v", err)

	_, err = g.Fetch(ctx, "http://169.254.169.254/latest/meta-data/")
	je, ok = asJobError(err)
	require.True(t, ok && je.kind == "ForbiddenURL" && je.badInput)
	require.True(t, errors.Is(err, ErrForbiddenURL))
}

package cookies

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/taskbridge/taskbridge"
)

// maxProfileBytes caps what a presigned URL fetch may return.
const maxProfileBytes = 1 << 20

// URLGuard fetches presigned URLs, but only those that point at the data bucket on
// the configured S3 endpoint: a URL in a message is outside input, and fetching any
// URL would let a message make the worker call a metadata address or another site.
type URLGuard struct {
	scheme, host string
	pathPrefix   string // "/<bucket>/" for path-style URLs, "/" for virtual-hosted
	client       *http.Client
}

// NewURLGuard derives what is allowed from a URL presigned for the data bucket by
// the same presign client the jobs use (probe), so path-style emulators and
// virtual-hosted AWS endpoints both work. probeKey is the key probe was made for.
func NewURLGuard(probe, probeKey string) (*URLGuard, error) {
	u, err := url.Parse(probe)
	if err != nil {
		return nil, fmt.Errorf("parse presigned probe URL: %w", err)
	}
	prefix, ok := strings.CutSuffix(u.Path, probeKey)
	if !ok || !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("presigned probe URL %q does not end with its key %q", u.Path, probeKey)
	}
	return &URLGuard{
		scheme: u.Scheme, host: u.Host, pathPrefix: prefix,
		client: &http.Client{
			Timeout: 10 * time.Second,
			// A redirect could lead anywhere: it is an error, not a hop.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// ErrForbiddenURL is wrapped by Check for a URL outside the data bucket.
var ErrForbiddenURL = errors.New("URL outside the data bucket")

// Check reports whether raw may be fetched.
func (g *URLGuard) Check(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: unparsable: %w", ErrForbiddenURL, err)
	case u.User != nil:
		return nil, fmt.Errorf("%w: has user info", ErrForbiddenURL)
	case u.Scheme != g.scheme || u.Host != g.host:
		return nil, fmt.Errorf("%w: %s://%s is not the S3 endpoint", ErrForbiddenURL, u.Scheme, u.Host)
	case !strings.HasPrefix(u.Path, g.pathPrefix) || len(u.Path) == len(g.pathPrefix):
		return nil, fmt.Errorf("%w: path %q is not an object of the data bucket", ErrForbiddenURL, u.Path)
	case strings.Contains(u.Path, "/../") || strings.HasSuffix(u.Path, "/.."):
		return nil, fmt.Errorf("%w: path %q climbs out", ErrForbiddenURL, u.Path)
	}
	return u, nil
}

// Fetch GETs raw after Check. A redirect is ForbiddenURL (it could lead anywhere);
// a 4xx (403 expired or bad signature, 404, any other) is final; 408, 429 and 5xx
// answers and connection errors are transient. No error carries the URL's query
// string: it holds the signature, a credential.
func (g *URLGuard) Fetch(ctx context.Context, raw string) ([]byte, error) {
	u, err := g.Check(raw)
	if err != nil {
		return nil, taskbridge.Invalid("ForbiddenURL", err)
	}
	where := redact(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, taskbridge.Invalid("ForbiddenURL", fmt.Errorf("request %s: %w", where, redactErr(err)))
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", where, redactErr(err))
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 300 && code < 400:
		return nil, taskbridge.Invalid("ForbiddenURL", fmt.Errorf("fetch %s: redirected (%s)", where, resp.Status))
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return nil, fmt.Errorf("fetch %s: %s", where, resp.Status)
	case code >= 400:
		return nil, taskbridge.Permanent("URLRejected", fmt.Errorf("fetch %s: %s", where, resp.Status))
	case code != http.StatusOK:
		return nil, taskbridge.Permanent("URLRejected", fmt.Errorf("fetch %s: unexpected %s", where, resp.Status))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxProfileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", where, redactErr(err))
	}
	if len(b) > maxProfileBytes {
		return nil, taskbridge.Invalid("TooLarge", fmt.Errorf("object behind presigned URL is over %d bytes", maxProfileBytes))
	}
	return b, nil
}

// redact is u without its query string and user info: what may be logged.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery, c.ForceQuery, c.User, c.Fragment = "", false, nil, ""
	return c.String()
}

// redactErr drops the URL from a *url.Error (net/http puts the whole URL, signature
// included, in its message) and keeps what went wrong.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

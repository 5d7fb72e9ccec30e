// Package httpjob posts each message to a URL: the "http" job kind of a topology,
// typically a sidecar container of the same ECS task.
//
// The request is a POST of the event's detail minus its task token, as
// application/json, with the task's facts in X-Taskbridge-* headers (never the
// token). 2xx: the JSON body is the task output (empty means {}). 408, 429, 5xx,
// connection errors and timeouts: a retry. Other 4xx: a final failure
// "<job>.HTTP<code>" with an excerpt of the body as cause. 3xx: not followed, a
// final failure "<job>.HTTP<code>". A cancelled context (the task closed, a stop)
// aborts the request. With Config.Checkpoint the task's checkpoint travels in a
// Taskbridge-Checkpoint header both ways. Each Job has its own http.Client and connection
// pool, so a hung endpoint holds up only its own queue's slots.
package httpjob

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/jobs"
)

// Defaults of Config.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMaxResponse = 1 << 20 // 1 MiB
)

// excerptLen bounds the part of an error response quoted in a failure cause.
const excerptLen = 512

// Config of one http queue. Zero values take the defaults.
type Config struct {
	// URL the detail is posted to (http or https).
	URL string
	// Timeout of one request, body included (default 30 s). A timeout is a retry.
	Timeout time.Duration
	// MaxResponse caps the response body in bytes (default 1 MiB): a larger 2xx body
	// is a final failure "ResponseTooLarge".
	MaxResponse int
	// Headers added to every request. X-Taskbridge-*, Taskbridge-Checkpoint and
	// Content-Type are the worker's.
	Headers map[string]string
	// Checkpoint sends the task's last checkpoint (JSON) in the CheckpointHeader of
	// the request, when there is one, and stores the CheckpointHeader of the
	// response, whatever its status (a 503 with progress: the retry resumes).
	Checkpoint bool
}

// CheckpointHeader carries a task's checkpoint both ways when Config.Checkpoint is
// set.
const CheckpointHeader = "Taskbridge-Checkpoint"

func (c Config) withDefaults() Config {
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.MaxResponse = cmp.Or(c.MaxResponse, DefaultMaxResponse)
	return c
}

// HandlerTimeout is the deadline the consumer should give one message of this
// queue: the request's timeout and jobs.HandlerMargin.
func (c Config) HandlerTimeout() time.Duration {
	return c.withDefaults().Timeout + jobs.HandlerMargin
}

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url is empty"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("url %s does not parse", redact(c.URL)))
	} else {
		if u.Scheme != "http" && u.Scheme != "https" {
			errs = append(errs, fmt.Errorf("url %s: scheme must be http or https", redact(c.URL)))
		}
		if u.Host == "" {
			errs = append(errs, fmt.Errorf("url %s has no host", redact(c.URL)))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", c.Timeout))
	}
	if err := jobs.CheckTimeout(c.Timeout); err != nil {
		errs = append(errs, err)
	}
	if c.MaxResponse < 0 {
		errs = append(errs, fmt.Errorf("maxResponse %d is negative", c.MaxResponse))
	}
	for name, value := range c.Headers {
		canonical := http.CanonicalHeaderKey(name)
		switch {
		case !validHeaderName(name):
			errs = append(errs, fmt.Errorf("header %q is not a valid name", name))
		case strings.HasPrefix(canonical, "X-Taskbridge-") || canonical == CheckpointHeader || canonical == "Content-Type":
			errs = append(errs, fmt.Errorf("header %s is the worker's", canonical))
		case strings.ContainsAny(value, "\r\n\x00"):
			errs = append(errs, fmt.Errorf("header %s: value has a line break or NUL", canonical))
		}
	}
	return errors.Join(errs...)
}

func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// Job posts one http queue's messages. Run may be called concurrently.
type Job struct {
	name   string
	cfg    Config
	client *http.Client
	log    *zap.Logger
	m      *Metrics
}

// New checks cfg and makes the queue's own client. m may be shared by every http
// queue; nil keeps the metrics unregistered.
func New(job string, cfg Config, log *zap.Logger, m *Metrics) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("http job %s: %w", job, err)
	}
	cfg = cfg.withDefaults()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// The queue's concurrency bounds the requests in flight; keep their connections.
	transport.MaxIdleConnsPerHost = 64
	client := &http.Client{
		Transport: transport,
		Timeout:   cfg.Timeout,
		// A redirect is an answer of its own (a final failure), not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if m == nil {
		m = newMetrics()
	}
	m.init(job)
	return &Job{name: job, cfg: cfg, client: client, log: log.With(zap.String("job", job)), m: m}, nil
}

// Close closes the idle connections of the job's client.
func (j *Job) Close() { j.client.CloseIdleConnections() }

// Run posts the detail once. See the package doc for the outcomes.
func (j *Job) Run(ctx context.Context, t *jobs.Task) (any, error) {
	body, err := t.DetailWithoutToken()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return nil, jobs.Permanent("BadRequest", fmt.Errorf("request to %s: %w", redact(j.cfg.URL), redactErr(err)))
	}
	for name, value := range j.cfg.Headers {
		req.Header.Set(name, value)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Taskbridge-Job", j.name)
	req.Header.Set("X-Taskbridge-Detail-Type", t.DetailType)
	req.Header.Set("X-Taskbridge-Execution-Arn", t.ExecutionArn)
	req.Header.Set("X-Taskbridge-Receive-Count", strconv.Itoa(t.ReceiveCount))
	req.Header.Set("X-Taskbridge-Message-Id", t.MessageID)
	req.Header.Set("X-Taskbridge-Event-Id", t.EventID)
	if j.cfg.Checkpoint {
		last, ok, err := t.LastCheckpoint(ctx)
		if err != nil {
			return nil, err
		}
		if ok {
			req.Header.Set(CheckpointHeader, string(last))
		}
	}

	started := time.Now()
	out, class, err := j.do(ctx, t, req)
	j.m.duration.WithLabelValues(j.name).Observe(time.Since(started).Seconds())
	j.m.responses.WithLabelValues(j.name, class).Inc()
	return out, err
}

// do sends req and reads the answer; class is the status class of the response,
// or "error" when none came (or its body could not be read).
func (j *Job) do(ctx context.Context, t *jobs.Task, req *http.Request) (any, string, error) {
	target := redact(j.cfg.URL)
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, "error", fmt.Errorf("post to %s: %w", target, exchangeErr(ctx, err))
	}
	defer resp.Body.Close()
	j.keepCheckpoint(ctx, t, resp.Header)
	code := resp.StatusCode
	class := strconv.Itoa(code/100) + "xx"
	switch {
	case code >= 200 && code < 300:
		return j.output(ctx, target, resp, class)
	case code >= 300 && code < 400:
		where := ""
		if loc := resp.Header.Get("Location"); loc != "" {
			where = " to " + redact(loc)
		}
		return nil, class, jobs.Permanent("HTTP"+strconv.Itoa(code), fmt.Errorf("%s redirects%s: not followed", target, where))
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		if code >= 600 {
			class = "error"
		}
		return nil, class, fmt.Errorf("%s answered %d: %s", target, code, excerpt(resp.Body))
	case code >= 400:
		return nil, class, jobs.Permanent("HTTP"+strconv.Itoa(code), fmt.Errorf("%s answered %d: %s", target, code, excerpt(resp.Body)))
	default: // 1xx that the client did not consume
		return nil, "error", fmt.Errorf("%s answered %d", target, code)
	}
}

// keepCheckpoint stores the checkpoint a response carries, when the job keeps them.
func (j *Job) keepCheckpoint(ctx context.Context, t *jobs.Task, h http.Header) {
	cp := h.Get(CheckpointHeader)
	if !j.cfg.Checkpoint || cp == "" {
		return
	}
	if err := t.SaveCheckpoint(ctx, []byte(cp)); err != nil {
		// The answer stands; a checkpoint lost only costs the next try its head start.
		j.log.Warn("checkpoint of the response not stored", zap.String("message_id", t.MessageID), zap.Error(err))
	}
}

// output reads a 2xx answer as the task's output: JSON of at most MaxResponse
// bytes, an empty body being {}.
func (j *Job) output(ctx context.Context, target string, resp *http.Response, class string) (any, string, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(j.cfg.MaxResponse)+1))
	if err != nil {
		return nil, "error", fmt.Errorf("read answer of %s: %w", target, exchangeErr(ctx, err))
	}
	if len(b) > j.cfg.MaxResponse {
		return nil, class, jobs.Permanent("ResponseTooLarge", fmt.Errorf("%s answered more than %d bytes", target, j.cfg.MaxResponse))
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return json.RawMessage(`{}`), class, nil
	}
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		return nil, class, jobs.Permanent("InvalidOutput", fmt.Errorf("%s answered %d with a body that is not JSON (%d bytes): %w", target, resp.StatusCode, len(b), err))
	}
	return json.RawMessage(b), class, nil
}

// exchangeErr is the cause of a failed request or read: the job context's error
// when it ended (a stop, the job's deadline), else err without the URL it quotes.
func exchangeErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return redactErr(err)
}

// excerpt is the start of an error body, valid UTF-8, for a failure cause.
func excerpt(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, excerptLen+1))
	more := len(b) > excerptLen
	if more {
		b = b[:excerptLen]
		for len(b) > 0 && !utf8.Valid(b) && len(b) > excerptLen-utf8.UTFMax {
			b = b[:len(b)-1]
		}
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	switch {
	case s == "":
		return "(empty body)"
	case more:
		return s + "…"
	}
	return s
}

// redact drops the user info, query and fragment of a URL: they may hold
// credentials (an API key, a presigned signature).
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i]
		}
		return raw
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// redactErr is err without the URL a *url.Error quotes (the caller names the
// target, redacted).
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

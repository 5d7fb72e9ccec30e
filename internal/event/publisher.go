package event

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/taskbridge/taskbridge/internal/awsjson"
	"github.com/taskbridge/taskbridge/internal/awslimit"
	"github.com/taskbridge/taskbridge/internal/tracing"
)

// eventbridgeAPI is the one call the publisher makes; *eventbridge.Client satisfies it.
type eventbridgeAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Limits of PutEvents.
const (
	// MaxEntryBytes bounds one entry, measured the way EventBridge measures it
	// ("Calculating PutEvents event entry size", EventBridge User Guide): the UTF-8
	// bytes of Source, DetailType, Detail and each of Resources, plus 14 for Time if
	// set (the publisher sets neither Time nor Resources). The same guide bounds the
	// total of a call's entries by the same figure: awslimit.EventBridgeEntryBytes
	// (1 MB since 2026-01-29).
	MaxEntryBytes   = awslimit.EventBridgeEntryBytes
	maxBatchEntries = 10 // entries in one call
)

// ErrTooLarge is wrapped by the error of Publish and PublishMany when an event is
// over MaxEntryBytes: it can never be put on the bus, so whoever made it should
// fail at once instead of trying again. Nothing is sent then.
var ErrTooLarge = errors.New("event too large")

// publishAttempts bounds how often an entry that PutEvents reports as failed is sent:
// a whole-call error is already retried by the SDK, but half-failed calls are not.
const publishAttempts = 5

// publishBackoff is the wait before the second attempt; it doubles each attempt and
// half of it is jitter.
const publishBackoff = 100 * time.Millisecond

// permanentEntryCodes are the PutEvents entry errors that the same entry will meet
// again (the API reference's non-retryable list): retrying them only delays the error.
var permanentEntryCodes = map[string]bool{
	"AccessDeniedException":               true,
	"InvalidAccountIdException":           true,
	"InvalidArgument":                     true,
	"MalformedDetail":                     true,
	"RedactionFailure":                    true,
	"NotAuthorizedForSourceException":     true,
	"NotAuthorizedForDetailTypeException": true,
}

// PublisherConfig names where events go.
type PublisherConfig struct {
	EventBus string // name or ARN of the bus; required
	Source   string // the source of every event the worker emits; required
}

// Validate reports every missing setting.
func (c PublisherConfig) Validate() error {
	var errs []error
	if c.EventBus == "" {
		errs = append(errs, errors.New("publisher: no event bus"))
	}
	if c.Source == "" {
		errs = append(errs, errors.New("publisher: no event source"))
	}
	return errors.Join(errs...)
}

// Entry is one event to publish.
type Entry struct {
	DetailType string
	Detail     any // marshalled to JSON; must marshal to a JSON object
}

// Publisher puts the worker's events on the bus. Safe for concurrent use.
type Publisher struct {
	cfg     PublisherConfig
	client  eventbridgeAPI
	log     *zap.Logger
	metrics *Metrics
}

// NewPublisher returns a Publisher; its metrics are registered on reg.
func NewPublisher(cfg PublisherConfig, client eventbridgeAPI, log *zap.Logger, reg prometheus.Registerer) *Publisher {
	return &Publisher{cfg: cfg, client: client, log: log.With(zap.String("component", "publisher")), metrics: NewMetrics(reg)}
}

// Publish puts one event of detailType with detail (marshalled to JSON). It returns
// nil only once the bus has accepted the event; see PublishMany.
func (p *Publisher) Publish(ctx context.Context, detailType string, detail any) error {
	return p.PublishMany(ctx, []Entry{{DetailType: detailType, Detail: detail}})
}

// PublishMany puts entries on the bus, at most ten and MaxEntryBytes per call. The
// detail is marshalled without HTML escaping (MarshalJSON). An entry that cannot be
// sent (it does not marshal to a JSON object, has no detail type, or is over
// MaxEntryBytes, which wraps ErrTooLarge) fails the whole call before anything is
// sent. Entries
// that PutEvents reports as failed, and only they, are sent again with jittered backoff, up to
// publishAttempts times, unless their error code says a retry cannot help. It returns
// nil when every entry was accepted, else an error naming each entry that was not
// (earlier entries may have been published: events are at least once anyway).
// Cancelling ctx stops the retries.
func (p *Publisher) PublishMany(ctx context.Context, entries []Entry) (err error) {
	ctx, span := tracing.Start(ctx, "publish", "", trace.SpanKindProducer)
	defer func() { tracing.End(span, err) }()
	if span.IsRecording() && len(entries) > 0 {
		span.SetAttributes(attribute.Int("taskbridge.events", len(entries)), attribute.String("taskbridge.detail_type", entries[0].DetailType))
	}
	tc := tracing.Inject(ctx) // every entry carries the publish span's context
	pending := make([]pendingEntry, 0, len(entries))
	var bad []error
	for i, e := range entries {
		req, size, err := p.request(e, tc)
		if err != nil {
			bad = append(bad, fmt.Errorf("entry %d: %w", i, err))
			continue
		}
		pending = append(pending, pendingEntry{index: i, req: req, size: size})
	}
	if len(bad) > 0 {
		for _, e := range entries {
			p.metrics.published.WithLabelValues(e.DetailType, "error").Inc()
		}
		return fmt.Errorf("publish: %w", errors.Join(bad...))
	}

	var failed []error
	for attempt := 1; len(pending) > 0; attempt++ {
		var retry []pendingEntry
		for start, end := 0, 0; start < len(pending); start = end {
			end = chunkEnd(pending, start)
			chunk := pending[start:end]
			again, gaveUp, err := p.put(ctx, chunk, attempt)
			if err != nil {
				unsent := append(retry, pending[start:]...)
				for _, e := range unsent {
					p.metrics.published.WithLabelValues(e.detailType(), "error").Inc()
				}
				return fmt.Errorf("publish %s: %w", describe(unsent), errors.Join(append(failed, err)...))
			}
			retry = append(retry, again...)
			failed = append(failed, gaveUp...)
		}
		pending = retry
		if len(pending) == 0 {
			break
		}
		if err := p.backoff(ctx, attempt); err != nil {
			for _, e := range pending {
				p.metrics.published.WithLabelValues(e.detailType(), "error").Inc()
				failed = append(failed, fmt.Errorf("entry %d (%s): %w (last failure: %s)", e.index, e.detailType(), err, e.lastFailure))
			}
			break
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("publish: %w", errors.Join(failed...))
	}
	return nil
}

// pendingEntry is an entry on its way, with its position in the caller's slice.
type pendingEntry struct {
	index       int
	req         types.PutEventsRequestEntry
	size        int // entrySize(req)
	lastFailure string
}

// chunkEnd returns the end of the call that starts at pending[start]: at most
// maxBatchEntries entries whose sizes add up to at most MaxEntryBytes, and at least
// one entry (each is within the limit).
func chunkEnd(pending []pendingEntry, start int) int {
	end, total := start, 0
	for end < len(pending) && end-start < maxBatchEntries {
		if total += pending[end].size; total > MaxEntryBytes && end > start {
			break
		}
		end++
	}
	return end
}

// entrySize is the size EventBridge counts for an entry: the UTF-8 bytes of Source,
// DetailType, Detail and each resource, and 14 bytes for a Time.
func entrySize(e types.PutEventsRequestEntry) int {
	n := len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	for _, r := range e.Resources {
		n += len(r)
	}
	if e.Time != nil {
		n += 14
	}
	return n
}

func (e pendingEntry) detailType() string { return aws.ToString(e.req.DetailType) }

func (p *Publisher) request(e Entry, tc tracing.Outgoing) (types.PutEventsRequestEntry, int, error) {
	if e.DetailType == "" {
		return types.PutEventsRequestEntry{}, 0, errors.New("no detail type")
	}
	b, err := awsjson.Marshal(e.Detail)
	if err != nil {
		return types.PutEventsRequestEntry{}, 0, fmt.Errorf("%s: marshal detail: %w", e.DetailType, err)
	}
	if len(b) == 0 || b[0] != '{' { // EventBridge takes only an object as detail
		return types.PutEventsRequestEntry{}, 0, fmt.Errorf("%s: detail is not a JSON object", e.DetailType)
	}
	if tc.Traceparent != "" {
		if b, err = withTraceparent(b, tc.Traceparent); err != nil {
			return types.PutEventsRequestEntry{}, 0, fmt.Errorf("%s: %w", e.DetailType, err)
		}
	}
	req := types.PutEventsRequestEntry{
		EventBusName: aws.String(p.cfg.EventBus), Source: aws.String(p.cfg.Source),
		DetailType: aws.String(e.DetailType), Detail: aws.String(string(b)),
	}
	if tc.XRay != "" {
		req.TraceHeader = aws.String(tc.XRay) // EventBridge hands it to X-Ray-aware targets (SQS: AWSTraceHeader)
	}
	if size := entrySize(req); size > MaxEntryBytes {
		return types.PutEventsRequestEntry{}, 0, fmt.Errorf("%s: %w: %d bytes, over the %d byte limit", e.DetailType, ErrTooLarge, size, MaxEntryBytes)
	}
	return req, entrySize(req), nil
}

// put sends one chunk of at most ten entries. It returns the entries to send again,
// the errors of entries it gave up on, and a whole-call error (already retried by
// the SDK).
func (p *Publisher) put(ctx context.Context, chunk []pendingEntry, attempt int) (retry []pendingEntry, gaveUp []error, err error) {
	in := &eventbridge.PutEventsInput{Entries: make([]types.PutEventsRequestEntry, len(chunk))}
	for i, e := range chunk {
		in.Entries[i] = e.req
	}
	out, err := p.client.PutEvents(ctx, in)
	if err != nil {
		return nil, nil, err
	}
	for i, e := range chunk {
		// Results come in request order; a missing one is treated as a failure
		// rather than as a success nobody confirmed.
		code, msg := "NoResult", "no result entry for this event"
		if i < len(out.Entries) {
			r := out.Entries[i]
			if r.ErrorCode == nil {
				p.metrics.published.WithLabelValues(e.detailType(), "ok").Inc()
				continue
			}
			code, msg = aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage)
		}
		e.lastFailure = code + ": " + msg
		if permanentEntryCodes[code] || attempt >= publishAttempts {
			p.metrics.published.WithLabelValues(e.detailType(), "error").Inc()
			gaveUp = append(gaveUp, fmt.Errorf("entry %d (%s): refused after %d attempts: %s", e.index, e.detailType(), attempt, e.lastFailure))
			continue
		}
		p.log.Debug("event refused, will retry", zap.String("detail_type", e.detailType()), zap.String("error_code", code), zap.Int("attempt", attempt))
		retry = append(retry, e)
	}
	return retry, gaveUp, nil
}

// backoff waits before attempt+1: publishBackoff doubled per attempt, half jitter,
// so that a fleet of workers does not retry in lockstep.
func (p *Publisher) backoff(ctx context.Context, attempt int) error {
	d := publishBackoff << (attempt - 1)
	t := time.NewTimer(d/2 + rand.N(d/2))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// describe names the detail types of entries for an error message.
func describe(entries []pendingEntry) string {
	seen := map[string]bool{}
	var names []string
	for _, e := range entries {
		if dt := e.detailType(); !seen[dt] {
			seen[dt] = true
			names = append(names, dt)
		}
	}
	return strings.Join(names, ", ")
}

// withTraceparent puts traceparent in the detail object b, so that whoever handles
// the event continues the trace (EventBridge passes the entry's TraceHeader only to
// X-Ray-aware targets, and only with X-Ray on). A traceparent b already has (a job
// forwarding the detail it got) is replaced: the event's parent is this publish.
func withTraceparent(b []byte, traceparent string) ([]byte, error) {
	// A key can be any case (encoding/json matches names case-insensitively) or
	// escaped: only a detail with neither takes the short way.
	if !bytes.Contains(bytes.ToLower(b), []byte("traceparent")) && !bytes.Contains(b, []byte(`\u`)) {
		member := `"traceparent":"` + traceparent + `"`
		if rest := bytes.TrimSpace(b[1:]); len(rest) > 0 && rest[0] == '}' {
			return []byte("{" + member + "}"), nil
		}
		return append([]byte("{"+member+","), b[1:]...), nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("add traceparent: %w", err)
	}
	for k := range fields {
		if strings.EqualFold(k, "traceparent") {
			delete(fields, k)
		}
	}
	fields["traceparent"], _ = json.Marshal(traceparent)
	return awsjson.Marshal(fields)
}

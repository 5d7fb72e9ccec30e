package event

import (
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
	"go.uber.org/zap"
)

// eventbridgeAPI is the one call the publisher makes; *eventbridge.Client satisfies it.
type eventbridgeAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Limits of PutEvents.
const (
	MaxEntryBytes   = 256 * 1024 // one entry: source + detail-type + detail (we set no time or resources)
	maxBatchEntries = 10         // entries in one call
)

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

// PublishMany puts entries on the bus, ten per call. An entry that cannot be sent (it
// does not marshal to a JSON object, has no detail type, or is over MaxEntryBytes)
// fails the whole call before anything is sent: that is a bug of the caller. Entries
// that PutEvents reports as failed, and only they, are sent again with jittered backoff, up to
// publishAttempts times, unless their error code says a retry cannot help. It returns
// nil when every entry was accepted, else an error naming each entry that was not
// (earlier entries may have been published: events are at least once anyway).
// Cancelling ctx stops the retries.
func (p *Publisher) PublishMany(ctx context.Context, entries []Entry) error {
	pending := make([]pendingEntry, 0, len(entries))
	var bad []error
	for i, e := range entries {
		req, err := p.request(e)
		if err != nil {
			bad = append(bad, fmt.Errorf("entry %d: %w", i, err))
			continue
		}
		pending = append(pending, pendingEntry{index: i, req: req})
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
		for start := 0; start < len(pending); start += maxBatchEntries {
			chunk := pending[start:min(start+maxBatchEntries, len(pending))]
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
	lastFailure string
}

func (e pendingEntry) detailType() string { return aws.ToString(e.req.DetailType) }

func (p *Publisher) request(e Entry) (types.PutEventsRequestEntry, error) {
	if e.DetailType == "" {
		return types.PutEventsRequestEntry{}, errors.New("no detail type")
	}
	b, err := json.Marshal(e.Detail)
	if err != nil {
		return types.PutEventsRequestEntry{}, fmt.Errorf("%s: marshal detail: %w", e.DetailType, err)
	}
	if len(b) == 0 || b[0] != '{' { // EventBridge takes only an object as detail
		return types.PutEventsRequestEntry{}, fmt.Errorf("%s: detail is not a JSON object", e.DetailType)
	}
	if size := len(b) + len(e.DetailType) + len(p.cfg.Source); size > MaxEntryBytes {
		return types.PutEventsRequestEntry{}, fmt.Errorf("%s: event of %d bytes is over the %d byte limit", e.DetailType, size, MaxEntryBytes)
	}
	return types.PutEventsRequestEntry{
		EventBusName: aws.String(p.cfg.EventBus), Source: aws.String(p.cfg.Source),
		DetailType: aws.String(e.DetailType), Detail: aws.String(string(b)),
	}, nil
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

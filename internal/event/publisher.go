package event

import (
	"context"
	"encoding/json"
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

type eventbridgeAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// MaxEntryBytes is PutEvents' limit for one entry.
const MaxEntryBytes = 256 * 1024

// publishAttempts bounds the retries of entries that PutEvents reports as failed:
// a whole-call error is already retried by the SDK, but half-failed calls are not.
const publishAttempts = 5

// PublisherConfig names where events go.
type PublisherConfig struct {
	EventBus string
	Source   string // the source of every event the worker emits
}

// Publisher puts the worker's events on the bus. Safe for concurrent use.
type Publisher struct {
	cfg       PublisherConfig
	client    eventbridgeAPI
	log       *zap.Logger
	published *prometheus.CounterVec
}

// NewPublisher returns a Publisher; its metric is registered on reg.
func NewPublisher(cfg PublisherConfig, client eventbridgeAPI, log *zap.Logger, reg prometheus.Registerer) *Publisher {
	published := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "worker_events_published_total", Help: "Events the worker put on the bus, by detail type and result.",
	}, []string{"detail_type", "result"})
	reg.MustRegister(published)
	return &Publisher{cfg: cfg, client: client, log: log.With(zap.String("component", "publisher")), published: published}
}

// Publish puts one event with detail (marshalled to JSON) of detailType. It returns
// only when the bus accepted it, or with an error naming why not.
func (p *Publisher) Publish(ctx context.Context, detailType string, detail any) error {
	b, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("publish %s: marshal detail: %w", detailType, err)
	}
	if size := len(b) + len(detailType) + len(p.cfg.Source); size > MaxEntryBytes {
		return fmt.Errorf("publish %s: event of %d bytes is over the %d byte limit", detailType, size, MaxEntryBytes)
	}
	entry := types.PutEventsRequestEntry{
		EventBusName: aws.String(p.cfg.EventBus), Source: aws.String(p.cfg.Source),
		DetailType: aws.String(detailType), Detail: aws.String(string(b)),
	}
	var lastFailure string
	for attempt := 1; attempt <= publishAttempts; attempt++ {
		out, err := p.client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry}})
		if err != nil {
			p.published.WithLabelValues(detailType, "error").Inc()
			return fmt.Errorf("publish %s: %w", detailType, err)
		}
		if out.FailedEntryCount == 0 {
			p.published.WithLabelValues(detailType, "ok").Inc()
			return nil
		}
		// A failed entry (throttled, or the bus's rules changing under it) is
		// retried with backoff; the SDK does not retry entries.
		lastFailure = entryFailure(out.Entries)
		d := time.Duration(50<<attempt) * time.Millisecond
		t := time.NewTimer(d/2 + rand.N(d/2))
		select {
		case <-ctx.Done():
			t.Stop()
			p.published.WithLabelValues(detailType, "error").Inc()
			return fmt.Errorf("publish %s: %w (last failure: %s)", detailType, ctx.Err(), lastFailure)
		case <-t.C:
		}
	}
	p.published.WithLabelValues(detailType, "error").Inc()
	return fmt.Errorf("publish %s: entry failed %d times: %s", detailType, publishAttempts, lastFailure)
}

func entryFailure(entries []types.PutEventsResultEntry) string {
	var parts []string
	for _, e := range entries {
		if e.ErrorCode != nil {
			parts = append(parts, aws.ToString(e.ErrorCode)+": "+aws.ToString(e.ErrorMessage))
		}
	}
	if len(parts) == 0 {
		return "unknown"
	}
	return strings.Join(parts, "; ")
}

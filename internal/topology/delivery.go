package topology

import (
	"errors"
	"fmt"
)

// EventsDLQName is the logical name of the stack's EventBridge dead-letter queue,
// which `worker dlq --queue` and `worker status` use; no topology queue may take it.
const EventsDLQName = "eventbridge"

// The explicit retry policy of every rule target, when the topology does not set one.
// EventBridge's own default (no RetryPolicy) is 185 attempts over 24 hours; an hour
// rides out throttling and a short outage of a queue, and then the event is in the
// stack's events DLQ, where an alarm sees it and `worker dlq redrive` puts it back,
// rather than an execution waiting a day with nothing to show why.
const (
	DefaultRetryAttempts      = 185
	DefaultMaxEventAgeSeconds = 3600
)

// EventDelivery is how EventBridge delivers the topology's events to its queues.
// Every rule target gets RetryPolicy{RetryAttempts, MaxEventAgeSeconds} and, unless
// DeadLetter is false, DeadLetterConfig{the stack's events DLQ}.
type EventDelivery struct {
	// RetryAttempts is the target's MaximumRetryAttempts (0..185; default 185).
	RetryAttempts *int `json:"retryAttempts,omitempty"`
	// MaxEventAgeSeconds is the target's MaximumEventAgeInSeconds (60..86400;
	// default 3600): after it an undelivered event goes to the events DLQ.
	MaxEventAgeSeconds int `json:"maxEventAgeSeconds,omitempty"`
	// DeadLetter false drops what EventBridge cannot deliver, as a target without a
	// DLQ does (`validate` warns); default true.
	DeadLetter *bool `json:"deadLetter,omitempty"`
}

// Retry is the retry policy of every rule target: attempts and maximum event age.
func (t *Topology) Retry() (attempts, maxAgeSeconds int) {
	attempts, maxAgeSeconds = DefaultRetryAttempts, DefaultMaxEventAgeSeconds
	if d := t.EventDelivery; d != nil {
		if d.RetryAttempts != nil {
			attempts = *d.RetryAttempts
		}
		if d.MaxEventAgeSeconds != 0 {
			maxAgeSeconds = d.MaxEventAgeSeconds
		}
	}
	return attempts, maxAgeSeconds
}

// DeadLetters reports whether the rule targets send what they cannot deliver to the
// stack's events DLQ.
func (t *Topology) DeadLetters() bool {
	return t.EventDelivery == nil || t.EventDelivery.DeadLetter == nil || *t.EventDelivery.DeadLetter
}

// checkDelivery checks eventDelivery against what PutTargets accepts.
func (t *Topology) checkDelivery() []error {
	var errs []error
	attempts, age := t.Retry()
	if attempts < 0 || attempts > 185 {
		errs = append(errs, fmt.Errorf("eventDelivery: retryAttempts must be 0..185 (EventBridge's MaximumRetryAttempts), got %d", attempts))
	}
	if age < 60 || age > 86400 {
		errs = append(errs, fmt.Errorf("eventDelivery: maxEventAgeSeconds must be 60..86400 (EventBridge's MaximumEventAgeInSeconds), got %d", age))
	}
	for _, q := range t.Queues {
		if q.Name == EventsDLQName {
			errs = append(errs, errors.New(`queue "`+EventsDLQName+`": the name is reserved for the stack's EventBridge dead-letter queue (<stack>-`+EventsDLQName+`-dlq)`))
		}
	}
	return errs
}

// deliveryWarnings are the risks of eventDelivery.
func (t *Topology) deliveryWarnings() []string {
	if t.DeadLetters() {
		return nil
	}
	attempts, age := t.Retry()
	return []string{fmt.Sprintf("eventDelivery: deadLetter is false: an event EventBridge cannot deliver to a queue (a queue policy or KMS key wrong, a deleted queue) is dropped after %d attempts or %d s, and its execution waits with nothing to show why; remove deadLetter to keep such events in the stack's events DLQ", attempts, age)}
}

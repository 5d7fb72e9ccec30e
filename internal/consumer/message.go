package consumer

import (
	"context"
	"errors"
	"time"
)

// Message is one SQS message as a Handler sees it. No receipt handle: only the
// consumer deletes or releases messages.
type Message struct {
	ID    string // SQS message id
	Queue string // logical queue name (topology), e.g. "processSingle"
	Body  string
	// ReceiveCount is ApproximateReceiveCount: 1 on the first delivery.
	ReceiveCount int
	// MaxReceiveCount is the queue's redrive maxReceiveCount; 0 when unknown.
	MaxReceiveCount int
	// TraceHeader is the AWSTraceHeader system attribute (an X-Ray trace header, set
	// by senders with X-Ray tracing on); "" when absent.
	TraceHeader string
	// Started is when the Poller started this message's handler (its deadline is
	// Started + HandlerTimeout): a handler that times itself takes it rather than
	// reading the clock again. Zero when the message did not come from a Poller.
	Started time.Time

	// poller and held are where the message came from (nil when not from a
	// Poller): what Detach needs.
	poller *Poller
	held   *inflight
}

// LastAttempt reports whether this delivery is the last before the queue's redrive
// policy moves the message to the DLQ.
func (m Message) LastAttempt() bool {
	return LastReceive(m.ReceiveCount, m.MaxReceiveCount)
}

// LastReceive reports whether the receiveCount-th delivery of a message is the last
// before a redrive policy of maxReceiveCount (0: unknown, never the last) moves it to
// the DLQ.
func LastReceive(receiveCount, maxReceiveCount int) bool {
	return maxReceiveCount > 0 && receiveCount >= maxReceiveCount
}

// Handler handles one message. It is called concurrently from many goroutines.
// ctx is cancelled when the job's deadline passes, when visibility could not be kept,
// or when a drain times out; a handler should then return promptly. The returned
// error decides the message's fate (see the package doc): nil deletes it,
// DeadLetter(err) moves it to the DLQ, anything else leaves it for redelivery.
type Handler interface {
	Handle(ctx context.Context, m Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m Message) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m Message) error { return f(ctx, m) }

// deadLetterError marks an error whose message must go to the DLQ now.
type deadLetterError struct{ err error }

func (e *deadLetterError) Error() string { return "dead letter: " + e.err.Error() }
func (e *deadLetterError) Unwrap() error { return e.err }

// DeadLetter wraps err so that the consumer moves the message to its DLQ at once
// instead of retrying it: for input that no retry can fix. A nil err stays nil.
func DeadLetter(err error) error {
	if err == nil {
		return nil
	}
	return &deadLetterError{err: err}
}

// IsDeadLetter reports whether err asks for the message to be dead-lettered.
func IsDeadLetter(err error) bool {
	var d *deadLetterError
	return errors.As(err, &d)
}

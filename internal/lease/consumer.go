package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taskbridge/taskbridge/internal/consumer"
)

// ForConsumer is the store as the consumer's hand-over uses it.
func (s *Store) ForConsumer() consumer.Leases { return consumerLeases{s} }

type consumerLeases struct{ s *Store }

var _ consumer.Leases = consumerLeases{}

func (c consumerLeases) TTL() time.Duration                 { return c.s.ttl }
func (c consumerLeases) Key(queue, messageID string) string { return Key(queue, messageID) }

func (c consumerLeases) Hold(ctx context.Context, key string) (consumer.HeldLease, error) {
	l, err := c.s.Hold(ctx, key)
	if err != nil {
		return nil, asConsumer(err)
	}
	return held{l}, nil
}

// Claim judges a continuation: no lease or a done one → Done; alive → held until
// its expiry; dead or released → taken over (or, if another taker won, held for
// a TTL from now).
func (c consumerLeases) Claim(ctx context.Context, key string) (consumer.LeaseClaim, error) {
	v, found, err := c.s.Inspect(ctx, key)
	switch {
	case err != nil:
		return consumer.LeaseClaim{}, err
	case !found || v.State == Done:
		return consumer.LeaseClaim{Done: true}, nil
	case v.Live(c.s.NowFunc()):
		return consumer.LeaseClaim{HeldUntil: v.Expires}, nil
	}
	l, err := c.s.TakeOver(ctx, v)
	switch {
	case errors.Is(err, ErrHeld):
		return consumer.LeaseClaim{HeldUntil: c.s.NowFunc().Add(c.s.ttl)}, nil
	case err != nil:
		return consumer.LeaseClaim{}, err
	}
	return consumer.LeaseClaim{Lease: held{l}}, nil
}

type held struct{ l *Lease }

func (h held) Renew(ctx context.Context) error { return asConsumer(h.l.Renew(ctx)) }
func (h held) Renewed() time.Time              { return h.l.Renewed() }
func (h held) Finish(ctx context.Context, done bool) error {
	state := Released
	if done {
		state = Done
	}
	return asConsumer(h.l.Finish(ctx, state))
}

// asConsumer makes the store's errors the consumer's, keeping their text.
func asConsumer(err error) error {
	switch {
	case errors.Is(err, ErrHeld):
		return fmt.Errorf("%w: %w", consumer.ErrLeaseHeld, err)
	case errors.Is(err, ErrLost):
		return fmt.Errorf("%w: %w", consumer.ErrLeaseLost, err)
	}
	return err
}

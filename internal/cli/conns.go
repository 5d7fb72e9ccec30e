package cli

import (
	"context"
	"net"
	"sync"
)

// connTracker holds the connections a run's AWS clients dialed, so that the run
// closes them when it returns: an idle keep-alive connection (and the transport's
// two goroutines on it) would otherwise outlive the run by the transport's idle
// timeout, in a process that goes on. The SDK's HTTP client copies its transport
// and has no CloseIdleConnections; the dial function is what every copy shares.
type connTracker struct {
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func newConnTracker() *connTracker { return &connTracker{conns: map[*trackedConn]struct{}{}} }

// dial wraps dial (nil: a plain net.Dialer's) so that t holds what it dials.
func (t *connTracker) dial(dial dialFunc) dialFunc {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, t: t}
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.closed { // a call after the run (a client a job kept): the caller's to close
			return c, nil
		}
		t.conns[tc] = struct{}{}
		return tc, nil
	}
}

// Close closes every connection still open and tracks no new one: call it when
// nothing of the run makes calls any more.
func (t *connTracker) Close() {
	t.mu.Lock()
	conns := t.conns
	t.conns, t.closed = nil, true
	t.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

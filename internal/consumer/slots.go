package consumer

import (
	"context"
	"sync"
	"time"
)

// slotPool bounds the handlers of a Poller: one slot per message held. A receive
// loop takes slots before it receives; a handler gives its slot back when its
// message's fate is settled. Unlike a buffered channel used as a semaphore, a
// waiting loop is woken once when the slots it wants are free (or once to start
// its gather window), not once per slot freed: with a busy queue that is one
// wake-up per receive instead of one per message. Waiting loops are served in
// order. The pool can grow and shrink while in use (resize): a Poller prefetches
// only while its handlers are quick. mu guards every field.
type slotPool struct {
	mu      sync.Mutex
	free    int
	size    int
	waiters []*slotWaiter
}

type slotWaiter struct {
	want     int
	granted  int           // set by release when it hands the waiter its slots
	notified bool          // signalled once that some slots are free
	signal   chan struct{} // capacity 1
}

func newSlotPool(size int) *slotPool { return &slotPool{free: size, size: size} }

// available is how many slots are free now.
func (s *slotPool) available() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.free
}

// acquire takes min(10, size) slots when they are free; once at least one is free,
// it waits at most window for the rest, then takes what is free. It returns 0,
// false when ctx ends first.
func (s *slotPool) acquire(ctx context.Context, window time.Duration) (int, bool) {
	s.mu.Lock()
	want := min(maxBatch, s.size)
	if len(s.waiters) == 0 && s.free >= want {
		s.free -= want
		s.mu.Unlock()
		return want, true
	}
	w := &slotWaiter{want: want, signal: make(chan struct{}, 1)}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()

	var expired <-chan time.Time
	for {
		s.mu.Lock()
		if w.granted > 0 {
			s.mu.Unlock()
			return w.granted, true
		}
		if expired == nil && s.waiters[0] == w && s.free > 0 {
			t := time.NewTimer(window)
			defer t.Stop()
			expired = t.C
		}
		s.mu.Unlock()
		select {
		case <-w.signal:
		case <-expired:
			s.mu.Lock()
			if w.granted > 0 {
				s.mu.Unlock()
				return w.granted, true
			}
			if s.waiters[0] == w && s.free > 0 { // the window is over: take what is free
				n := s.free
				s.free = 0
				s.remove(w)
				s.mu.Unlock()
				return n, true
			}
			w.notified = false // nothing free after all: wait for the next slot again
			s.mu.Unlock()
			expired = nil
		case <-ctx.Done():
			s.mu.Lock()
			s.remove(w)
			s.free += w.granted // granted as ctx ended: give them back
			w.granted = 0
			s.serve()
			s.mu.Unlock()
			return 0, false
		}
	}
}

// release gives n slots back.
func (s *slotPool) release(n int) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	s.free += n
	s.serve()
	s.mu.Unlock()
}

// resize adds delta slots (fewer when negative). Slots held beyond a smaller size
// are not taken back: free goes below zero until enough are released.
func (s *slotPool) resize(delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.size += delta
	s.free += delta
	for _, w := range s.waiters {
		w.want = min(w.want, maxBatch, max(s.size, 1)) // a shrunk pool may never free the old want
	}
	s.serve()
}

// serve hands free slots to the first waiter that wants no more than are free, or
// tells it once that some are free. Called with mu held.
func (s *slotPool) serve() {
	for len(s.waiters) > 0 {
		w := s.waiters[0]
		if s.free >= w.want {
			s.free -= w.want
			w.granted = w.want
			s.waiters = s.waiters[1:]
			wake(w)
			continue
		}
		if s.free > 0 && !w.notified {
			w.notified = true
			wake(w)
		}
		return
	}
}

// remove drops w from the waiters and lets the next one know. Called with mu held.
func (s *slotPool) remove(w *slotWaiter) {
	for i, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			break
		}
	}
	if len(s.waiters) > 0 {
		s.waiters[0].notified = false
	}
	s.serve()
}

func wake(w *slotWaiter) {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// Package checkpointtest keeps jobs' checkpoints in memory, answering as the data
// bucket does through checkpoint.Store: for unit tests of jobs that checkpoint, and
// for tasktest. It records the calls, so a test can say what was stored and when.
package checkpointtest

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// Calls counts a Store's calls by kind.
type Calls struct{ Gets, Puts, Deletes int }

// Store is checkpoints by object key. A missing key is ok false on Get and no
// error on Delete, as S3 answers; an empty key is refused, as S3 refuses it. Safe
// for concurrent use.
type Store struct {
	mu      sync.Mutex
	objects map[string][]byte
	puts    []string // the bodies put, in order
	calls   Calls
}

// New returns an empty Store.
func New() *Store { return &Store{objects: map[string][]byte{}} }

var errNoKey = errors.New("checkpointtest: an empty key (S3 refuses it)")

// Put stores body under key.
func (s *Store) Put(_ context.Context, key string, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls.Puts++
	if key == "" {
		return errNoKey
	}
	s.objects[key] = slices.Clone(body)
	s.puts = append(s.puts, string(body))
	return nil
}

// Get reads key; ok is false when there is no such object.
func (s *Store) Get(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls.Gets++
	if key == "" {
		return nil, false, errNoKey
	}
	b, ok := s.objects[key]
	return slices.Clone(b), ok, nil
}

// Delete removes key; a missing key is no error.
func (s *Store) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls.Deletes++
	if key == "" {
		return errNoKey
	}
	delete(s.objects, key)
	return nil
}

// Seed stores body under key as an earlier run would have left it, without
// counting a call.
func (s *Store) Seed(key string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[key] = slices.Clone(body)
}

// Object returns what is stored under key now.
func (s *Store) Object(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[key]
	return slices.Clone(b), ok
}

// Objects returns a copy of everything stored now, by key.
func (s *Store) Objects() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.objects))
	for k, v := range s.objects {
		out[k] = slices.Clone(v)
	}
	return out
}

// Puts returns the bodies put so far, in order.
func (s *Store) Puts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.puts)
}

// Calls returns the calls made so far.
func (s *Store) Calls() Calls {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

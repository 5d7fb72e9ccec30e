package console

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// maxCacheEntries bounds the cache: past it, expired entries go, and if that is not
// enough, everything (a console has a few dozen keys in use at a time).
const maxCacheEntries = 512

// cache keeps what a page read from AWS for ttl, and lets concurrent requests for
// the same key share one read. Safe for concurrent use.
type cache struct {
	ttl   time.Duration
	now   func() time.Time
	group singleflight.Group

	mu      sync.Mutex
	entries map[string]cacheEntry // guarded by mu
}

type cacheEntry struct {
	value any
	at    time.Time
}

func newCache(ttl time.Duration, now func() time.Time) *cache {
	return &cache{ttl: ttl, now: now, entries: map[string]cacheEntry{}}
}

// cached returns key's value, read by load when absent, older than the TTL or when
// fresh is asked for, and the time it was read.
func cached[T any](ctx context.Context, c *cache, key string, fresh bool, load func(context.Context) (T, error)) (T, time.Time, error) {
	if !fresh {
		c.mu.Lock()
		e, ok := c.entries[key]
		c.mu.Unlock()
		if ok && c.now().Sub(e.at) < c.ttl {
			return e.value.(T), e.at, nil
		}
	}
	v, err, _ := c.group.Do(key, func() (any, error) {
		v, err := load(ctx)
		if err != nil {
			return nil, err
		}
		e := cacheEntry{value: v, at: c.now()}
		c.put(key, e)
		return e, nil
	})
	if err != nil {
		var zero T
		return zero, time.Time{}, err
	}
	e := v.(cacheEntry)
	return e.value.(T), e.at, nil
}

func (c *cache) put(key string, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCacheEntries {
		for k, old := range c.entries {
			if c.now().Sub(old.at) >= c.ttl {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCacheEntries {
			clear(c.entries)
		}
	}
	c.entries[key] = e
}

// forget drops the keys with prefix (after an action changed what they show).
func (c *cache) forget(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			delete(c.entries, k)
		}
	}
}

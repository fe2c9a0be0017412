// Package ttlcache is a cache of a bounded number of entries, each kept
// for a fixed time after it was added. It is safe for concurrent use.
//
// When the bound needs room, the entry least recently added or got goes
// (a Get does not extend an entry's time), expired entries at that end
// first. An entry got just before it expired may so outlast a live one
// added before it, until the bound reaches it: the cost of one place.
//
// It is golang-lru's simplelru with an expiry time kept beside each value,
// rather than golang-lru's own expirable.LRU: that one starts a goroutine
// per cache that nothing can stop (v2.0.7, the latest), and the gateway
// builds its caches again on every configuration load, so each load
// leaked one goroutine and, through it, the cache. Here an expired entry
// is dropped when it is looked up, or when the bound evicts it; until
// then it counts toward the bound, which is what bounds the memory.
package ttlcache

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Cache holds up to a fixed number of entries, each for a fixed time.
type Cache[K comparable, V any] struct {
	mu      sync.Mutex
	entries *simplelru.LRU[K, entry[V]]
	size    int
	ttl     time.Duration
	// now is the clock, time.Now but in tests.
	now func() time.Time
}

// entry is a value and when it expires.
type entry[V any] struct {
	value   V
	expires time.Time
}

// New returns a cache of at most size entries (size must be positive),
// each kept for ttl after it was last added.
func New[K comparable, V any](size int, ttl time.Duration) *Cache[K, V] {
	entries, err := simplelru.NewLRU[K, entry[V]](size, nil)
	if err != nil {
		panic("ttlcache: " + err.Error()) // a size of 0 or less: the caller's mistake
	}
	return &Cache[K, V]{entries: entries, size: size, ttl: ttl, now: time.Now}
}

// SetClock replaces the clock the cache reads (time.Now), for the tests
// of code that keeps one.
func (c *Cache[K, V]) SetClock(now func() time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}

// Add adds or replaces the value of key, for ttl from now, evicting the
// least recently used entry when the cache is full.
func (c *Cache[K, V]) Add(key K, value V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(key, value, c.ttl)
}

// Get returns the value of key, if it is there and has not expired, and
// marks it recently used (its time unchanged).
func (c *Cache[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries.Get(key)
	if !ok || c.expired(key, e) {
		var none V
		return none, false
	}
	return e.value, true
}

// Contains reports whether key is there and has not expired.
func (c *Cache[K, V]) Contains(key K) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries.Peek(key)
	return ok && !c.expired(key, e)
}

// AddIfAbsent adds key with value unless it is there and has not expired,
// in one step, and reports whether it added it.
func (c *Cache[K, V]) AddIfAbsent(key K, value V) bool {
	return c.AddIfAbsentFor(key, value, c.ttl)
}

// AddIfAbsentFor is AddIfAbsent keeping the entry for ttl rather than the
// cache's own.
func (c *Cache[K, V]) AddIfAbsentFor(key K, value V, ttl time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries.Peek(key); ok && !c.expired(key, e) {
		return false
	}
	c.add(key, value, ttl)
	return true
}

// AddIfAbsentWithin is AddIfAbsentFor that gives no live entry's place
// away: with the cache full of entries that have not expired (as far as
// the least recently used end shows), it adds nothing and reports full.
// For a cache whose entries must not be forgotten before their time (a
// one-time key claimed, which could be claimed again).
func (c *Cache[K, V]) AddIfAbsentWithin(key K, value V, ttl time.Duration) (added, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries.Peek(key); ok && !c.expired(key, e) {
		return false, false
	}
	now := c.now()
	for c.entries.Len() >= c.size {
		oldest, e, ok := c.entries.GetOldest()
		if !ok || now.Before(e.expires) {
			return false, true
		}
		c.entries.Remove(oldest)
	}
	c.entries.Add(key, entry[V]{value: value, expires: now.Add(ttl)})
	return true, false
}

// add adds key for ttl, first dropping the expired entries at the least
// recently used end when the cache is full. c.mu is held.
func (c *Cache[K, V]) add(key K, value V, ttl time.Duration) {
	now := c.now()
	if !c.entries.Contains(key) && c.entries.Len() >= c.size {
		for {
			oldest, e, ok := c.entries.GetOldest()
			if !ok || now.Before(e.expires) {
				break
			}
			c.entries.Remove(oldest)
		}
	}
	c.entries.Add(key, entry[V]{value: value, expires: now.Add(ttl)})
}

// Remove removes key, and reports whether it was there and had not
// expired.
func (c *Cache[K, V]) Remove(key K) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries.Peek(key)
	return ok && !c.expired(key, e) && c.entries.Remove(key)
}

// Len returns how many entries the cache holds, expired ones not yet
// dropped included.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries.Len()
}

// expired reports whether e, the entry of key, has expired, and drops it
// if so. c.mu is held.
func (c *Cache[K, V]) expired(key K, e entry[V]) bool {
	if c.now().Before(e.expires) {
		return false
	}
	c.entries.Remove(key)
	return true
}

package ratelimit

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// DefaultMaxKeys is how many buckets a Local keeps when LocalConfig.MaxKeys
// is 0.
const DefaultMaxKeys = 100_000

// LocalConfig configures a Local.
type LocalConfig struct {
	// MaxKeys bounds how many buckets (one per key and rule) are kept; 0
	// means DefaultMaxKeys. Beyond it, the least recently used bucket is
	// dropped, and its key starts again with a full burst. A bucket takes
	// a few hundred bytes plus its key.
	MaxKeys int
	// Now tells the time; nil means time.Now. Tests set it to step time
	// by hand.
	Now func() time.Time
}

// Local is a Limiter that counts calls in this process, so each gateway
// replica enforces every rule on its own. It keeps one token bucket
// (a rate.Limiter) per key and rule, at most MaxKeys of them. It is safe
// for concurrent use.
type Local struct {
	now func() time.Time

	// mu guards buckets and makes each decision, with the Remaining or
	// RetryAfter that comes with it, one step.
	mu      sync.Mutex
	buckets *simplelru.LRU[bucketKey, *rate.Limiter]
}

// bucketKey names one bucket: the rule is part of it so that one key under
// two rules is counted twice, once against each.
type bucketKey struct {
	rule Rule
	key  string
}

// NewLocal returns a Local configured by config.
func NewLocal(config LocalConfig) (*Local, error) {
	maxKeys := config.MaxKeys
	switch {
	case maxKeys < 0:
		return nil, fmt.Errorf("rate limit max keys must not be negative, got %d", maxKeys)
	case maxKeys == 0:
		maxKeys = DefaultMaxKeys
	}
	buckets, err := simplelru.NewLRU[bucketKey, *rate.Limiter](maxKeys, nil)
	if err != nil {
		return nil, fmt.Errorf("creating rate limit buckets: %w", err)
	}
	now := config.Now
	if now == nil {
		now = time.Now
	}
	return &Local{now: now, buckets: buckets}, nil
}

// Allow implements Limiter. It returns an error only for an invalid rule.
func (l *Local) Allow(_ context.Context, key string, rule Rule) (Result, error) {
	rule, err := rule.effective()
	if err != nil {
		return Result{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	bucket := l.bucket(bucketKey{rule: rule, key: key})
	if bucket.AllowN(now, 1) {
		return Result{Allowed: true, Remaining: int(bucket.TokensAt(now))}, nil
	}
	return Result{RetryAfter: untilToken(bucket, now)}, nil
}

// Check implements Limiter. It returns an error only for an invalid rule.
func (l *Local) Check(_ context.Context, key string, rule Rule) (Result, error) {
	rule, err := rule.effective()
	if err != nil {
		return Result{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := bucketKey{rule: rule, key: key}
	bucket, ok := l.buckets.Peek(k)
	if !ok {
		// A new bucket starts full.
		return Result{Allowed: true, Remaining: rule.Burst - 1}, nil
	}
	if tokens := bucket.TokensAt(now); tokens >= 1 {
		return Result{Allowed: true, Remaining: int(tokens) - 1}, nil
	}
	return Result{RetryAfter: untilToken(bucket, now)}, nil
}

// bucket returns the bucket named by k, creating it full if it is new.
// l.mu must be held.
func (l *Local) bucket(k bucketKey) *rate.Limiter {
	if bucket, ok := l.buckets.Get(k); ok {
		return bucket
	}
	perSecond := float64(k.rule.Events) / k.rule.Per.Seconds()
	bucket := rate.NewLimiter(rate.Limit(perSecond), k.rule.Burst)
	l.buckets.Add(k, bucket)
	return bucket
}

// untilToken returns how long from now until bucket, which holds less than
// one token, holds one. It rounds up, so that a call made that much later
// is allowed, and caps at the longest Duration (for periods of centuries).
func untilToken(bucket *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - bucket.TokensAt(now)
	nanoseconds := math.Ceil(missing / float64(bucket.Limit()) * float64(time.Second))
	if nanoseconds >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(nanoseconds)
}

// Interface guard
var _ Limiter = (*Local)(nil)

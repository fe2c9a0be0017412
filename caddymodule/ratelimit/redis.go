package ratelimit

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Redis is a Limiter that counts calls in Redis, so that gateway replicas
// sharing one Redis enforce each rule once between them. It runs
// redis_rate's GCRA script, which with Burst as its burst allows exactly
// what Local's token bucket allows, timed by the Redis server's clock
// alone. A key lives in Redis only until its bucket would be full again.
//
// When Redis cannot be reached, Allow returns the error: the caller must
// refuse the call (fail closed), never let it through unlimited. It is safe
// for concurrent use.
type Redis struct {
	limiter *redis_rate.Limiter
	prefix  string
}

// NewRedis returns a Redis limiter that uses client, which the caller owns
// and closes. Its Redis keys are "rate:" (added by redis_rate) followed by
// prefix (such as "mcpgate:ratelimit:"), the effective rule (as
// "30/1m0s/30") and, after a colon, the caller's key; a Redis ACL must
// allow the "rate:" + prefix pattern.
func NewRedis(client *redis.Client, prefix string) *Redis {
	return &Redis{limiter: redis_rate.NewLimiter(client), prefix: prefix}
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, rule Rule) (Result, error) {
	rule, err := rule.effective()
	if err != nil {
		return Result{}, err
	}
	limit := redis_rate.Limit{Rate: rule.Events, Period: rule.Per, Burst: rule.Burst}
	res, err := r.limiter.Allow(ctx, r.redisKey(key, rule), limit)
	if err != nil {
		return Result{}, fmt.Errorf("checking rate limit in redis: %w", err)
	}
	if res.Allowed == 0 {
		// redis_rate truncates the wait to whole nanoseconds, and Redis's
		// clock ticks in microseconds: round up to the next tick so that
		// the wait is positive and a call that much later is allowed.
		return Result{RetryAfter: res.RetryAfter.Truncate(time.Microsecond) + time.Microsecond}, nil
	}
	return Result{Allowed: true, Remaining: remaining(rule, res.ResetAfter)}, nil
}

// Check implements Limiter: redis_rate's GCRA with a cost of 0 reads the
// bucket without taking from it.
func (r *Redis) Check(ctx context.Context, key string, rule Rule) (Result, error) {
	rule, err := rule.effective()
	if err != nil {
		return Result{}, err
	}
	limit := redis_rate.Limit{Rate: rule.Events, Period: rule.Per, Burst: rule.Burst}
	res, err := r.limiter.AllowN(ctx, r.redisKey(key, rule), limit, 0)
	if err != nil {
		return Result{}, fmt.Errorf("checking rate limit in redis: %w", err)
	}
	// ResetAfter is how long until the bucket is full again: it holds
	// Burst less that many emission intervals (read as remaining reads
	// it, a tick early, past redis_rate's floating-point noise). A call
	// now would add one interval to it.
	interval := rule.Per / time.Duration(rule.Events)
	missing := res.ResetAfter - time.Duration(rule.Burst-1)*interval
	if missing <= time.Microsecond {
		return Result{Allowed: true, Remaining: remaining(rule, res.ResetAfter+interval)}, nil
	}
	return Result{RetryAfter: missing.Truncate(time.Microsecond) + time.Microsecond}, nil
}

// remaining returns how many whole tokens a bucket under rule holds after
// an allowed call, given how long until it is full again: Burst less
// resetAfter in emission intervals (Per/Events), rounded up.
//
// redis_rate's own Remaining is that division done in the script, in
// floating point on seconds since 2017, and a fresh key's first call lands
// tens of nanoseconds either side of a whole token: for 10/1s it reports 8,
// not 9, after the first call. ResetAfter carries the same noise, far less
// than Redis's microsecond tick, so reading it a tick early lands on the
// right side; it over-reports only a token due within the microsecond.
// An allowed call has taken a token, whatever the noise.
func remaining(rule Rule, resetAfter time.Duration) int {
	interval := float64(rule.Per) / float64(rule.Events)
	used := int(math.Ceil(float64(resetAfter-time.Microsecond) / interval))
	return rule.Burst - max(used, 1)
}

// redisKey is key's name in Redis under rule, less redis_rate's own
// prefix. The rule has no colon, so the first colon after the prefix ends
// it and no two pairs of rule and key share a name.
func (r *Redis) redisKey(key string, rule Rule) string {
	return fmt.Sprintf("%s%d/%s/%d:%s", r.prefix, rule.Events, rule.Per, rule.Burst, key)
}

// Interface guard
var _ Limiter = (*Redis)(nil)

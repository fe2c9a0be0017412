package ratelimit

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/redistest"
)

// limiters returns, by name, a constructor of each Limiter for tests that
// both must pass. Each call gives a limiter with buckets of its own. The
// Local's clock stands still; Redis's runs, so rules there must refill
// slowly enough that a test never sees a token come back.
func limiters(t *testing.T) map[string]func(t *testing.T) Limiter {
	t.Helper()
	client := newRedisClient(t, redistest.Start(t))
	var prefixes int
	return map[string]func(t *testing.T) Limiter{
		"local": func(t *testing.T) Limiter {
			t.Helper()
			return newTestLocal(t, LocalConfig{Now: (&clock{}).Now})
		},
		"redis": func(t *testing.T) Limiter {
			t.Helper()
			prefixes++
			return NewRedis(client, fmt.Sprintf("test%d:", prefixes))
		},
	}
}

// newRedisClient returns a client of the Redis at addr, closed when the
// test ends.
func newRedisClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	return client
}

// allowOK calls l.Allow and fails the test on an error.
func allowOK(t testing.TB, l Limiter, key string, rule Rule) Result {
	t.Helper()
	res, err := l.Allow(t.Context(), key, rule)
	if err != nil {
		t.Fatalf("Allow(%q, %+v) error: %v", key, rule, err)
	}
	return res
}

// spendBurst makes burst calls under key, each of which must be allowed
// with one token fewer left than the one before.
func spendBurst(t testing.TB, l Limiter, key string, rule Rule, burst int) {
	t.Helper()
	for i := range burst {
		res := allowOK(t, l, key, rule)
		want := Result{Allowed: true, Remaining: burst - 1 - i}
		if res != want {
			t.Fatalf("call %d of a burst of %d under %+v = %+v, want %+v", i+1, burst, rule, res, want)
		}
	}
}

func TestLimiterBurst(t *testing.T) {
	tests := []struct {
		name      string
		rule      Rule
		wantBurst int
	}{
		{"explicit burst", Rule{Events: 5, Per: time.Hour, Burst: 3}, 3},
		{"default burst is events", Rule{Events: 4, Per: time.Hour}, 4},
		{"burst above events", Rule{Events: 2, Per: time.Hour, Burst: 5}, 5},
		{"burst of one", Rule{Events: 10, Per: time.Hour, Burst: 1}, 1},
		// 1h/11 is no binary fraction of a second: redis_rate's own
		// Remaining says 2 after the first call (see remaining).
		{"interval not a binary fraction", Rule{Events: 11, Per: time.Hour, Burst: 4}, 4},
	}
	for name, newLimiter := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					l := newLimiter(t)
					spendBurst(t, l, "alice/search", tt.rule, tt.wantBurst)
					// A token comes back every interval; RetryAfter may be
					// rounded up by up to a microsecond.
					limit := tt.rule.Per/time.Duration(tt.rule.Events) + time.Microsecond
					for range 2 {
						res := allowOK(t, l, "alice/search", tt.rule)
						if res.Allowed || res.Remaining != 0 || res.RetryAfter <= 0 || res.RetryAfter > limit {
							t.Errorf("call after a burst of %d = %+v, want refused with 0 remaining and 0 < RetryAfter <= %s",
								tt.wantBurst, res, limit)
						}
					}
				})
			}
		})
	}
}

func TestLimiterCountsKeysAndRulesApart(t *testing.T) {
	spent := Rule{Events: 1, Per: time.Hour, Burst: 1}
	tests := []struct {
		name        string
		key         string
		rule        Rule
		wantAllowed bool
	}{
		{"same key and rule", "alice/search", spent, false},
		{"same rule spelling the default burst", "alice/search", Rule{Events: 1, Per: time.Hour}, false},
		{"another key", "bob/search", spent, true},
		{"a key that extends it", "alice/search/x", spent, true},
		{"another events", "alice/search", Rule{Events: 2, Per: 2 * time.Hour, Burst: 1}, true},
		{"another period", "alice/search", Rule{Events: 1, Per: 2 * time.Hour, Burst: 1}, true},
		{"another burst", "alice/search", Rule{Events: 1, Per: time.Hour, Burst: 2}, true},
	}
	for name, newLimiter := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					l := newLimiter(t)
					spendBurst(t, l, "alice/search", spent, 1)
					if res := allowOK(t, l, tt.key, tt.rule); res.Allowed != tt.wantAllowed {
						t.Errorf("after spending alice/search under %+v, Allow(%q, %+v) = %+v, want allowed %v",
							spent, tt.key, tt.rule, res, tt.wantAllowed)
					}
				})
			}
		})
	}
}

func TestLimiterRejectsInvalidRule(t *testing.T) {
	for name, newLimiter := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			l := newLimiter(t)
			rule := Rule{Events: 0, Per: time.Minute}
			res, err := l.Allow(t.Context(), "alice/search", rule)
			if err == nil || res != (Result{}) {
				t.Errorf("Allow under %+v = %+v, %v; want a zero Result and an error", rule, res, err)
			}
		})
	}
}

// TestLimiterCheckCountsNothing: Check answers what Allow would, for a
// fresh bucket, one with tokens left and a spent one, and counts nothing:
// checking any number of times leaves every token to Allow.
func TestLimiterCheckCountsNothing(t *testing.T) {
	rule := Rule{Events: 3, Per: time.Hour}
	for name, newLimiter := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			l := newLimiter(t)
			for want := 3; want > 0; want-- {
				for range 3 {
					res, err := l.Check(t.Context(), "k", rule)
					if err != nil || !res.Allowed || res.Remaining != want-1 {
						t.Fatalf("Check with %d tokens left = %+v, %v; want allowed with %d remaining", want, res, err, want-1)
					}
				}
				if res := allowOK(t, l, "k", rule); !res.Allowed {
					t.Fatalf("Allow after checks with %d tokens left: %+v", want, res)
				}
			}
			res, err := l.Check(t.Context(), "k", rule)
			limit := rule.Per/time.Duration(rule.Events) + time.Microsecond
			if err != nil || res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > limit {
				t.Errorf("Check of a spent bucket = %+v, %v; want refused with 0 < RetryAfter <= %s", res, err, limit)
			}
		})
	}
}

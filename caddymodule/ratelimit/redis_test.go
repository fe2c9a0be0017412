package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/redistest"
)

// replicas returns n Redis limiters, each with a client of its own, as n
// gateway replicas sharing the Redis at addr would have.
func replicas(t *testing.T, addr string, n int) []*Redis {
	t.Helper()
	limiters := make([]*Redis, n)
	for i := range limiters {
		limiters[i] = NewRedis(newRedisClient(t, addr), "mcpgate:ratelimit:")
	}
	return limiters
}

func TestRedisReplicasShareOneLimit(t *testing.T) {
	addr := redistest.Start(t)
	rule := Rule{Events: 5, Per: time.Hour, Burst: 3}

	t.Run("in turn", func(t *testing.T) {
		replicas := replicas(t, addr, 2)
		for i := range rule.Burst {
			res := allowOK(t, replicas[i%2], "alice/search", rule)
			if want := (Result{Allowed: true, Remaining: rule.Burst - 1 - i}); res != want {
				t.Fatalf("call %d, on replica %d = %+v, want %+v", i+1, i%2, res, want)
			}
		}
		for r, replica := range replicas {
			if res := allowOK(t, replica, "alice/search", rule); res.Allowed || res.RetryAfter <= 0 {
				t.Errorf("call on replica %d after the shared burst = %+v, want refused with a positive RetryAfter", r, res)
			}
		}
	})

	t.Run("at once", func(t *testing.T) {
		const calls = 20
		replicas := replicas(t, addr, 2)
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				res, err := replicas[i%2].Allow(t.Context(), "bob/search", rule)
				if err != nil {
					t.Errorf("Allow: %v", err)
				}
				if res.Allowed {
					allowed.Add(1)
				}
			})
		}
		wg.Wait()
		if got := allowed.Load(); got != int64(rule.Burst) {
			t.Errorf("calls allowed of %d at once on two replicas = %d, want the burst %d", calls, got, rule.Burst)
		}
	})
}

func TestRedisAllowsAfterRetryAfter(t *testing.T) {
	replicas := replicas(t, redistest.Start(t), 2)
	// A token comes back every 100ms.
	rule := Rule{Events: 10, Per: time.Second, Burst: 2}
	for i := range rule.Burst {
		if res := allowOK(t, replicas[i%2], "alice/search", rule); !res.Allowed {
			t.Fatalf("call %d of the burst = %+v, want allowed", i+1, res)
		}
	}
	res := allowOK(t, replicas[0], "alice/search", rule)
	if res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > 100*time.Millisecond+time.Microsecond {
		t.Fatalf("call after the burst = %+v, want refused with 0 < RetryAfter <= 100ms", res)
	}
	time.Sleep(res.RetryAfter)
	if res := allowOK(t, replicas[1], "alice/search", rule); !res.Allowed {
		t.Errorf("call on the other replica RetryAfter later = %+v, want allowed", res)
	}
}

func TestRedisKeys(t *testing.T) {
	addr := redistest.Start(t)
	client := newRedisClient(t, addr)
	l := NewRedis(client, "mcpgate:ratelimit:")
	allowOK(t, l, "alice/search", Rule{Events: 30, Per: time.Minute})
	allowOK(t, l, "alice/search", Rule{Events: 1, Per: time.Hour, Burst: 5})
	// wantTTL is how long until the bucket is full again; redis_rate
	// rounds the expiry up to whole seconds.
	tests := []struct {
		key     string
		wantTTL time.Duration
	}{
		{"rate:mcpgate:ratelimit:30/1m0s/30:alice/search", 2 * time.Second},
		{"rate:mcpgate:ratelimit:1/1h0m0s/5:alice/search", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			ttl, err := client.TTL(t.Context(), tt.key).Result()
			if err != nil {
				t.Fatalf("TTL %s: %v", tt.key, err)
			}
			if ttl <= 0 || ttl > tt.wantTTL+time.Second {
				t.Errorf("TTL of %s = %s, want it to expire within a second after %s, when its bucket is full again",
					tt.key, ttl, tt.wantTTL)
			}
		})
	}
	keys, err := client.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	if len(keys) != len(tests) {
		t.Errorf("keys in Redis = %q, want only the %d above", keys, len(tests))
	}
}

func TestRedisDownFailsClosed(t *testing.T) {
	// No retries: the call fails at the first refused connection.
	client := redis.NewClient(&redis.Options{Addr: redistest.Start(t), MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	l := NewRedis(client, "mcpgate:ratelimit:")
	rule := Rule{Events: 30, Per: time.Minute}
	allowOK(t, l, "alice/search", rule)
	// The server exits before it answers, so SHUTDOWN's error says
	// nothing; the refused call below shows that it stopped.
	_ = client.ShutdownNoSave(t.Context()).Err()
	res, err := l.Allow(t.Context(), "alice/search", rule)
	if err == nil || res.Allowed {
		t.Errorf("Allow with Redis stopped = %+v, %v; want refused with an error", res, err)
	}
}

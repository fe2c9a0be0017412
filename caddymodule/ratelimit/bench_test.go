package ratelimit

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/redistest"
)

// BenchmarkAllow measures Allow from parallel callers spread over 1024
// keys under a rule loose enough that most calls are allowed.
func BenchmarkAllow(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("user%d/search", i)
	}
	rule := Rule{Events: 1000, Per: time.Second}
	limiters := map[string]func(b *testing.B) Limiter{
		"local": func(b *testing.B) Limiter { return newTestLocal(b, LocalConfig{}) },
		"redis": func(b *testing.B) Limiter {
			return NewRedis(newRedisClient(b, redistest.Start(b)), "mcpgate:ratelimit:")
		},
	}
	for name, newLimiter := range limiters {
		b.Run(name, func(b *testing.B) {
			l := newLimiter(b)
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Allow(b.Context(), keys[next.Add(1)%int64(len(keys))], rule); err != nil {
						b.Errorf("Allow: %v", err)
						return
					}
				}
			})
		})
	}
}

package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a time that moves only when a test advances it.
type clock struct{ now time.Time }

// Now returns the clock's time.
func (c *clock) Now() time.Time { return c.now }

// advance moves the clock d forward.
func (c *clock) advance(d time.Duration) { c.now = c.now.Add(d) }

// newTestLocal returns a Local configured by config, failing the test if
// it cannot.
func newTestLocal(t testing.TB, config LocalConfig) *Local {
	t.Helper()
	l, err := NewLocal(config)
	if err != nil {
		t.Fatalf("NewLocal(%+v): %v", config, err)
	}
	return l
}

func TestLocalRetryAfterIsExact(t *testing.T) {
	tests := []struct {
		name  string
		rule  Rule
		burst int
		want  time.Duration
	}{
		{"30/1m burst 5", Rule{Events: 30, Per: time.Minute, Burst: 5}, 5, 2 * time.Second},
		{"1/1h", Rule{Events: 1, Per: time.Hour}, 1, time.Hour},
		{"3/1s rounds up", Rule{Events: 3, Per: time.Second}, 3, 333333334 * time.Nanosecond},
		{"7/1m burst 4 rounds up", Rule{Events: 7, Per: time.Minute, Burst: 4}, 4, 8571428572 * time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{}
			l := newTestLocal(t, LocalConfig{Now: c.Now})
			spendBurst(t, l, "alice/search", tt.rule, tt.burst)
			if res, want := allowOK(t, l, "alice/search", tt.rule), (Result{RetryAfter: tt.want}); res != want {
				t.Fatalf("call after the burst = %+v, want %+v", res, want)
			}
			c.advance(tt.want)
			if res, want := allowOK(t, l, "alice/search", tt.rule), (Result{Allowed: true}); res != want {
				t.Errorf("call at RetryAfter = %+v, want %+v", res, want)
			}
		})
	}
}

func TestLocalRefill(t *testing.T) {
	rule := Rule{Events: 30, Per: time.Minute, Burst: 5}
	c := &clock{}
	l := newTestLocal(t, LocalConfig{Now: c.Now})
	spendBurst(t, l, "alice/search", rule, 5)
	// The steps run in order, each from where the one before left the
	// bucket; a token comes back every 2s.
	steps := []struct {
		name    string
		advance time.Duration
		want    Result
	}{
		{"half a token back", time.Second, Result{RetryAfter: time.Second}},
		{"one token back", time.Second, Result{Allowed: true, Remaining: 0}},
		{"no time passed", 0, Result{RetryAfter: 2 * time.Second}},
		{"three tokens back", 6 * time.Second, Result{Allowed: true, Remaining: 2}},
		{"full after an hour, not more", time.Hour, Result{Allowed: true, Remaining: 4}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			c.advance(step.advance)
			if res := allowOK(t, l, "alice/search", rule); res != step.want {
				t.Errorf("call %s later = %+v, want %+v", step.advance, res, step.want)
			}
		})
	}
}

func TestLocalEvictsLeastRecentlyUsed(t *testing.T) {
	rule := Rule{Events: 1, Per: time.Hour}
	l := newTestLocal(t, LocalConfig{MaxKeys: 2, Now: (&clock{}).Now})
	spendBurst(t, l, "a", rule, 1)
	spendBurst(t, l, "b", rule, 1)
	allowOK(t, l, "a", rule) // a is now more recently used than b
	spendBurst(t, l, "c", rule, 1)
	if got := l.buckets.Len(); got != 2 {
		t.Errorf("buckets kept with MaxKeys 2 = %d, want 2", got)
	}
	// a is checked first, so that checking b (which comes back as new)
	// does not evict it.
	tests := []struct {
		key         string
		wantAllowed bool
	}{
		{"a", false},
		{"b", true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if res := allowOK(t, l, tt.key, rule); res.Allowed != tt.wantAllowed {
				t.Errorf("Allow(%q) after c took the place of the least recently used = %+v, want allowed %v",
					tt.key, res, tt.wantAllowed)
			}
		})
	}
}

func TestNewLocalRejectsNegativeMaxKeys(t *testing.T) {
	if l, err := NewLocal(LocalConfig{MaxKeys: -1}); err == nil {
		t.Errorf("NewLocal with MaxKeys -1 = %v, want an error", l)
	}
}

func TestLocalConcurrentCalls(t *testing.T) {
	const goroutines, calls = 8, 40
	shared := Rule{Events: 1, Per: time.Hour, Burst: 100}
	own := Rule{Events: 1, Per: time.Hour, Burst: 10}
	l := newTestLocal(t, LocalConfig{Now: (&clock{}).Now})
	var sharedAllowed atomic.Int64
	ownAllowed := make([]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range calls {
				if res, err := l.Allow(t.Context(), "shared", shared); err == nil && res.Allowed {
					sharedAllowed.Add(1)
				}
				if res, err := l.Allow(t.Context(), fmt.Sprint("own", g), own); err == nil && res.Allowed {
					ownAllowed[g]++
				}
			}
		})
	}
	wg.Wait()
	if got := sharedAllowed.Load(); got != int64(shared.Burst) {
		t.Errorf("calls allowed under one key from %d goroutines = %d, want the burst %d", goroutines, got, shared.Burst)
	}
	for g, got := range ownAllowed {
		if got != own.Burst {
			t.Errorf("calls allowed under goroutine %d's own key = %d, want the burst %d", g, got, own.Burst)
		}
	}
}

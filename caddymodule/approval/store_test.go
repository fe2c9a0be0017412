package approval

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/redistest"
)

// changeLog records the ids a store reports changed.
type changeLog struct {
	mu  sync.Mutex
	ids []string
}

func (c *changeLog) record(id string) {
	c.mu.Lock()
	c.ids = append(c.ids, id)
	c.mu.Unlock()
}

func (c *changeLog) saw(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, got := range c.ids {
		if got == id {
			return true
		}
	}
	return false
}

// storeKinds make each kind of store for the contract tests.
var storeKinds = []struct {
	name string
	open func(t *testing.T, onChange ChangeFunc) Store
}{
	{"memory", func(t *testing.T, onChange ChangeFunc) Store { return NewMemoryStore(onChange) }},
	{"redis", func(t *testing.T, onChange ChangeFunc) Store {
		s, err := NewRedisStore(redistest.Start(t), "", onChange)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

func pendingApproval(binding string, now time.Time, ttl time.Duration) *Approval {
	return &Approval{ID: newID(), Binding: binding, Server: "s", Tool: "t", Arguments: []byte(`{}`),
		RequestedAt: now, ExpiresAt: now.Add(ttl), State: Pending}
}

// TestStoreContract runs the same story against every store: one live
// approval per binding (found by Standing too), first decision wins, a decision is used once,
// expiry is found, webhook-ids are claimed once, and every change is told.
func TestStoreContract(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			ctx := context.Background()
			changes := new(changeLog)
			store := kind.open(t, changes.record)
			now := time.Now()

			first := pendingApproval("b1", now, time.Minute)
			got, created, err := store.Create(ctx, first, now)
			if err != nil || !created || got.ID != first.ID {
				t.Fatalf("Create: got %v created %v err %v, want the new approval", got, created, err)
			}
			second := pendingApproval("b1", now, time.Minute)
			if got, err := store.Standing(ctx, second, now); err != nil || got.ID != first.ID {
				t.Errorf("Standing with a live binding: %v, %v; want the first approval %s", got, err, first.ID)
			}
			if got, err := store.Standing(ctx, pendingApproval("b-none", now, time.Minute), now); !errors.Is(err, ErrNotFound) {
				t.Errorf("Standing with a binding of no approval: %v, %v; want ErrNotFound", got, err)
			}
			got, created, err = store.Create(ctx, second, now)
			if err != nil || created || got.ID != first.ID {
				t.Fatalf("Create with a live binding: got id %v created %v err %v, want the first approval %s", got, created, err, first.ID)
			}

			approve := func(a *Approval) error { return a.decide(Approved, Decider{ID: "alice"}, "ok", now, time.Minute) }
			if _, err := store.Update(ctx, first.ID, approve); err != nil {
				t.Fatalf("approving: %v", err)
			}
			if _, err := store.Update(ctx, first.ID, approve); !errors.Is(err, ErrConflict) {
				t.Errorf("second decision: got %v, want ErrConflict", err)
			}
			if _, err := store.Update(ctx, "apr_unknown", approve); !errors.Is(err, ErrNotFound) {
				t.Errorf("unknown id: got %v, want ErrNotFound", err)
			}
			// Approved and unused, it still stands for the binding.
			if got, created, _ := store.Create(ctx, pendingApproval("b1", now, time.Minute), now); created || got.ID != first.ID {
				t.Errorf("an approved, unused approval should still stand for its binding; got %s (created %v)", got.ID, created)
			}
			use := func(a *Approval) error { return a.deliver(now) }
			if _, err := store.Update(ctx, first.ID, use); err != nil {
				t.Fatalf("using the approval: %v", err)
			}
			if _, err := store.Update(ctx, first.ID, use); !errors.Is(err, ErrConflict) {
				t.Errorf("using it twice: got %v, want ErrConflict", err)
			}
			third := pendingApproval("b1", now, time.Minute)
			if got, created, _ := store.Create(ctx, third, now); !created || got.ID != third.ID {
				t.Errorf("after use, the binding should take a new approval; got %s (created %v)", got.ID, created)
			}

			expiring := pendingApproval("b2", now.Add(-2*time.Second), time.Second)
			if _, _, err := store.Create(ctx, expiring, now.Add(-2*time.Second)); err != nil {
				t.Fatal(err)
			}
			due, err := store.Due(ctx, now)
			if err != nil || len(due) != 1 || due[0] != expiring.ID {
				t.Errorf("Due = %v (%v), want [%s]", due, err, expiring.ID)
			}
			if n, err := store.CountPending(ctx); err != nil || n != 2 {
				t.Errorf("CountPending = %d (%v), want 2", n, err)
			}
			list, err := store.List(ctx)
			if err != nil || len(list) != 3 {
				t.Errorf("List gave %d approvals (%v), want 3", len(list), err)
			}

			fresh, err := store.Claim(ctx, "msg_1", time.Minute)
			if err != nil || !fresh {
				t.Errorf("first Claim = %v (%v), want fresh", fresh, err)
			}
			if fresh, _ := store.Claim(ctx, "msg_1", time.Minute); fresh {
				t.Error("a second Claim of the same key was fresh")
			}

			waitFor(t, func() bool { return changes.saw(first.ID) && changes.saw(third.ID) },
				"the store did not tell of every change")
		})
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool, failure string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRedisPendingIndexWithoutRecord: a pending id whose approval Redis
// lost (evicted, or forgotten while no gateway swept) is dropped from the
// pending index by the next sweep, rather than found due, and counted
// pending, for ever.
func TestRedisPendingIndexWithoutRecord(t *testing.T) {
	address := redistest.Start(t)
	s, err := NewRedisStore(address, "", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	now := time.Now()
	a := pendingApproval("lost", now.Add(-time.Minute), time.Millisecond)
	if _, _, err := s.Create(ctx, a, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	opts, err := RedisOptions(address)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	if err := client.Del(ctx, "mcpgate:approval:"+a.ID).Err(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if due, err := s.Due(ctx, now); err != nil || len(due) != 0 {
			t.Errorf("due: %v (%v); want none: the approval is gone", due, err)
		}
	}
	if n, err := s.CountPending(ctx); err != nil || n != 0 {
		t.Errorf("pending: %d (%v); want 0", n, err)
	}
}

// TestRedisDatabase: spellings of one Redis database name it alike, other
// databases apart; how they connect (TLS, password) is named apart.
func TestRedisDatabase(t *testing.T) {
	base, baseConnection, err := RedisDatabase("127.0.0.1:6379")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		address                      string
		sameDatabase, sameConnection bool
	}{
		{"redis://127.0.0.1:6379", true, true},
		{"redis://127.0.0.1:6379/0", true, true},
		{"REDIS://127.0.0.1:6379", true, true},
		{"redis://127.0.0.1:6379/1", false, true},
		{"redis://127.0.0.1:6380", false, true},
		{"redis://alice@127.0.0.1:6379", false, true},
		{"rediss://127.0.0.1:6379", true, false},
		{"redis://:secret@127.0.0.1:6379", true, false},
	}
	for _, tt := range tests {
		database, connection, err := RedisDatabase(tt.address)
		if err != nil {
			t.Errorf("RedisDatabase(%s): %v", tt.address, err)
			continue
		}
		if (database == base) != tt.sameDatabase || (connection == baseConnection) != tt.sameConnection {
			t.Errorf("RedisDatabase(%s) = %q, %q; want the same database as 127.0.0.1:6379: %v, the same connection: %v",
				tt.address, database, connection, tt.sameDatabase, tt.sameConnection)
		}
	}
	if _, _, err := RedisDatabase("redis://%zz"); err == nil {
		t.Error("RedisDatabase of a malformed URL: no error")
	}
}

// TestRedisAddressErrorsHidePassword: an address that does not read is
// refused with an error that does not show its password.
func TestRedisAddressErrorsHidePassword(t *testing.T) {
	for _, address := range []string{
		"rediss://user:s3cret-password@host:notaport",
		"redis://user:s3cret-password@host:6379/notadb",
		"ftp://user:s3cret-password@host:6379",
		"rediss://user:s3cret-password@host:6379/0?dial_timeout=soon",
	} {
		_, err := RedisOptions(address)
		if err == nil {
			t.Errorf("%s: read, want an error", address)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error for a bad address shows its password: %v", err)
		}
	}
}

// TestRedisAddressNamesAServer: an address that names no server (empty,
// as a placeholder that named nothing leaves it; no host; no port, or one
// that is not a port) is refused, not taken for go-redis's default
// localhost:6379.
func TestRedisAddressNamesAServer(t *testing.T) {
	for address, wantErr := range map[string]bool{
		"":                           true,
		" ":                          true,
		":6379":                      true,
		"redis-host":                 true,
		"redis-host:":                true,
		"redis-host:0":               true,
		"redis-host:65536":           true,
		"redis-host:63 79":           true,
		"redis://":                   true,
		"redis://:6379":              true,
		"rediss://:secret@":          true,
		"redis-host:6379":            false,
		"[::1]:6379":                 false,
		"redis://redis-host":         false,
		"rediss://redis-host:6380/2": false,
		"unix:///run/redis.sock":     false,
	} {
		if _, err := RedisOptions(address); (err != nil) != wantErr {
			t.Errorf("RedisOptions(%q): %v; want an error: %v", address, err, wantErr)
		}
	}
}

// TestMemoryStoreClaimsBounded: a memory store keeps at most
// maxMemoryClaims keys claimed; past it, a new key is refused rather than
// a live one forgotten (which could then be claimed again), until one's
// time is up.
func TestMemoryStoreClaimsBounded(t *testing.T) {
	store := NewMemoryStore(nil).(*memoryStore)
	now := time.Now()
	store.claims.SetClock(func() time.Time { return now })
	ctx := context.Background()
	for i := range maxMemoryClaims {
		if fresh, err := store.Claim(ctx, strconv.Itoa(i), time.Hour); err != nil || !fresh {
			t.Fatalf("Claim %d = %v (%v), want fresh", i, fresh, err)
		}
	}
	if fresh, err := store.Claim(ctx, "one more", time.Hour); fresh || !errors.Is(err, ErrTooManyClaims) {
		t.Errorf("a claim past the bound = %v (%v); want ErrTooManyClaims", fresh, err)
	}
	if fresh, err := store.Claim(ctx, "0", time.Hour); fresh || err != nil {
		t.Errorf("the first key claimed again = %v (%v); want it still claimed", fresh, err)
	}
	if n := store.claims.Len(); n > maxMemoryClaims {
		t.Errorf("%d claims kept; want at most %d", n, maxMemoryClaims)
	}
	now = now.Add(2 * time.Hour)
	if fresh, err := store.Claim(ctx, "one more", time.Hour); !fresh || err != nil {
		t.Errorf("a claim once the others' time is up = %v (%v); want fresh", fresh, err)
	}
}

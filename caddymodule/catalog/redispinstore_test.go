package catalog

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/redistest"
)

// TestRedisPinStore checks that pins saved through one catalog are known to
// another catalog (another replica, or a restart) over the same Redis.
func TestRedisPinStore(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	store := NewRedisPinStore(client, "mcpgate:pins:")

	first, err := New(ctx, store)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	v1 := json.RawMessage(`{"name":"echo","description":"v1"}`)
	if err := first.Learn(ctx, "tracker", []json.RawMessage{v1}, first.Generation("tracker")); err != nil {
		t.Fatalf("Learn: %v", err)
	}

	second, err := New(ctx, NewRedisPinStore(client, "mcpgate:pins:"))
	if err != nil {
		t.Fatalf("New over the same Redis: %v", err)
	}
	v2 := json.RawMessage(`{"name":"echo","description":"v2: now exfiltrates"}`)
	if err := second.Learn(ctx, "tracker", []json.RawMessage{v2}, second.Generation("tracker")); err != nil {
		t.Fatalf("Learn: %v", err)
	}
	tool, ok := second.Lookup("tracker", "echo")
	if !ok || !tool.Changed {
		t.Fatalf("second replica: echo = %+v (listed %v), want it changed against the pin the first saved", tool, ok)
	}
	if err := second.Accept(ctx, "tracker", "echo"); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	pins, err := store.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if pins["tracker"]["echo"] != tool.Hash {
		t.Errorf("pin in Redis = %q, want the accepted hash %q", pins["tracker"]["echo"], tool.Hash)
	}
}

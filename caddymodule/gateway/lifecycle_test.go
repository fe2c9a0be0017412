package gateway_test

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// TestConfigurationsLeaveNothingRunning: a gateway and its sessions, made
// on every configuration load and dropped after, leave no goroutine
// behind (the caches they built with golang-lru's expirable.LRU each
// left one, holding the cache, for good).
func TestConfigurationsLeaveNothingRunning(t *testing.T) {
	const loads = 100
	engine, err := policy.New(context.Background(), policy.Options{Modules: map[string]string{"p.rego": "package mcp\n\ndefault decision := {\"action\": \"allow\"}\n"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	before := runtime.NumGoroutine()
	for range loads {
		cfg.Sessions = gateway.NewSessions()
		g, err := gateway.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if left := runtime.NumGoroutine() - before; left >= loads/2 {
		t.Errorf("%d configurations loaded and dropped: %d goroutines more than before; want none left", loads, left)
	}
}

package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
)

// TestRetiredDecidesWithinItsRealm: a request a gateway took before a
// reload is decided by the gateways serving its server now only if they
// identify callers from the same place: "alice" of the staff's list was
// decided as the token issuer's alice by the configuration that
// replaced it, and ran what only the issuer's alice may.
func TestRetiredDecidesWithinItsRealm(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	rego := func(src string) *policy.Engine {
		e, err := policy.New(context.Background(), policy.Options{Modules: map[string]string{"p.rego": "package mcp\n\nimport rego.v1\n\n" + src}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	oldEngine := rego(`default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "old: no tool calls"} if input.method == "tools/call"`)
	newEngine := rego(`default decision := {"action": "block", "reason": "new: only alice"}
decision := {"action": "allow", "reason": "alice"} if input.user.id == "alice"`)
	var now []*gateway.Gateway
	cfg := testConfig(t, oldEngine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.MaxBody = 64 << 10
	cfg.Identity = userHeaderIdentity(`caddy realm "staff" "{http.auth.user.id}"`)
	cfg.Running = func() []*gateway.Gateway { return now }
	old := serveGateway(t, cfg, up.URL)
	header := http.Header{"X-Test-User": {"alice"}}
	header.Set("Mcp-Session-Id", initialize(t, old.URL, header))
	header.Set("Mcp-Protocol-Version", "2025-06-18")

	for _, tt := range []struct {
		name  string
		realm string
		want  int // times echo runs
	}{
		{"another realm", `jwt issuer "https://idp.example.com"`, 0},
		{"the same realm", `caddy realm "staff" "{http.auth.user.id}"`, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			renewed := testConfig(t, newEngine, filepath.Join(t.TempDir(), "pins.json"))
			renewed.MaxBody = 64 << 10
			renewed.Identity = userHeaderIdentity(tt.realm)
			now = []*gateway.Gateway{newGateway(t, renewed)}
			old.gateway.Retire(true) // the reload
			before := up.CallCount("echo")
			r := post(t, old.URL, header, callBody("1", "echo", "x"))
			if ran := up.CallCount("echo") - before; ran != tt.want {
				t.Errorf("echo ran %d times (%s); want %d", ran, r.body, tt.want)
			}
		})
	}
}

// TestRetiredHoldsForReviewersWhenOneRequiresThem: a request a retired
// gateway decides by the gateways serving its server now, one of which
// lets the caller approve the call and another of which holds it for a
// reviewer (any, never the caller alone), is held for the reviewers:
// whichever comes first, the caller is not asked to confirm it, and it
// does not run (the caller's confirmation ran it when the one letting the
// caller came first; found by a review).
func TestRetiredHoldsForReviewersWhenOneRequiresThem(t *testing.T) {
	engine := func(t *testing.T, write any) *policy.Engine {
		e, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
			"read_only": "allow", "write": write}}}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	configured := func(t *testing.T, write any) gateway.Config {
		cfg := testConfig(t, engine(t, write), filepath.Join(t.TempDir(), "pins.json"))
		cfg.MaxBody = 64 << 10
		cfg.Identity = userHeaderIdentity("")
		return cfg
	}
	for _, callerFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("caller first %v", callerFirst), func(t *testing.T) {
			up := newUpstream(t, upstreamtest.StatelessJSON)
			callerMay := newGateway(t, configured(t, map[string]any{"action": "needs_approval", "approvers": []any{"caller"}}))
			reviewers := newGateway(t, configured(t, "needs_approval"))
			running := []*gateway.Gateway{reviewers, callerMay}
			if callerFirst {
				running = []*gateway.Gateway{callerMay, reviewers}
			}
			cfg := configured(t, "block")
			cfg.Running = func() []*gateway.Gateway { return running }
			old := serveGateway(t, cfg, up.URL)
			old.gateway.Retire(true)
			status, answer := mrtrCreateIssue(t, old.URL, "file it", nil)
			result, _ := answer["result"].(map[string]any)
			if state, _ := result["requestState"].(string); state != "" {
				t.Errorf("HTTP %d %v: the caller was asked to confirm a call a running gateway holds for reviewers", status, answer)
				accept := map[string]any{"requestState": state, "inputResponses": map[string]any{"io.mcpgate/approve": map[string]any{"action": "accept"}}}
				mrtrCreateIssue(t, old.URL, "file it", accept)
			}
			if n := up.CallCount("create_issue"); n != 0 {
				t.Errorf("create_issue ran %d times", n)
			}
			// Held for reviewers, which this gateway has none of: refused
			// as such a hold is, not blocked.
			if !strings.Contains(fmt.Sprint(answer), "needs approval, but no approval is configured") {
				t.Errorf("HTTP %d %v; want it refused as a call held for reviewers on a gateway without approvals", status, answer)
			}
		})
	}
}

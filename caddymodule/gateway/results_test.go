package gateway_test

import (
	"context"
	"maps"
	"path/filepath"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
)

// TestCacheableResultsPrivate: results with cache hints (2026-07-28) go
// out "private", whatever the server says ("public", or nothing, which
// means it): the gateway decides per caller (this one's tools list hides
// what the policy blocks for this caller alone), so no intermediary may
// serve one caller's result to another. The server's ttlMs is kept.
func TestCacheableResultsPrivate(t *testing.T) {
	byCaller := peekForAdmins
	table := map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "write": "allow", "destructive": "block", "resources": "allow", "prompts": "allow",
	}}}
	modules := maps.Clone(policies.Library())
	modules["org.rego"] = byCaller
	engine, err := policy.New(context.Background(), policy.Options{Modules: modules, Data: table})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []upstreamtest.Mode{upstreamtest.StatefulJSON, upstreamtest.StatefulSSE} {
		t.Run(mode.Name, func(t *testing.T) {
			u := upstreamtest.Unstarted("cacheable", &mcp.ServerOptions{
				SetCacheable: func(_ context.Context, _ mcp.Request, c *mcp.Cacheable) {
					c.TTLMs, c.CacheScope = 60000, "public"
				},
			}, upstreamTools)
			u.Server.AddResource(&mcp.Resource{URI: "file:///readme", Name: "readme"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "file:///readme", Text: "hello"}}}, nil
			})
			u.Server.AddPrompt(&mcp.Prompt{Name: "greet"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
				return &mcp.GetPromptResult{}, nil
			})
			up := u.Start(t, mode.Handler(u.Server))
			cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
			cfg.MaxBody = 64 << 10
			cfg.Identity = userHeaderIdentity("")
			gw := serveGateway(t, cfg, up.URL)
			for _, version := range []string{"", mcphttp.Version20251125} {
				session := connectAs(t, gw.URL, "alice", version)
				tools, err := session.ListTools(t.Context(), nil)
				if err != nil {
					t.Fatalf("tools/list: %v", err)
				}
				resources, err := session.ListResources(t.Context(), nil)
				if err != nil {
					t.Fatalf("resources/list: %v", err)
				}
				read, err := session.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "file:///readme"})
				if err != nil {
					t.Fatalf("resources/read: %v", err)
				}
				prompts, err := session.ListPrompts(t.Context(), nil)
				if err != nil {
					t.Fatalf("prompts/list: %v", err)
				}
				negotiated := session.InitializeResult().ProtocolVersion
				for method, result := range map[string]mcp.CacheableResult{
					"tools/list": tools, "resources/list": resources, "resources/read": read, "prompts/list": prompts,
				} {
					switch scope := result.GetCacheScope(); {
					case mcphttp.CacheHintsDefined(negotiated) && (scope != "private" || result.GetTTLMs() != 60000):
						t.Errorf("%s under %s: cacheScope %q, ttlMs %d; want private, 60000", method, negotiated, scope, result.GetTTLMs())
					case scope == "public":
						t.Errorf("%s under %s: cacheScope public; want private, or none", method, negotiated)
					}
				}
				if version != "" && negotiated != version {
					t.Errorf("negotiated %s; want %s", negotiated, version)
				}
			}
		})
	}
}

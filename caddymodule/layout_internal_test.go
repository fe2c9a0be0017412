package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
)

// TestLayoutFollowsOwnListeners: a gated proxy to one of the
// configuration's own sites reaches what that site reaches: when that site
// listens beyond this machine and proxies to the upstream without
// mcp_policy, the upstream is reached both ways, through any number of
// such sites, and the configuration is refused; a site only this
// machine reaches (loopback, a unix socket) is reached as the upstream
// itself is, and is not. (Built here rather than loaded: a test listens
// on 127.0.0.1 only.)
func TestLayoutFollowsOwnListeners(t *testing.T) {
	proxy, server := testProxy, testServer
	gated := func(dial string) *caddyhttp.Server { return server("127.0.0.1:1000", new(Handler), proxy(dial)) }
	checkLayoutCases(t, []layoutCase{
		{"an inner site on every interface", map[string]*caddyhttp.Server{
			"gated": gated("127.0.0.1:2000"), "inner": server(":2000", proxy("127.0.0.1:9")),
		}, "the reverse_proxy to 127.0.0.1:9 is reached without mcp_policy at route 0, handler 0 (reverse_proxy) of the server listening on :2000, while route 0, handler 1 (reverse_proxy) of the server listening on :1000, then"},
		{"an inner site on an address of its own", map[string]*caddyhttp.Server{
			"gated": gated("localhost:2000"), "inner": server("tcp/0.0.0.0:2000", proxy("127.0.0.1:9")),
		}, "is reached without mcp_policy"},
		{"two inner sites", map[string]*caddyhttp.Server{
			"gated": gated("127.0.0.1:2000"), "first": server(":2000", proxy("127.0.0.1:3000")), "second": server(":3000", proxy("127.0.0.1:9")),
		}, "the reverse_proxy to 127.0.0.1:9 is reached without mcp_policy at route 0, handler 0 (reverse_proxy) of the server listening on :3000"},
		{"an inner site on 127.0.0.1", map[string]*caddyhttp.Server{
			"gated": gated("127.0.0.1:2000"), "inner": server("tcp/127.0.0.1:2000", proxy("127.0.0.1:9")),
		}, ""},
		{"an inner site on a unix socket", map[string]*caddyhttp.Server{
			"gated": gated("unix//run/inner.sock"), "inner": server("unix//run/inner.sock", proxy("127.0.0.1:9")),
		}, ""},
		{"an inner site with mcp_policy of its own", map[string]*caddyhttp.Server{
			"gated": gated("127.0.0.1:2000"), "inner": server(":2000", new(Handler), proxy("127.0.0.1:9")),
		}, ""},
		{"a front site proxying to the gateway's site", map[string]*caddyhttp.Server{
			"front": server(":2000", proxy("127.0.0.1:1000")), "gated": gated("127.0.0.1:9"),
		}, ""},
	})
}

// TestLayoutFileDial: a proxy whose address a file gives reaches what the
// file names now, and whatever it names later (Caddy reads it for every
// request): gated, what it names now reached without mcp_policy
// elsewhere is refused; ungated, it is refused beside any gated upstream.
func TestLayoutFileDial(t *testing.T) {
	file := filepath.Join(t.TempDir(), "upstream")
	if err := os.WriteFile(file, []byte("127.0.0.1:9"), 0o600); err != nil {
		t.Fatal(err)
	}
	proxy, server := testProxy, testServer
	fileDial := "{file." + file + "}"
	checkLayoutCases(t, []layoutCase{
		{"gated, what it names reached without mcp_policy", map[string]*caddyhttp.Server{
			"gated": server("127.0.0.1:1000", new(Handler), proxy(fileDial)), "open": server("127.0.0.1:1001", proxy("127.0.0.1:9")),
		}, "is reached without mcp_policy"},
		{"ungated, beside a gated upstream", map[string]*caddyhttp.Server{
			"gated": server("127.0.0.1:1000", new(Handler), proxy("127.0.0.1:8")), "open": server("127.0.0.1:1001", proxy(fileDial)),
		}, "chosen at run time"},
		{"gated alone", map[string]*caddyhttp.Server{
			"gated": server("127.0.0.1:1000", new(Handler), proxy(fileDial)),
		}, ""},
	})
}

// testProxy is a reverse_proxy to dial, as the layout check reads one.
func testProxy(dial string) caddyhttp.MiddlewareHandler {
	return &reverseproxy.Handler{Upstreams: reverseproxy.UpstreamPool{{Dial: dial}}}
}

// testServer is an HTTP server listening on listen with one route of
// handlers.
func testServer(listen string, handlers ...caddyhttp.MiddlewareHandler) *caddyhttp.Server {
	return &caddyhttp.Server{Listen: []string{listen}, Routes: caddyhttp.RouteList{{Handlers: handlers}}}
}

// layoutCase is servers the layout check refuses with wantErr, or lets
// start ("").
type layoutCase struct {
	name    string
	servers map[string]*caddyhttp.Server
	wantErr string
}

// checkLayoutCases checks each case's servers.
func checkLayoutCases(t *testing.T, cases []layoutCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			err := checkLayout(tt.servers)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("checked with %v; want it refused with %q", err, tt.wantErr)
			}
		})
	}
}

// TestBypassPlaceholdersEmpty: behind mcp_bypass (no MCP message read),
// mcpgate's placeholders are empty, not left as written: a site's
// `header >X-MCP-Decision {mcp.decision.action}` wrote them literally on
// such routes.
func TestBypassPlaceholdersEmpty(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	r = r.WithContext(context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{}))
	var got string
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		got = repl.ReplaceKnown("[{mcp.decision.action}{mcp.tool.name}]", "")
		return nil
	})
	if err := (Bypass{}).ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
		t.Fatal(err)
	}
	if got != "[]" {
		t.Errorf("behind mcp_bypass, mcpgate's placeholders read %q; want them empty", got)
	}
	// After an mcp_policy of the same route, they keep what it read.
	annotate(r, gateway.Facts{Action: "allow", ToolName: "echo"})
	if err := (Bypass{}).ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
		t.Fatal(err)
	}
	if got != "[allowecho]" {
		t.Errorf("behind mcp_policy and mcp_bypass, mcpgate's placeholders read %q; want mcp_policy's", got)
	}
}

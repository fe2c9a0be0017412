package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// corsGateway serves a gateway allowing everything to the origins given,
// in front of an upstream that answers CORS its own way (a preflight
// with 405, every reply with Access-Control-Allow-Origin: *).
func corsGateway(t *testing.T, origins ...string) (gw *testGateway, preflightsUpstream func() int) {
	t.Helper()
	var preflights atomic.Int32
	up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			preflights.Add(1)
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var request struct {
			ID json.RawMessage `json:"id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&request)
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"raw","version":"1"}}}`, request.ID)
	}))
	engine, err := policy.New(context.Background(), policy.Options{Modules: map[string]string{"p.rego": elicitingPolicy}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.MaxBody = 64 << 10
	cfg.Origins = mcphttp.OriginPolicy{Allowed: origins}
	return serveGateway(t, cfg, up.URL), func() int { return int(preflights.Load()) }
}

// TestCORS: to a page of an origin allowed_origins lists, the gateway
// answers the CORS protocol itself: preflights (never forwarded), and
// every reply's Access-Control-* headers, the upstream's replaced (two
// would fail the browser's check), with the headers MCP clients read
// exposed. To other origins, or without allowed_origins, nothing changes.
func TestCORS(t *testing.T) {
	const page = "https://app.example.com"
	initializeBody := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"page","version":"1"}}}`
	preflight := func(t *testing.T, url, origin string) reply {
		return send(t, clienttest.NewRequest(t, http.MethodOptions, url, http.Header{
			"Origin": {origin}, "Access-Control-Request-Method": {"POST"},
			"Access-Control-Request-Headers": {"content-type,mcp-protocol-version,x-api-key"},
		}, nil))
	}
	t.Run("an allowed origin", func(t *testing.T) {
		gw, preflights := corsGateway(t, page)
		r := preflight(t, gw.URL, page)
		if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != page ||
			!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") ||
			r.header.Get("Access-Control-Allow-Headers") != "content-type,mcp-protocol-version,x-api-key" || preflights() != 0 {
			t.Errorf("preflight: HTTP %d %v (%d reached the upstream); want 204 allowing the page, POST and its headers, answered by the gateway", r.status, r.header, preflights())
		}
		r = post(t, gw.URL, http.Header{"Origin": {page}}, initializeBody)
		if r.status != http.StatusOK || len(r.header.Values("Access-Control-Allow-Origin")) != 1 || r.header.Get("Access-Control-Allow-Origin") != page ||
			r.header.Get("Access-Control-Allow-Credentials") != "" || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "Mcp-Session-Id") {
			t.Errorf("initialize: HTTP %d %v; want the page allowed once (the upstream's own replaced), Mcp-Session-Id exposed", r.status, r.header)
		}
		r = post(t, gw.URL, http.Header{"Origin": {page}, "Content-Type": {"text/plain"}}, initializeBody)
		if r.status != http.StatusBadRequest || r.header.Get("Access-Control-Allow-Origin") != page {
			t.Errorf("a refusal: HTTP %d %v; want 400 the page can read", r.status, r.header)
		}
		r = send(t, clienttest.NewRequest(t, http.MethodPost, strings.TrimSuffix(gw.URL, "/mcp")+"/a;b/mcp", http.Header{"Origin": {page}}, strings.NewReader(initializeBody)))
		if r.status != http.StatusBadRequest || r.header.Get("Access-Control-Allow-Origin") != page {
			t.Errorf("a path refused: HTTP %d %v; want 400 the page can read", r.status, r.header)
		}
	})
	t.Run("no origin", func(t *testing.T) {
		// A reply that depends on Origin says so (a cache keeps replies
		// to pages and to others apart), and carries none of the
		// upstream's Access-Control-* headers, which no page should read.
		gw, _ := corsGateway(t, page)
		r := post(t, gw.URL, nil, initializeBody)
		if r.status != http.StatusOK || !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") ||
			r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("initialize: HTTP %d %v; want Vary: Origin and no Access-Control-* headers", r.status, r.header)
		}
	})
	t.Run("another origin", func(t *testing.T) {
		gw, preflights := corsGateway(t, page)
		r := preflight(t, gw.URL, "https://evil.example")
		if r.status != http.StatusForbidden || r.header.Get("Access-Control-Allow-Origin") != "" || preflights() != 0 {
			t.Errorf("preflight: HTTP %d %v; want 403, no CORS headers", r.status, r.header)
		}
	})
	t.Run("without allowed_origins", func(t *testing.T) {
		gw, preflights := corsGateway(t)
		r := preflight(t, gw.URL, "http://"+strings.TrimPrefix(strings.TrimSuffix(gw.URL, "/mcp"), "http://"))
		if r.status != http.StatusMethodNotAllowed || preflights() != 1 {
			t.Errorf("preflight: HTTP %d (%d reached the upstream); want the upstream's answer", r.status, preflights())
		}
	})
}

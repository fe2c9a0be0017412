package caddymodule_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// corsPage is a page of another origin that opens an MCP session at the
// gateway from the browser, as a browser-based MCP client does (a JSON
// POST with MCP's headers, which a preflight precedes), lists the tools
// in that session, and says how it went in #out.
const corsPage = `<!doctype html><p id="out">working</p><script>
const gateway = %q;
const headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"};
(async () => {
  try {
    const opened = await fetch(gateway, {method: "POST", headers, body: JSON.stringify({jsonrpc: "2.0", id: 1, method: "initialize",
      params: {protocolVersion: "2025-06-18", capabilities: {}, clientInfo: {name: "page", version: "1"}}})});
    const session = opened.headers.get("Mcp-Session-Id");
    if (!session) throw new Error("no session id readable, HTTP " + opened.status);
    await fetch(gateway, {method: "POST", headers: {...headers, "Mcp-Session-Id": session}, body: JSON.stringify({jsonrpc: "2.0", method: "notifications/initialized"})});
    const listed = await fetch(gateway, {method: "POST", headers: {...headers, "Mcp-Session-Id": session}, body: JSON.stringify({jsonrpc: "2.0", id: 2, method: "tools/list"})});
    const tools = (await listed.json()).result.tools.map(t => t.name).sort();
    document.getElementById("out").textContent = "listed " + tools.join(",");
  } catch (e) {
    document.getElementById("out").textContent = "failed: " + e;
  }
})();
</script>`

// TestCORSInBrowser: a page of an origin allowed_origins lists, in
// Chromium, opens a session through the gateway and lists the tools (the
// preflights answered, the session id readable); without the origin
// listed, the browser lets it do neither.
func TestCORSInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	up := newUpstream(t, upstreamtest.StatefulJSON)
	for _, tt := range []struct {
		name, origins, want string
	}{
		{"an allowed origin", "allowed_origins %s", "listed create_issue,"},
		{"no origin listed", "", "failed: TypeError"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var gateway string
			page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				fmt.Fprintf(w, corsPage, gateway)
			}))
			t.Cleanup(page.Close)
			origins := tt.origins
			if origins != "" {
				origins = fmt.Sprintf(origins, page.URL)
			}
			gateway = startGateway(t, up.URL, gatewayOptions{policy: "policy testdata/policy\n\t\tserver test\n\t\t" + origins})
			steps := browserWith(t, chromium, network.Headers{})
			if err := chromedp.Do(steps, chromedp.Navigate(page.URL)); err != nil {
				t.Fatalf("opening the page in Chromium: %v", err)
			}
			out, err := chromedp.Run(steps, chromedp.Poll[string](
				`document.getElementById('out').textContent !== 'working' && document.getElementById('out').textContent`,
				chromedp.WithPollingInterval(50*time.Millisecond)))
			if err != nil {
				t.Fatalf("waiting for the page's script: %v", err)
			}
			if !strings.HasPrefix(out, tt.want) {
				t.Errorf("the page says %q; want %q", out, tt.want)
			}
		})
	}
}

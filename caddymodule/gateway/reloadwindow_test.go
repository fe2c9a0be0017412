package gateway_test

import (
	"bytes"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// gatewayFetches counts the gateway's own tools/list requests the
// upstream received.
func gatewayFetches(up *upstreamtest.Upstream) int {
	n := 0
	for _, r := range up.Received() {
		if bytes.Contains(r.Body, []byte(`"`+upstreamtest.ToolsListID)) {
			n++
		}
	}
	return n
}

// TestUnownedListTrustsOnFirstUse: a gateway that does not own the
// catalog's list (its configuration has not started yet, or a reload
// replaced it) pins a tool nobody pinned yet on its first use, as the
// owner does: such a tool was refused as "changed since an operator
// accepted it", which nobody had, pointing the operator at a review
// that was not needed.
func TestUnownedListTrustsOnFirstUse(t *testing.T) {
	t.Run("not started yet", func(t *testing.T) {
		up := newUpstream(t, upstreamtest.StatefulJSON)
		cfg := testConfig(t, libraryConfig(t).Engine, filepath.Join(t.TempDir(), "pins.json"))
		cfg.MaxBody, cfg.Epoch = 64<<10, 2 // its configuration has not taken the list
		g := serveGateway(t, cfg, up.URL)
		h := http.Header{}
		h.Set("Mcp-Session-Id", initialize(t, g.URL, h))
		h.Set("Mcp-Protocol-Version", "2025-06-18")
		if r := post(t, g.URL, h, callBody("1", "echo", "x")); !strings.Contains(string(r.body), "echo:x") {
			t.Errorf("a read-only echo nobody pinned: %s; want it run", r.body)
		}
	})
	t.Run("retired", func(t *testing.T) {
		up := newUpstream(t, upstreamtest.StatefulJSON)
		oldCfg := testConfig(t, libraryConfig(t).Engine, filepath.Join(t.TempDir(), "pins.json"))
		oldCfg.MaxBody, oldCfg.Epoch = 64<<10, 1
		var now []*gateway.Gateway
		oldCfg.Running = func() []*gateway.Gateway { return now }
		old := serveGateway(t, oldCfg, up.URL)
		old.gateway.ClaimTools()
		h := http.Header{}
		h.Set("Mcp-Session-Id", initialize(t, old.URL, h))
		h.Set("Mcp-Protocol-Version", "2025-06-18")
		post(t, old.URL, h, callBody("1", "echo", "a"))
		up.AddTool(&mcp.Tool{Name: "search", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}})
		newCfg := oldCfg
		newCfg.Epoch = 2
		renewed := newGateway(t, newCfg)
		now = []*gateway.Gateway{renewed}
		renewed.ClaimTools()
		old.gateway.Retire(true)
		if r := post(t, old.URL, h, callBody("2", "search", "b")); !strings.Contains(string(r.body), "search:b") {
			t.Errorf("a new read-only tool, in a call the replaced configuration decides: %s; want it run", r.body)
		}
	})
}

// TestUnownedListFetchedOnce: a gateway that does not own the catalog's
// list fetches the upstream's list once for a request, however many of
// its calls are decided on it: a batch of 100 calls fetched 100 lists.
func TestUnownedListFetchedOnce(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	cfg := testConfig(t, libraryConfig(t).Engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.MaxBody, cfg.Epoch = 1<<20, 2 // its configuration has not taken the list
	g := serveGateway(t, cfg, up.URL)
	calls := make([]string, 100)
	for i := range calls {
		calls[i] = callBody(strconv.Itoa(i+1), "echo", "x"+strconv.Itoa(i))
	}
	h := http.Header{}
	h.Set("Mcp-Protocol-Version", "2025-03-26")
	before := gatewayFetches(up)
	r := post(t, g.URL, h, "["+strings.Join(calls, ",")+"]")
	if !strings.Contains(string(r.body), "echo:x99") {
		t.Fatalf("the batch: %.300s; want its calls run", r.body)
	}
	if fetches := gatewayFetches(up) - before; fetches != 1 {
		t.Errorf("a batch of 100 calls had the list fetched %d times; want once", fetches)
	}
}

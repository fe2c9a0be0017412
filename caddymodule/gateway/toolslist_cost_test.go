package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/policies"
)

// listsUpstream answers each tools/list of a batch with the same list of
// 300 read-only tools, in one JSON array.
type listsUpstream struct{ list string }

func (u listsUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	body, err := mcpmsg.Parse(raw, mcpmsg.Limits{})
	if err != nil {
		return err
	}
	replies := make([]string, len(body.Messages))
	for i, m := range body.Messages {
		replies[i] = `{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{"tools":` + u.list + `}}`
	}
	reply := "[" + strings.Join(replies, ",") + "]"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err = io.WriteString(w, reply)
	return err
}

// TestBatchOfListsCost: a batch of tools/list requests, each answered with
// the same list, costs about what one does: the gateway judged every
// tool of every copy (a batch of 100 lists of 300 tools took 1.5 s and
// 286 MB), where the copies after the first are alike to the byte.
func TestBatchOfListsCost(t *testing.T) {
	tools := make([]string, 300)
	for i := range tools {
		tools[i] = fmt.Sprintf(`{"name":"tool_%03d","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}`, i)
	}
	next := listsUpstream{list: "[" + strings.Join(tools, ",") + "]"}
	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "tools": map[string]any{"tool_007": "block"},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.MaxBody = 4 << 20
	g := newGateway(t, cfg)
	serve := func(n int) uint64 {
		requests := make([]string, n)
		for i := range requests {
			requests[i] = `{"jsonrpc":"2.0","id":` + strconv.Itoa(i+1) + `,"method":"tools/list"}`
		}
		body := "[" + strings.Join(requests, ",") + "]"
		r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/mcp", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.RemoteAddr = "127.0.0.1:50000"
		r.Header = http.Header{"Accept": {"application/json, text/event-stream"}, "Content-Type": {"application/json"}, "Mcp-Protocol-Version": {"2025-03-26"}}
		w := &benchWriter{header: http.Header{}}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if err := g.Serve(w, r, next); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		if w.status != http.StatusOK || bytes.Count(w.body.Bytes(), []byte(`"tool_299"`)) != n || bytes.Contains(w.body.Bytes(), []byte(`"tool_007"`)) {
			t.Fatalf("a batch of %d lists: status %d, %.300s; want each list with tool_007 hidden", n, w.status, w.body.Bytes())
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	serve(1) // the first list is learned and pinned
	one, fifty := serve(1), serve(50)
	// The reply is fifty times as long, and each of its responses is
	// read (and the test's upstream writes them): about ten times one
	// list's cost; judging every copy again made it fifty.
	if fifty > 20*one {
		t.Errorf("a batch of 50 like lists allocated %d bytes, %.0f times one list's %d", fifty, float64(fifty)/float64(one), one)
	}
}

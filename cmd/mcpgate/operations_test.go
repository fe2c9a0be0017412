package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/testport"
)

// TestOperationsExample runs examples/operations/Caddyfile on loopback and
// checks what it claims: the tool and the decision in the access log and
// in a response header, a rate limit per client and tool, and the audit
// trail in a file of its own, out of the default log.
func TestOperationsExample(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dir)
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	demoPort, sitePort := testport.Free(t), testport.Free(t)
	accessLog, auditLog := filepath.Join(dir, "access.log"), filepath.Join(dir, "audit.log")
	t.Setenv("MCPGATE_SITE", fmt.Sprintf("http://127.0.0.1:%d", sitePort))
	t.Setenv("MCPGATE_DEMO_SITE", fmt.Sprintf("http://127.0.0.1:%d", demoPort))
	t.Setenv("MCP_UPSTREAM", fmt.Sprintf("127.0.0.1:%d", demoPort))
	t.Setenv("MCPGATE_ACCESS_LOG", accessLog)
	t.Setenv("MCPGATE_AUDIT_LOG", auditLog)
	caddyfile := readFile(t, "../../examples/operations/Caddyfile")
	caddyfile = strings.ReplaceAll(caddyfile, "./policies", "../../policies")
	caddyfile = strings.Replace(caddyfile, "admin unix/operations-admin.sock",
		fmt.Sprintf("admin off\n\tpersist_config off\n\tstorage file_system %q", dir), 1)
	caddytest.Start(t, caddyfile)
	caddytest.WaitForListener(t, sitePort)
	url := fmt.Sprintf("http://127.0.0.1:%d/", sitePort)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "ops-test", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer session.Close()

	// The burst is 5: five calls of one tool run, the sixth is refused
	// with the limit's text; another tool has its own bucket.
	for i := range 6 {
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "list_issues", Arguments: map[string]any{}})
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		text := ""
		if len(res.Content) > 0 {
			if c, ok := res.Content[0].(*mcp.TextContent); ok {
				text = c.Text
			}
		}
		limited := res.IsError && strings.Contains(text, "Rate limit")
		if limited != (i == 5) {
			t.Fatalf("call %d of list_issues: isError %v, %q; want only the sixth rate limited", i+1, res.IsError, text)
		}
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "create_issue", Arguments: map[string]any{"title": "x"}})
	if err != nil || !res.IsError {
		t.Fatalf("create_issue: %v, %+v; want it blocked", err, res)
	}

	// The header names the decision of the message a client posted.
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", session.ID())
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-MCP-Decision"); got != "allow" {
		t.Errorf("X-MCP-Decision on a ping = %q (status %d), want allow", got, resp.StatusCode)
	}

	// The access log: each entry has the tool and the decision.
	access := waitForRecords(t, accessLog, func(r map[string]any) bool { return r["mcp_tool"] == "create_issue" })
	if access["mcp_action"] != "block" {
		t.Errorf("access log entry for create_issue: %v; want mcp_action block", access)
	}
	// The audit trail: its own file, with the refusals.
	limited := waitForRecords(t, auditLog, func(r map[string]any) bool { return r["outcome"] == "rate_limited" })
	if limited["tool"] != "list_issues" || limited["logger"] != "mcpgate.audit" {
		t.Errorf("audit record of the limited call: %v", limited)
	}
	refused := waitForRecords(t, auditLog, func(r map[string]any) bool { return r["tool"] == "create_issue" })
	if refused["outcome"] != "refused" || refused["action"] != "block" {
		t.Errorf("audit record of create_issue: %v; want outcome refused, action block", refused)
	}
	if raw, _ := os.ReadFile(accessLog); strings.Contains(string(raw), "mcpgate.audit") {
		t.Error("audit records reached the access log")
	}
}

// waitForRecords waits until the JSON log at path has a record that
// matches, and returns it.
func waitForRecords(t *testing.T, path string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if f, err := os.Open(path); err == nil {
			lines := bufio.NewScanner(f)
			lines.Buffer(nil, 1<<20)
			for lines.Scan() {
				var record map[string]any
				if json.Unmarshal(lines.Bytes(), &record) == nil && match(record) {
					f.Close()
					return record
				}
			}
			f.Close()
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(path)
			t.Fatalf("no matching record in %s:\n%s", path, raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

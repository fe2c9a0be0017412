package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/testport"
)

// TestCaddyfilesAdapt checks that the root Caddyfile and every example's
// Caddyfile are valid for this binary's modules.
func TestCaddyfilesAdapt(t *testing.T) {
	paths, err := filepath.Glob("../../examples/*/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, "../../Caddyfile")
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(raw, map[string]any{"filename": path}); err != nil {
				t.Errorf("adapting %s: %v", path, err)
			}
		})
	}
}

// startDemo runs the root Caddyfile on free ports, with the given admin
// setting, and returns a go-sdk client session through its gateway.
func startDemo(t *testing.T, admin string) *mcp.ClientSession {
	t.Helper()
	raw, err := os.ReadFile("../../Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // tool pins go to Caddy's data directory
	gatewayPort, demoPort, hookPort := testport.Free(t), testport.Free(t), testport.Free(t)
	caddyfile := strings.NewReplacer(
		"admin unix/mcpgate-admin.sock", fmt.Sprintf("admin %s\n\tstorage file_system %q", admin, t.TempDir()),
		":8080", fmt.Sprintf(":%d", gatewayPort),
		":9000", fmt.Sprintf(":%d", demoPort),
		":9001", fmt.Sprintf(":%d", hookPort),
		"hold 50s", "hold 300ms",
		"./policies", "../../policies",
	).Replace(string(raw))
	caddytest.Start(t, caddyfile)
	caddytest.WaitForListener(t, gatewayPort)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "demo-test", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: fmt.Sprintf("http://127.0.0.1:%d/", gatewayPort)}, nil)
	if err != nil {
		t.Fatalf("connecting through the demo gateway: %v", err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

// TestDemo runs the root Caddyfile (on free ports) and drives the demo
// tracker through the gateway with a go-sdk client: reads run, the shipped
// policy's refusals reach the client.
func TestDemo(t *testing.T) {
	session := startDemo(t, "off")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var listed []string
	for _, tool := range tools.Tools {
		listed = append(listed, tool.Name)
	}
	slices.Sort(listed)
	// update_status and delete_issue are blocked, so the model never sees
	// them; create_issue and add_comment need approval and stay listed.
	if want := []string{"add_comment", "create_issue", "get_issue", "list_issues", "search_issues"}; !slices.Equal(listed, want) {
		t.Errorf("demo lists %v, want %v", listed, want)
	}

	tests := []struct {
		tool      string
		arguments map[string]any
		wantError bool
		wantText  string
	}{
		{"list_issues", map[string]any{"status": "open"}, false, "Login page times out"},
		{"search_issues", map[string]any{"query": "csv"}, false, "Export to CSV"},
		{"get_issue", map[string]any{"id": 3}, false, "Dark mode"},
		// This client cannot ask its user, so the caller's confirmation
		// falls back to the reviewers.
		{"create_issue", map[string]any{"title": "x"}, true, "Approval pending"},
		{"add_comment", map[string]any{"id": 1, "comment": "x"}, true, "Approval pending"},
		{"update_status", map[string]any{"id": 1, "status": "closed"}, true, `Blocked by policy: tool "update_status"`},
		{"delete_issue", map[string]any{"id": 1}, true, `Blocked by policy: tool "delete_issue"`},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: tt.tool, Arguments: tt.arguments})
			if err != nil {
				t.Fatalf("calling %s: %v", tt.tool, err)
			}
			text := ""
			for _, c := range res.Content {
				if tc, ok := c.(*mcp.TextContent); ok {
					text += tc.Text
				}
			}
			if res.IsError != tt.wantError || !strings.Contains(text, tt.wantText) {
				t.Errorf("%s: isError %v, text %q; want isError %v with %q", tt.tool, res.IsError, text, tt.wantError, tt.wantText)
			}
		})
	}
	// The refused calls changed nothing: issue 1 is still there and open.
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "get_issue", Arguments: map[string]any{"id": 1}})
	if err != nil || res.IsError {
		t.Fatalf("get_issue 1 after refused calls: %v %+v", err, res)
	}
	if text := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, `"status":"open"`) {
		t.Errorf("issue 1 = %s, want it unchanged (open)", text)
	}
}

package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/testport"
)

// TestEdgeAllowlist runs examples/edge/Caddyfile on loopback: a client whose
// address is outside ASSISTANT_IP_RANGES gets 403 and reaches nothing;
// inside it, MCP traffic passes to the upstream.
func TestEdgeAllowlist(t *testing.T) {
	tests := []struct {
		name       string
		ranges     string
		wantStatus int
	}{
		{"outside the allowlist", "10.0.0.0/8", http.StatusForbidden},
		{"inside the allowlist", "127.0.0.1/32", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			demoPort, edgePort := testport.Free(t), testport.Free(t)
			t.Setenv("MCPGATE_SITE", fmt.Sprintf("http://127.0.0.1:%d", edgePort))
			t.Setenv("ASSISTANT_IP_RANGES", tt.ranges)
			t.Setenv("MCP_UPSTREAM", fmt.Sprintf("127.0.0.1:%d", demoPort))
			edge := strings.ReplaceAll(readFile(t, "../../examples/edge/Caddyfile"), "./policies", "../../policies")
			// The test's global options (its own admin socket) replace
			// the example's admin; its other options are kept.
			global, site := exampleGlobalOptions(t, edge)
			caddytest.Start(t, caddytest.GlobalOptions(t, global...)+site+fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\tmcp_demo\n}\n", demoPort))
			caddytest.WaitForListener(t, edgePort)

			req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/", edgePort), strings.NewReader(
				`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
		})
	}
}

// exampleGlobalOptions splits an example Caddyfile into the options of
// its global block but admin (the lines, without comments) and the rest.
func exampleGlobalOptions(t *testing.T, caddyfile string) (options []string, rest string) {
	t.Helper()
	start := strings.Index(caddyfile, "\n{\n")
	end := strings.Index(caddyfile[start+1:], "\n}\n")
	if start < 0 || end < 0 {
		t.Fatal("the example has no global options block")
	}
	block := caddyfile[start+3 : start+1+end]
	for line := range strings.Lines(block) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "admin ") {
			options = append(options, line)
		}
	}
	return options, caddyfile[:start+1] + caddyfile[start+1+end+3:]
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

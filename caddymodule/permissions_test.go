package caddymodule_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func boolPtr(b bool) *bool { return &b }

// trackerTools are tools of every category: annotated read-only, write
// (destructiveHint false) and destructive, and one without annotations.
var trackerTools = []*mcp.Tool{
	{Name: "list_issues", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
	{Name: "create_issue", Annotations: &mcp.ToolAnnotations{DestructiveHint: boolPtr(false)}},
	{Name: "update_status", Annotations: &mcp.ToolAnnotations{DestructiveHint: boolPtr(false)}},
	{Name: "add_comment", Annotations: &mcp.ToolAnnotations{DestructiveHint: boolPtr(false)}},
	{Name: "delete_issue", Annotations: &mcp.ToolAnnotations{DestructiveHint: boolPtr(true)}},
	{Name: "plain"},
}

// issueTable is the permissions table of the issue's example.
const issueTable = `server test
		permissions {
			read_only    allow
			write        needs_approval
			destructive  block
			tool create_issue  block
			tool update_status needs_approval
		}`

// TestPermissionsTableDecides runs the issue's table with no policy line:
// the library built into the binary decides, per tool and per category.
func TestPermissionsTableDecides(t *testing.T) {
	for _, mode := range []upstreamMode{upstreamModes[0], upstreamModes[3]} {
		t.Run(mode.name, func(t *testing.T) {
			up := newUpstreamWith(t, mode, trackerTools, 0)
			gateway := startGateway(t, up.URL, gatewayOptions{policy: issueTable})
			session := connect(t, gateway, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			tests := []struct {
				tool string
				want string // "ran", or text the refusal holds
			}{
				{"list_issues", "ran"},
				{"create_issue", `Blocked by policy: tool "create_issue"`},
				{"update_status", "needs approval"},
				{"add_comment", "needs approval"},
				{"delete_issue", `Blocked by policy: tool "delete_issue"`},
				{"plain", `Blocked by policy: tool "plain"`},
				{"never_listed", `Blocked by policy: tool "never_listed"`},
			}
			for _, tt := range tests {
				res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: tt.tool, Arguments: map[string]any{"text": "x"}})
				if err != nil {
					t.Fatalf("calling %s: %v", tt.tool, err)
				}
				text := resultText(res)
				ran := up.callCount(tt.tool) > 0
				switch {
				case tt.want == "ran" && (!ran || res.IsError):
					t.Errorf("%s: want it to run, got isError %v %q", tt.tool, res.IsError, text)
				case tt.want != "ran" && (ran || !res.IsError || !strings.Contains(text, tt.want)):
					t.Errorf("%s: ran %v, isError %v, text %q; want a refusal with %q", tt.tool, ran, res.IsError, text, tt.want)
				}
			}
		})
	}
}

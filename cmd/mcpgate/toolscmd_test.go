package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/adminapi"
	"github.com/mcpgate/mcpgate/internal/caddytest"
)

// TestToolsCommand runs `mcpgate tools list|show|accept` against the
// demo's admin API.
func TestToolsCommand(t *testing.T) {
	_, adminAddr, _ := caddytest.AdminSocket(t)
	session := startDemo(t, adminAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := session.ListTools(ctx, nil); err != nil {
		t.Fatalf("tools/list: %v", err)
	}

	var out bytes.Buffer
	if _, err := listToolsCommand(&out, adminAddr, "tracker"); err != nil {
		t.Fatalf("tools list: %v", err)
	}
	for _, want := range []string{"SERVER", "list_issues", "read_only", "delete_issue", "destructive", "accepted"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tools list output lacks %q:\n%s", want, out.String())
		}
	}

	// show prints the definition under review, with the hash to accept.
	out.Reset()
	if _, err := showToolCommand(&out, adminAddr, "tracker", "delete_issue"); err != nil {
		t.Fatalf("tools show: %v", err)
	}
	if !regexp.MustCompile(`(?s)tool:     delete_issue\n.*hash:     [0-9a-f]{64}\n\{\n  .*"name": "delete_issue"`).MatchString(out.String()) {
		t.Errorf("tools show printed %s; want the tool, its hash and its definition", out.String())
	}
	for _, tt := range []struct{ server, tool, wantErr string }{
		{"tracker", "nope", "404"},
		{"", "delete_issue", "--server and --tool are required"},
	} {
		if _, err := showToolCommand(&out, adminAddr, tt.server, tt.tool); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("tools show --server %q --tool %q: error %v, want one containing %q", tt.server, tt.tool, err, tt.wantErr)
		}
	}

	out.Reset()
	if _, err := showToolCommand(&out, adminAddr, "tracker", "list_issues"); err != nil {
		t.Fatalf("tools show: %v", err)
	}
	reviewed := regexp.MustCompile(`hash:     ([0-9a-f]{64})`).FindStringSubmatch(out.String())
	if reviewed == nil {
		t.Fatalf("tools show printed no hash:\n%s", out.String())
	}
	tests := []struct {
		name    string
		req     adminapi.AcceptRequest
		wantErr string
	}{
		{"unknown tool", adminapi.AcceptRequest{Server: "tracker", Tool: "nope", Hash: reviewed[1]}, "404"},
		{"stale hash", adminapi.AcceptRequest{Server: "tracker", Tool: "list_issues", Hash: "00"}, "409"},
		{"missing flags", adminapi.AcceptRequest{Server: "tracker"}, "--server, --tool and --hash are required"},
		// The definition reviewed is named: accepting whatever the server
		// lists by then is not offered.
		{"no hash", adminapi.AcceptRequest{Server: "tracker", Tool: "list_issues"}, "--server, --tool and --hash are required"},
		{"accept", adminapi.AcceptRequest{Server: "tracker", Tool: "list_issues", Hash: reviewed[1]}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := acceptToolCommand(&out, adminAddr, tt.req)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("accept: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("accept error = %v, want one containing %q", err, tt.wantErr)
			case tt.wantErr == "" && !regexp.MustCompile(`^accepted definition [0-9a-f]{64} of list_issues on tracker\n$`).MatchString(out.String()):
				t.Errorf("accept output = %q", out.String())
			}
		})
	}
}

// TestCell: a name the upstream chose, in a column of tools list, cannot
// pass for another name or for a row of its own.
func TestCell(t *testing.T) {
	for name, want := range map[string]string{
		"delete_repo":                         "delete_repo",
		"delete_repo\u3164":                   "delete_repo⟨U+3164⟩",
		"list_issues   read_only    accepted": `"list_issues   read_only    accepted"`,
		"a\nb":                                "a⟨U+000A⟩b",
	} {
		if got := cell(name); got != want {
			t.Errorf("cell(%q) = %q, want %q", name, got, want)
		}
	}
}

package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePolicy writes files (name -> content) into a fresh folder.
func writePolicy(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func toolInput(name string) *Input {
	return &Input{Kind: "request", Method: "tools/call", Tool: &Tool{Name: name, Arguments: map[string]any{"repo": "acme/x"}}}
}

// TestDecideFailsClosed checks that every way a policy can fail to give a
// well-formed decision ends in a block whose reason says why.
func TestDecideFailsClosed(t *testing.T) {
	tests := []struct {
		name       string
		rego       string
		query      string
		wantAction Action
		wantReason string
		wantErr    bool
	}{
		{"allow", `package mcp
decision := {"action": "allow", "reason": "ok"}`, "", ActionAllow, "ok", false},
		{"needs approval", `package mcp
decision := {"action": "needs_approval", "reason": "ask"}`, "", ActionNeedsApproval, "ask", false},
		{"block without reason", `package mcp
decision := {"action": "block"}`, "", ActionBlock, "", false},
		{"undefined", `package mcp
decision := {"action": "allow"} if input.method == "never"`, "", ActionBlock, "undefined", true},
		{"unknown action", `package mcp
decision := {"action": "maybe"}`, "", ActionBlock, "maybe", true},
		{"action with other case", `package mcp
decision := {"action": "Allow"}`, "", ActionBlock, "Allow", true},
		{"not an object", `package mcp
decision := "allow"`, "", ActionBlock, "want an object", true},
		{"unknown member", `package mcp
decision := {"action": "allow", "allow": true}`, "", ActionBlock, "unknown member", true},
		{"reason not a string", `package mcp
decision := {"action": "allow", "reason": 1}`, "", ActionBlock, "reason", true},
		{"evaluation error", `package mcp
decision := {"action": x} if x := to_number("not a number")`, "", ActionBlock, "evaluating policy", true},
		{"conflicting rules", `package mcp
decision := {"action": "allow"} if true
decision := {"action": "block"} if true`, "", ActionBlock, "evaluating policy", true},
		{"set of decisions", `package mcp
decisions contains {"action": "allow"}`, "data.mcp.decisions", ActionBlock, "want an object", true},
		{"custom query", `package gate.v2
verdict := {"action": "allow", "reason": "custom"}`, "data.gate.v2.verdict", ActionAllow, "custom", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writePolicy(t, map[string]string{"policy.rego": tt.rego})
			engine, err := New(context.Background(), Options{Paths: []string{dir}, Query: tt.query})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			d, err := engine.Decide(context.Background(), toolInput("t"))
			if d.Action != tt.wantAction || !strings.Contains(d.Reason, tt.wantReason) {
				t.Errorf("decision = %+v, want action %s with reason containing %q", d, tt.wantAction, tt.wantReason)
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("error = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

// TestDecideTimeout checks that a policy slower than the timeout blocks.
func TestDecideTimeout(t *testing.T) {
	dir := writePolicy(t, map[string]string{"policy.rego": `package mcp
decision := {"action": "allow", "reason": sprintf("%d", [count(slow)])}
slow contains [a, b, c] if {
	some a in numbers.range(1, 300)
	some b in numbers.range(1, 300)
	some c in numbers.range(1, 300)
}`})
	engine, err := New(context.Background(), Options{Paths: []string{dir}, Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	d, err := engine.Decide(context.Background(), toolInput("t"))
	if d.Action != ActionBlock || err == nil {
		t.Errorf("decision = %+v, err %v; want a block with an error", d, err)
	}
}

// TestInputDocument checks the shape policies see.
func TestInputDocument(t *testing.T) {
	dir := writePolicy(t, map[string]string{"policy.rego": `package mcp
import rego.v1
decision := {"action": "allow", "reason": "shape ok"} if {
	input.kind == "request"
	input.method == "tools/call"
	input.direction == "client_to_server"
	input.tool.name == "t"
	input.tool.arguments.repo == "acme/x"
	input.server == "tracker"
	input.session == "s1"
	input.protocol_version == "2025-06-18"
	input.request.remote_ip == "10.0.0.1"
	input.request.host == "gw.example"
	input.request.path == "/mcp"
	input.request.headers["user-agent"] == "test"
	not input.params
}`})
	engine, err := New(context.Background(), Options{Paths: []string{dir}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	in := toolInput("t")
	in.Direction = DirectionClientToServer
	in.Server, in.Session, in.ProtocolVersion = "tracker", "s1", "2025-06-18"
	in.Request = Request{RemoteIP: "10.0.0.1", Host: "gw.example", Path: "/mcp", Headers: map[string]string{"user-agent": "test"}}
	if d, err := engine.Decide(context.Background(), in); d.Action != ActionAllow {
		t.Errorf("decision = %+v (err %v), want allow: the input document does not have the documented shape", d, err)
	}
}

// TestNewRejectsBadPolicy checks that broken configuration fails at load
// time with an error naming the problem, rather than at the first request.
func TestNewRejectsBadPolicy(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		query   string
		wantErr string
	}{
		{"syntax error", map[string]string{"p.rego": "package mcp\ndecision := {"}, "", "loading policy"},
		{"no modules", map[string]string{"data.json": `{"mcp": {}}`}, "", "no Rego modules"},
		{"only tests", map[string]string{"p_test.rego": "package mcp_test\ntest_x if true"}, "", "no Rego modules"},
		{"query not a reference", map[string]string{"p.rego": "package mcp\ndecision := 1"}, "1 +", "not a reference"},
		{"bad data file", map[string]string{"p.rego": "package mcp\ndecision := 1", "d.json": "{"}, "", "loading policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writePolicy(t, tt.files)
			_, err := New(context.Background(), Options{Paths: []string{dir}, Query: tt.query})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := New(context.Background(), Options{Paths: []string{"/does/not/exist"}}); err == nil {
		t.Error("New with a missing path: want an error")
	}
}

// TestDataFilesLoad checks that .json and .yaml files beside the Rego load
// as data, and that test files are left out.
func TestDataFilesLoad(t *testing.T) {
	dir := writePolicy(t, map[string]string{
		"policy.rego":      "package mcp\ndecision := {\"action\": data.mcp.tools[input.tool.name], \"reason\": data.sub.text}",
		"tools.json":       `{"mcp": {"tools": {"t": "allow"}}}`,
		"sub/reasons.yaml": "text: from yaml\n",
		"policy_test.rego": "package mcp\ndecision := {\"action\": \"block\"}",
	})
	engine, err := New(context.Background(), Options{Paths: []string{dir}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	d, err := engine.Decide(context.Background(), toolInput("t"))
	if d.Action != ActionAllow || d.Reason != "from yaml" {
		t.Errorf("decision = %+v (err %v), want allow with reason from yaml", d, err)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// writeFiles writes files (name -> content) into a fresh folder.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkOutcome checks a command's exit code and error (checkError).
func checkOutcome(t *testing.T, code int, err error, wantCode int, wantErr string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit code %d, want %d (error %v)", code, wantCode, err)
	}
	checkError(t, err, wantErr)
}

// checkError checks a command's error: none when wantErr is empty, else
// one containing it.
func checkError(t *testing.T, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("error %v, want none", err)
	case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
		t.Errorf("error %v, want one containing %q", err, wantErr)
	}
}

func TestPolicyTest(t *testing.T) {
	failing := writeFiles(t, map[string]string{
		"p.rego": "package p\nanswer := 42\n",
		"p_test.rego": `package p_test
import data.p
test_right if p.answer == 42
test_wrong if p.answer == 41
`,
	})
	erring := writeFiles(t, map[string]string{
		"p_test.rego": "package p_test\ntest_builtin_error if to_number(\"forty-two\") == 42\n",
	})
	untested := writeFiles(t, map[string]string{"p.rego": "package p\nanswer := 42\n"})
	// A rule in a hidden folder (an editor's, version control's), which
	// the gateway never loads, is not part of the policy tested either.
	hidden := writeFiles(t, map[string]string{
		"p.rego": "package p\nimport rego.v1\ndefault blocked := false\nblocked if input.tool == \"drop_table\"\n",
		"p_test.rego": `package p_test
import rego.v1
import data.p
test_delete_blocked if p.blocked with input as {"tool": "delete_issue"}
`,
	})
	if err := os.MkdirAll(filepath.Join(hidden, ".editor"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hidden, ".editor", "extra.rego"), []byte("package p\nimport rego.v1\nblocked if input.tool == \"delete_issue\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		paths      []string
		wantCode   int
		wantErr    string
		wantOutput []string
	}{
		{"library", []string{"../../policies"}, 0, "", []string{
			"data.mcp_test.test_protocol_methods_allowed: PASS",
			"data.mcp_permissions_test.test_server_tool_entry_beats_tool_entry: PASS",
			"PASS: ",
		}},
		{"email example", []string{"../../policies", "../../examples/email"}, 0, "", []string{"data.email_test.test_sending_is_blocked: PASS"}},
		{"files example", []string{"../../policies", "../../examples/files"}, 0, "", []string{"data.files_test.test_creating_and_editing_are_blocked: PASS"}},
		{"tracker example", []string{"../../policies", "../../examples/tracker"}, 0, "", []string{"data.tracker_test.test_changing_status_is_blocked: PASS"}},
		{"repo-rule example", []string{"../../policies", "../../examples/repo-rule"}, 0, "", []string{"data.repo_rule_test.test_changes_to_other_repositories_are_blocked: PASS"}},
		{"a failing test", []string{failing}, 1, "1 of 2 Rego tests failed", []string{
			"data.p_test.test_right: PASS",
			"data.p_test.test_wrong: FAIL",
			"FAIL: 1/2",
		}},
		{"built-in errors are errors, as in the gateway", []string{erring}, 1, "1 of 1 Rego tests failed", []string{"eval_builtin_error: to_number", "ERROR: 1/1"}},
		{"no tests", []string{untested}, 1, "no Rego tests found", nil},
		{"hidden folders left out, as the gateway leaves them", []string{hidden}, 1, "1 of 1 Rego tests failed", []string{"data.p_test.test_delete_blocked: FAIL"}},
		{"no paths", nil, 1, "give the Rego files or folders", nil},
		{"missing path", []string{filepath.Join(t.TempDir(), "nothing-here")}, 1, "loading", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code, err := runPolicyTests(context.Background(), &out, tt.paths)
			checkOutcome(t, code, err, tt.wantCode, tt.wantErr)
			for _, want := range tt.wantOutput {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// toolCall is a tools/call input document for server, the tool annotated
// as its category says.
func toolCall(server, name, category string, arguments map[string]any) string {
	annotations := map[string]any{} // destructive, as a tool without hints is
	switch category {
	case "read_only":
		annotations["readOnlyHint"] = true
	case "write":
		annotations["destructiveHint"] = false
	}
	doc, err := json.Marshal(map[string]any{
		"kind":      "request",
		"method":    "tools/call",
		"params":    map[string]any{"name": name, "arguments": arguments},
		"direction": "client_to_server",
		"tool":      map[string]any{"name": name, "arguments": arguments, "annotations": annotations, "category": category, "changed": false},
		"server":    server,
		"session":   "s1",
		"request":   map[string]any{"remote_ip": "127.0.0.1", "host": "127.0.0.1:8080", "path": "/", "headers": map[string]string{}},
	})
	if err != nil {
		panic(err)
	}
	return string(doc)
}

func TestPolicyEval(t *testing.T) {
	inputs := writeFiles(t, map[string]string{
		"send.json":        toolCall("mail", "send_message", "write", map[string]any{"to": "a@example.com"}),
		"search.json":      toolCall("mail", "search_messages", "read_only", map[string]any{"query": "invoice"}),
		"pr-evil.json":     toolCall("github", "create_pull_request", "write", map[string]any{"owner": "evil", "repo": "x"}),
		"pr-acme.json":     toolCall("github", "create_pull_request", "write", map[string]any{"owner": "acme", "repo": "x"}),
		"initialize.json":  `{"kind": "request", "method": "initialize", "params": {"protocolVersion": "2025-06-18"}, "server": "mail", "user": {"id": "sam", "claims": {"groups": ["eng"]}}}`,
		"typo.json":        `{"kind": "request", "method": "tools/call", "tools": {"name": "send_message"}}`,
		"not-json.json":    `{"kind": `,
		"permissions.yaml": "mcp:\n  permissions:\n    read_only: allow\n    tools:\n      send_message: needs_approval\n",
		"policy.rego":      "package other\nallow := true\n",
	})
	in := func(name string) string { return filepath.Join(inputs, name) }
	noDecision := writeFiles(t, map[string]string{"p.rego": "package mcp\nanswer := 42\n"})

	tests := []struct {
		name     string
		req      evalRequest
		stdin    string
		want     policy.Decision
		wantCode int
		wantErr  string
	}{
		{"example folder", evalRequest{Input: in("send.json"), Paths: []string{"../../policies", "../../examples/email"}},
			"", policy.Decision{Action: policy.ActionBlock, Reason: "assistants never send email"}, 0, ""},
		{"built-in library with a data file", evalRequest{Input: in("send.json"), DataFiles: []string{"../../examples/email/permissions.json"}},
			"", policy.Decision{Action: policy.ActionBlock, Reason: "assistants never send email"}, 0, ""},
		{"built-in library with YAML data", evalRequest{Input: in("send.json"), DataFiles: []string{in("permissions.yaml")}},
			"", policy.Decision{Action: policy.ActionNeedsApproval, Reason: `tool "send_message" is set to needs_approval`}, 0, ""},
		{"read allowed", evalRequest{Input: in("search.json"), Paths: []string{"../../policies", "../../examples/email"}},
			"", policy.Decision{Action: policy.ActionAllow, Reason: `tool "search_messages" is set to allow`}, 0, ""},
		{"argument rule blocks", evalRequest{Input: in("pr-evil.json"), Paths: []string{"../../policies", "../../examples/repo-rule"}},
			"", policy.Decision{Action: policy.ActionBlock, Reason: `tool "create_pull_request" may only change repositories of acme, not of "evil"`}, 0, ""},
		{"argument rule lets ours through", evalRequest{Input: in("pr-acme.json"), Paths: []string{"../../policies", "../../examples/repo-rule"}},
			"", policy.Decision{Action: policy.ActionAllow, Reason: `tool "create_pull_request" is a write tool, and write tools are set to allow`}, 0, ""},
		{"tool permission query", evalRequest{Input: in("pr-evil.json"), Query: "data.mcp.tool_permission", Paths: []string{"../../policies", "../../examples/repo-rule"}},
			"", policy.Decision{Action: policy.ActionAllow, Reason: `tool "create_pull_request" is a write tool, and write tools are set to allow`}, 0, ""},
		{"built-in library without a table blocks tools", evalRequest{Input: in("search.json")},
			"", policy.Decision{Action: policy.ActionBlock, Reason: `tool "search_messages" is blocked: no permissions table (data.mcp.permissions) is configured`}, 0, ""},
		{"protocol message from stdin", evalRequest{Input: "-"},
			`{"kind": "request", "method": "ping"}`, policy.Decision{Action: policy.ActionAllow, Reason: "protocol message"}, 0, ""},
		{"user and params", evalRequest{Input: in("initialize.json")},
			"", policy.Decision{Action: policy.ActionAllow, Reason: "protocol message"}, 0, ""},
		{"no decision is refused at load", evalRequest{Input: in("search.json"), Paths: []string{noDecision}},
			"", policy.Decision{}, 1, "defines no data.mcp.decision (the decision query)"},
		{"query that is no decision is refused at load", evalRequest{Input: in("search.json"), Query: "data.mcp.categories"},
			"", policy.Decision{}, 1, "defines data.mcp.categories (the decision query) as something other than an object"},
		{"no input", evalRequest{}, "", policy.Decision{}, 1, "--input is required"},
		{"missing input", evalRequest{Input: in("missing.json")}, "", policy.Decision{}, 1, "reading input"},
		{"unknown input member", evalRequest{Input: in("typo.json")}, "", policy.Decision{}, 1, `unknown object member name "tools"`},
		{"a member in another case", evalRequest{Input: "-"}, `{"KIND": "request", "method": "ping"}`, policy.Decision{}, 1, `unknown object member name "KIND"`},
		{"a member twice", evalRequest{Input: "-"}, `{"kind": "request", "method": "ping", "method": "tools/list"}`, policy.Decision{}, 1, `duplicate object member name "method"`},
		{"an unknown kind", evalRequest{Input: "-"}, `{"kind": "bogus", "method": "ping"}`, policy.Decision{}, 1, `kind "bogus"`},
		{"no kind", evalRequest{Input: "-"}, `{}`, policy.Decision{}, 1, `kind ""`},
		{"an unknown direction", evalRequest{Input: "-"}, `{"kind": "request", "method": "ping", "direction": "sideways"}`, policy.Decision{}, 1, `direction "sideways"`},
		{"a header in capitals", evalRequest{Input: "-"}, `{"kind": "request", "method": "ping", "request": {"headers": {"X-Team": "ops"}}}`, policy.Decision{}, 1, `request header "X-Team": the gateway writes header names in lower case`},
		{"a credential header", evalRequest{Input: "-"}, `{"kind": "request", "method": "ping", "request": {"headers": {"authorization": "Bearer x"}}}`, policy.Decision{}, 1, `never shows a policy credentials`},
		{"a tool on another method", evalRequest{Input: "-"}, `{"kind": "request", "method": "ping", "tool": {"name": "x", "category": "write"}}`, policy.Decision{}, 1, "tool is set on a client's tools/call only"},
		{"a tools/call without its tool", evalRequest{Input: "-"}, `{"kind": "request", "method": "tools/call", "params": {"name": "x"}}`, policy.Decision{}, 1, "a tools/call has a tool"},
		{"a tool params do not name", evalRequest{Input: "-"}, `{"kind": "request", "method": "tools/call", "params": {"name": "x"}, "tool": {"name": "y", "category": "write"}}`, policy.Decision{}, 1, `tool.name "y" is not params.name x`},
		{"a category its annotations contradict", evalRequest{Input: "-"}, `{"kind": "request", "method": "tools/call", "tool": {"name": "x", "annotations": {"destructiveHint": true}, "category": "read_only"}}`, policy.Decision{}, 1, `its annotations make it "destructive"`},
		{"input not JSON", evalRequest{Input: in("not-json.json")}, "", policy.Decision{}, 1, "input"},
		{"two input values", evalRequest{Input: "-"}, `{"kind": "request"} {}`, policy.Decision{}, 1, "after top-level value"},
		{"Rego as data", evalRequest{Input: in("search.json"), DataFiles: []string{in("policy.rego")}}, "", policy.Decision{}, 1, "--data takes JSON or YAML"},
		{"data that clashes with the policy's", evalRequest{Input: in("send.json"), DataFiles: []string{"../../examples/email/permissions.json"}, Paths: []string{"../../policies", "../../examples/email"}},
			"", policy.Decision{}, 1, "permissions"},
		{"broken policy", evalRequest{Input: in("search.json"), Paths: []string{in("not-json.json")}}, "", policy.Decision{}, 1, "loading policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code, err := evalPolicy(context.Background(), strings.NewReader(tt.stdin), &out, tt.req)
			checkOutcome(t, code, err, tt.wantCode, tt.wantErr)
			if tt.want.Action == "" {
				if out.Len() > 0 {
					t.Errorf("printed %s, want nothing", out.String())
				}
				return
			}
			var got policy.Decision
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("output %q is not a decision: %v", out.String(), err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decision %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestPolicyCommand runs `policy test` and `policy eval` as registered,
// flags and all.
func TestPolicyCommand(t *testing.T) {
	input := writeFiles(t, map[string]string{"call.json": toolCall("tracker", "delete_issue", "destructive", map[string]any{"id": 1})})
	tests := []struct {
		args       []string
		wantErr    bool
		wantOutput string
	}{
		{[]string{"test", "../../policies", "../../examples/tracker"}, false, "data.tracker_test.test_deleting_is_blocked: PASS"},
		{[]string{"test"}, true, ""},
		{[]string{"eval", "--input", filepath.Join(input, "call.json"), "../../policies", "../../examples/repo-rule"}, false, `"action": "block"`},
		{[]string{"eval", "-i", filepath.Join(input, "call.json"), "-d", "../../examples/email/permissions.json", "-q", "data.mcp.tool_permission"}, false,
			`"reason": "tool \"delete_issue\" is a destructive tool, and destructive tools are set to block"`},
		{[]string{"eval", "../../policies"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd := &cobra.Command{Use: "policy"}
			caddycmd.Commands()["policy"].CobraFunc(cmd)
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(tt.args)
			err := cmd.Execute()
			if (err != nil) != tt.wantErr {
				t.Errorf("error %v, want error: %v", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOutput) {
				t.Errorf("output lacks %q:\n%s", tt.wantOutput, out.String())
			}
		})
	}
}

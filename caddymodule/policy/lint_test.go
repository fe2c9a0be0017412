package policy

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/policies"
)

// TestPolicyWarnings: a policy that loads but whose rules no decision
// reads, or that reads members of input the gateway never sets, loads
// with a warning naming them; one that does neither loads without.
func TestPolicyWarnings(t *testing.T) {
	table := map[string]any{"mcp": map[string]any{"permissions": map[string]any{"write": "allow"}}}
	tests := []struct {
		name string
		// files are the policy's own, beside the library (when library).
		files   map[string]string
		library bool
		data    map[string]any
		// valid checks approvers as the gateway does.
		valid bool
		// want are texts the warnings must hold, in order, one warning
		// for each of wantCount.
		want      []string
		wantCount int
	}{
		{name: "the library alone", library: true, data: table},
		{name: "an organization's rule the library reads", library: true, data: table, files: map[string]string{"org.rego": `package mcp
import rego.v1
block contains "no sending" if input.tool.name == "send_email"`}},
		{name: "a rule misspelt", library: true, data: table, files: map[string]string{"org.rego": `package mcp
import rego.v1
blocks contains "no sending" if input.tool.name == "send_email"`},
			want: []string{"the policy's rules data.mcp.blocks (", "org.rego:3) are read by neither data.mcp.decision nor data.mcp.tool_permission"}, wantCount: 1},
		{name: "a rule in another package", library: true, data: table, files: map[string]string{"org.rego": `package org
import rego.v1
block contains "no sending" if input.tool.name == "send_email"
deny contains "no deleting" if input.tool.name == "delete"`},
			want: []string{"data.org.block (", "data.org.deny ("}, wantCount: 1},
		{name: "a library helper's name in another package", library: true, data: table, files: map[string]string{"org.rego": `package org
import rego.v1
resource_uris contains input.params.uri if input.method == "resources/read"`},
			want: []string{"data.org.resource_uris ("}, wantCount: 1},
		{name: "a rule the library's decision reads, without the library", files: map[string]string{"policy.rego": `package mcp
import rego.v1
default decision := {"action": "allow", "reason": "ok"}
block contains "no" if input.tool.name == "rm"`},
			want: []string{"data.mcp.block ("}, wantCount: 1},
		{name: "the library's rules from files", data: table, files: libraryFiles(t)},
		{name: "helpers a decision reads", files: map[string]string{"policy.rego": `package mcp
import rego.v1
default decision := {"action": "block", "reason": "no"}
decision := {"action": "allow", "reason": "ok"} if allowed(input.tool.name)
allowed(name) if data.lists.tools[name]
test_allowed if allowed("x") with data.lists.tools as {"x": true}`, "lists.rego": `package lists
tools := {"echo": true}`}},
		{name: "a rule reached through a variable", files: map[string]string{"policy.rego": `package mcp
import rego.v1
default decision := {"action": "block", "reason": "no"}
decision := {"action": "allow", "reason": "ok"} if data.rules[input.server].allow`, "rules.rego": `package rules.tracker
import rego.v1
allow if input.tool.name == "echo"`}},
		{name: "a member the gateway never sets", files: map[string]string{"policy.rego": `package mcp
import rego.v1
default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "acme"} if input.tool.args.repo == "acme/x"
decision := {"action": "block", "reason": "bot"} if input.user.claims.bot
decision := {"action": "block", "reason": "ua"} if input.request.headers["user-agent"] == "x"
decision := {"action": "block", "reason": "x"} if input.params.arguments.x
decision := {"action": "block", "reason": "form"} if input.client.capabilities.elicitation.forms
decision := {"action": "block", "reason": "ip"} if input.remote_ip == "10.0.0.1"`},
			want: []string{"the policy reads input.client.capabilities.elicitation.forms, input.remote_ip, input.tool.args, which the gateway never sets"}, wantCount: 1},
		{name: "a member read below a value", files: map[string]string{"policy.rego": `package mcp
import rego.v1
default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if input.method.name == "x"`},
			want: []string{"the policy reads input.method.name, which"}, wantCount: 1},
		{name: "approvers that are no principal", library: true, data: table, valid: true, files: map[string]string{"org.rego": `package mcp
import rego.v1
needs_approval contains "sending is reviewed" if input.tool.name == "send_email"
approvers contains "security" if input.tool.name == "send_email"
approvers contains "group:security" if input.tool.name == "send_email"
approvers contains name if { some name in data.reviewers }`, "own.rego": `package own
import rego.v1
decision := {"action": "needs_approval", "reason": "x", "approvers": ["Group:leads", "inbox:bob"]}
also := {"approvers": {"caller", "admins"}}`},
			want: []string{`the policy names approvers "Group:leads", "admins", "security", which are not principals`}, wantCount: 2},
		{name: "approvers unchecked without a check", library: true, data: table, files: map[string]string{"org.rego": `package mcp
import rego.v1
approvers contains "security" if input.tool.name == "send_email"`}},
		{name: "a document misspelt", library: true, data: table, files: map[string]string{"org.rego": `package mcp
import rego.v1
block contains "writes are off" if {
	input.tool.category == "write"
	data.mcp.permission.write == "block"
}
block contains "not listed" if not data.lists.Tools[input.tool.name]
block contains "odd" if data.mcp.alowed
block contains "optional" if data.mcp.extra.reasons[input.tool.name]
allowed := true`, "lists/data.json": `{"tools": {"echo": true}}`},
			want: []string{"the policy reads data.lists.Tools (did you mean data.lists.tools?), data.mcp.alowed (did you mean data.mcp.allowed?), data.mcp.permission (did you mean data.mcp.permissions?), which neither a rule nor the data defines"}, wantCount: 2},
		{name: "the whole input", files: map[string]string{"policy.rego": `package mcp
import rego.v1
default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if walk(input, [_, "x"])`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			opts := Options{Data: tt.data, Logger: zap.New(core)}
			if len(tt.files) > 0 {
				opts.Paths = []string{writePolicy(t, tt.files)}
			}
			if tt.library {
				opts.Modules = policies.Library()
			}
			if tt.valid {
				opts.ValidApprover = approval.ValidPrincipal
			}
			engine, err := New(context.Background(), opts)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer engine.Close()
			warnings := engine.warnings()
			if len(warnings) != tt.wantCount {
				t.Fatalf("warnings = %q, want %d", warnings, tt.wantCount)
			}
			all := strings.Join(warnings, "\n")
			for _, want := range tt.want {
				at := strings.Index(all, want)
				if at < 0 {
					t.Fatalf("warnings %q lack %q", warnings, want)
				}
				all = all[at+len(want):]
			}
			if logged := logs.FilterMessage("policy warning").Len(); logged != tt.wantCount {
				t.Errorf("logged %d policy warnings, want %d", logged, tt.wantCount)
			}
		})
	}
}

// libraryFiles returns the shipped library's modules, tests left out, as
// files to load from a folder.
func libraryFiles(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	for name, source := range policies.Library() {
		if !strings.HasSuffix(name, "_test.rego") {
			files[strings.ReplaceAll(name, "/", "_")] = source
		}
	}
	if len(files) == 0 {
		t.Fatal("the library has no modules")
	}
	return files
}

// TestInputMembersKnown keeps the members lint knows in step with the
// document Value builds: every member of a full input is one it knows.
func TestInputMembersKnown(t *testing.T) {
	in := toolInput("t")
	in.Params = map[string]any{"name": "t"}
	in.Direction, in.Server, in.Session, in.ProtocolVersion = DirectionClientToServer, "tracker", "s1", "2025-06-18"
	in.Request = Request{RemoteIP: "10.0.0.1", Host: "gw.example", Path: "/mcp", Headers: map[string]string{"user-agent": "test"}}
	in.Tool.Annotations, in.Tool.Category, in.Tool.Changed = map[string]any{"readOnlyHint": true}, "read_only", true
	in.User = &User{ID: "ada", Claims: map[string]any{"groups": []any{"eng"}}}
	in.Client = &Client{Capabilities: ClientCapabilities{Sampling: true, Elicitation: ElicitationCapability{Form: true}}}
	use := &inputUse{}
	var add func(path []string, v any)
	add = func(path []string, v any) {
		object, ok := v.(map[string]any)
		if !ok {
			use.add(path)
			return
		}
		for _, name := range slices.Sorted(maps.Keys(object)) {
			add(append(slices.Clone(path), name), object[name])
		}
	}
	add(nil, document(t, in))
	if unknown := unknownInputMembers(use, reflect.TypeFor[Input](), "input"); len(unknown) > 0 {
		t.Errorf("members of the input document lint does not know: %v", unknown)
	}
}

// TestTableNames: the tools and servers a permissions table names are
// read from the configuration's table and from the policy's data files,
// as the policy in force has them.
func TestTableNames(t *testing.T) {
	dir := writePolicy(t, map[string]string{"mcp/permissions/data.json": `{
		"tools": {"send_email": "block", "Delete_Issue": "block"},
		"servers": {"Tracker": {"write": "block"}, "mail": {"tools": {"send_email": "allow", "archive": "allow"}}, "odd": "block"}
	}`})
	engine, err := New(context.Background(), Options{Paths: []string{dir}, Modules: policies.Library()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer engine.Close()
	tests := []struct {
		server string
		want   []string
	}{
		{"mail", []string{"Delete_Issue", "archive", "send_email"}},
		{"tracker", []string{"Delete_Issue", "send_email"}},
		{"odd", []string{"Delete_Issue", "send_email"}},
	}
	for _, tt := range tests {
		if got := engine.TableTools(tt.server); !slices.Equal(got, tt.want) {
			t.Errorf("TableTools(%q) = %q, want %q", tt.server, got, tt.want)
		}
	}
	if got, want := engine.TableServers(), []string{"Tracker", "mail", "odd"}; !slices.Equal(got, want) {
		t.Errorf("TableServers() = %q, want %q", got, want)
	}
	configured, err := New(context.Background(), Options{Modules: policies.Library(),
		Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{"write": "allow", "tools": map[string]any{"create_issue": "block"}}}}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer configured.Close()
	if got, want := configured.TableTools("tracker"), []string{"create_issue"}; !slices.Equal(got, want) || len(configured.TableServers()) != 0 {
		t.Errorf("configured table: TableTools = %q, TableServers = %q; want %q and none", got, configured.TableServers(), want)
	}
}

// TestBundleTestsNotWarned: a bundle built with `opa build` carries the
// policy's tests; their rules (packages named *_test), which no decision
// reads, are not warned of, and the policy's own unread rules are, a
// file's named as a test's included (in a bundle it is in force).
func TestBundleTestsNotWarned(t *testing.T) {
	server := &bundleServer{}
	server.serve(t, "1", map[string]string{
		"/mcp/policy.rego":      bundlePolicy + "\nunused := 1\n",
		"/mcp/policy_test.rego": "package mcp_test\nimport rego.v1\ntable := {\"t\": \"allow\"}\ntest_allowed if true\n",
		"/mcp/more.rego":        "package mcp.more_test\nfixture := 1\n",
		"/mcp/lib_test.rego":    "package mcp.lib\nreason := \"(library)\"\nunused := 2\n",
	}, map[string]any{"revision_note": "one"})
	ts := server.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engine := newEngine(t, ctx, Options{
		Data:   map[string]any{"mcp": map[string]any{"permissions": map[string]any{"tools": map[string]any{"t": "allow"}}}},
		Bundle: &BundleConfig{URL: ts.URL, Resource: "bundles/mcp.tar.gz", MinDelay: time.Second, MaxDelay: 2 * time.Second},
	})
	warnings := engine.warnings()
	if len(warnings) != 1 || !strings.Contains(warnings[0], "data.mcp.unused (") || !strings.Contains(warnings[0], "data.mcp.lib.unused (") ||
		strings.Contains(warnings[0], "data.mcp_test") || strings.Contains(warnings[0], "more_test") {
		t.Errorf("warnings = %q; want one, of data.mcp.unused and data.mcp.lib.unused (in force, though in a file named as a test's) alone", warnings)
	}
}

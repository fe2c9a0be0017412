package policy

import (
	"context"
	"maps"
	"testing"

	"github.com/mcpgate/mcpgate/policies"
)

// TestDecidesWithoutArguments: a policy decides calls without their
// arguments when it reads nothing of a tools/call but its tool's name
// (and what the gateway knows: the tool's annotations, the caller, the
// request) and params other than its arguments; any way of reaching the
// arguments (directly, through input.params, input.tool or input whole,
// a member chosen at run time, the library's argument helpers) says it
// may read them.
func TestDecidesWithoutArguments(t *testing.T) {
	const head = "package mcp\n\nimport rego.v1\n\n"
	tests := []struct {
		name    string
		modules map[string]string
		want    bool
	}{
		{"the library and its table", policies.Library(), true},
		{"the tool's name and the caller", map[string]string{"p.rego": head + `decision := {"action": "block", "reason": "x"} if { input.tool.name == "send"; not "admins" in input.user.claims.groups }
default decision := {"action": "allow", "reason": "ok"}`}, true},
		{"params' name", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if input.params.name == "send"`}, true},
		{"an argument", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if input.tool.arguments.to == "all"`}, false},
		{"an argument by object.get", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if object.get(input.tool.arguments, "to", "") == "all"`}, false},
		{"argument names", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if input.tool.argument_names.to`}, false},
		{"the credentials in the arguments", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if count(input.tool.secrets) > 0`}, false},
		{"params' arguments", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if input.params.arguments.to == "all"`}, false},
		{"params' _meta (not an argument: a list's call carries none)", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if input.params._meta.x`}, true},
		{"params whole", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if count(input.params) > 3`}, false},
		{"the tool whole", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if { t := input.tool; t.arguments.to == "all" }`}, false},
		{"input whole", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if { walk(input, [path, v]); v == "all" }`}, false},
		{"a member chosen at run time", map[string]string{"p.rego": head + `default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": "x"} if { some k; input.tool[k].to == "all" }`}, false},
	}
	argumentRule := head + `import data.mcp

blocks contains "no mass mail" if { input.tool.name == "send"; mcp.argument(input.tool, "to") == "all" }`
	withRule := maps.Clone(policies.Library())
	withRule["org.rego"] = argumentRule
	tests = append(tests, struct {
		name    string
		modules map[string]string
		want    bool
	}{"the library with a rule reading an argument through its helper", withRule, false})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(context.Background(), Options{Modules: tt.modules})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = e.Close() })
			if got := e.DecidesWithoutArguments(); got != tt.want {
				t.Errorf("DecidesWithoutArguments() = %v; want %v", got, tt.want)
			}
		})
	}
}

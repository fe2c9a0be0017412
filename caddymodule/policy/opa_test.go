package policy

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/mcpgate/mcpgate/policies"
)

// TestDecidesAsOPA: the engine, built as the gateway builds it (the input
// made of what the policy reads, rules that read no input shared between
// evaluations, decisions cached), decides every input as plain OPA does on
// the whole input, errors included (an error blocks), each input twice
// (the second may be recalled), in order and then in reverse on a second
// engine. The policies include those on which an engine that evaluated
// them ahead of their input (partial evaluation, as an earlier version
// did) decided otherwise: conflicts, and built-in errors that depend on
// the order expressions run in.
func TestDecidesAsOPA(t *testing.T) {
	ctx := context.Background()
	parse := func(source string) map[string]*ast.Module {
		t.Helper()
		module, err := ast.ParseModule("policy.rego", "package mcp\n"+source)
		if err != nil {
			t.Fatalf("parsing %s: %v", source, err)
		}
		return map[string]*ast.Module{"policy.rego": module}
	}
	bench, err := loader.NewFileLoader().Filtered([]string{"../testdata/benchpolicy"}, LoadFilter(false))
	if err != nil {
		t.Fatalf("loading the benchmarks' policy: %v", err)
	}
	library := map[string]*ast.Module{}
	for name, source := range policies.Library() {
		if library[name], err = ast.ParseModule(name, source); err != nil {
			t.Fatalf("parsing the library: %v", err)
		}
	}
	tools := map[string]any{"echo": "allow", "create_issue": map[string]any{"action": "needs_approval", "approvers": []any{"caller"}}}
	for i := range 50 {
		tools["tool_"+strconv.Itoa(i)] = []string{"allow", "needs_approval", "block"}[i%3]
	}
	table := map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "write": "needs_approval", "destructive": "block", "tools": tools,
		"servers": map[string]any{"tracker": map[string]any{"write": "block"}},
	}}}
	data := map[string]any{
		"tools":       map[string]any{"echo": "allow", "delete_repo": "block"},
		"pilot_tools": map[string]any{"echo": "allow", "delete_repo": "allow"},
		"config":      map[string]any{"enforce_limit": false},
		"reason":      "only echo",
	}
	const allowAcme = `
default decision := {"action": "block", "reason": "not allowed"}
decision := {"action": "allow", "reason": "protocol"} if input.method != "tools/call"
decision := {"action": "allow", "reason": "acme"} if startswith(repo, "acme/")
`
	const allowIf = `
default decision := {"action": "block", "reason": "not allowed"}
decision := {"action": "allow", "reason": "ok"} if allow
`
	tests := []struct {
		name    string
		modules map[string]*ast.Module
		data    map[string]any
	}{
		{"tool table with an argument rule", bench.ParsedModules(), bench.Documents},
		{"shipped library with a permissions table", library, table},
		{"else chains on input", parse(`
decision := {"action": "allow", "reason": "echo"} if input.tool.name == "echo"
else := {"action": "block", "reason": data.reason}
`), data},
		{"a helper rule defined twice", parse(allowAcme + `
repo := input.tool.arguments.repo
repo := input.tool.arguments.repository
`), data},
		{"a helper rule with many solutions", parse(allowAcme + `
repo := x if {
	some name, x in input.tool.arguments
	endswith(name, "repo")
}
`), data},
		{"a function defined twice", parse(allowAcme + `
repo := owner(input.tool.arguments.repo)
owner(x) := x if startswith(x, "acme/")
owner(x) := concat("/", ["evil", x]) if contains(x, "..")
`), data},
		{"an object rule with a key twice", parse(allowIf + `
by_length[count(name)] := name if some name in input.tool.arguments.names
allow if count(by_length) < 3
allow if input.tool.name == "echo"
`), data},
		{"the decision defined twice, without a default", parse(`
decision := {"action": "allow", "reason": "fine"} if input.tool.name == "echo"
decision := {"action": "allow", "reason": "fine"} if input.tool.arguments.repo == "acme/app"
decision := {"action": "block", "reason": "no evil"} if input.tool.arguments.repo == "evil/x"
decision := {"action": "allow", "reason": "protocol"} if input.method != "tools/call"
`), data},
		{"a rule under with data", parse(`
table_action := object.get(data.tools, input.tool.name, "block")
default decision := {"action": "block", "reason": "default"}
decision := {"action": "needs_approval", "reason": "allowed by the pilot table"} if {
	table_action == "allow" with data.tools as data.pilot_tools
	table_action != "allow"
}
decision := {"action": "allow", "reason": "table"} if table_action == "allow"
`), data},
		{"a rule of data under with data", parse(`
n := count(data.tools)
default decision := {"action": "block", "reason": "default"}
decision := {"action": "allow", "reason": "counted"} if {
	n == 0 with data.tools as {}
	n == 2
}
`), data},
		{"a constant rule below a rule of keys from the input", parse(`
default decision := {"action": "block", "reason": "not allowed"}
decision := {"action": "allow", "reason": "ab"} if a.b == "x"
a.b := "x"
a[k] := "y" if k := input.tool.name
`), data},
		{"a built-in error in one of two definitions", parse(allowIf + `
allow if regex.match("^acme/", input.tool.arguments.repo)
allow if input.tool.name == "echo"
`), data},
		{"a built-in error beside a conjunct false on data", parse(`
default decision := {"action": "allow", "reason": "no objection"}
decision := {"action": "block", "reason": "over the limit"} if over_limit
over_limit if {
	to_number(input.tool.arguments.amount) > 1000
	data.config.enforce_limit
}
`), data},
		{"a built-in error in an iteration", parse(`
default decision := {"action": "block", "reason": "not allowed"}
decision := {"action": "allow", "reason": "acme repo"} if {
	some name, value in input.tool.arguments
	startswith(value, "acme/")
	name == "repo"
}
`), data},
		{"an iteration filtered first", parse(`
default decision := {"action": "block", "reason": "not allowed"}
decision := {"action": "allow", "reason": "acme repo"} if {
	some name, value in input.tool.arguments
	endswith(name, "repo")
	startswith(value, "acme/")
}
`), data},
	}
	call := func(tool string, arguments map[string]any, category string) *Input {
		return &Input{
			Kind: "request", Method: "tools/call", Direction: DirectionClientToServer, Server: "tracker",
			Params: map[string]any{"name": tool, "arguments": arguments},
			Tool:   &Tool{Name: tool, Arguments: arguments, Category: category},
		}
	}
	inputs := []*Input{
		call("echo", map[string]any{"repo": "acme/widgets"}, "read_only"),
		call("echo", map[string]any{"repo": "evil/widgets"}, "read_only"),
		call("echo", map[string]any{"repo": 7}, "read_only"),
		call("echo", map[string]any{"repo": "acme/app", "repository": "evil/app"}, "read_only"),
		call("echo", map[string]any{"repo": "acme/app", "other_repo": "evil/app"}, "read_only"),
		call("echo", map[string]any{"repo": "acme/../x"}, "read_only"),
		call("echo", map[string]any{"repo": "evil/x"}, "read_only"),
		call("echo", map[string]any{"repo": "acme/x", "limit": 5}, "read_only"),
		call("echo", map[string]any{"names": []any{"ab", "cd"}}, "read_only"),
		call("echo", map[string]any{"names": []any{"ab", "cde"}}, "read_only"),
		call("echo", map[string]any{"amount": "lots"}, "write"),
		call("echo", nil, "write"),
		call("delete_repo", map[string]any{}, "destructive"),
		call("tool_0003", map[string]any{}, "destructive"),
		call("tool_4", map[string]any{}, "write"),
		call("create_issue", map[string]any{}, "write"),
		call("not_in_any_table", map[string]any{}, "read_only"),
		call("b", map[string]any{}, "read_only"),
		{Kind: "request", Method: "tools/list", Direction: DirectionClientToServer},
		{Kind: "request", Method: "sampling/createMessage", Direction: DirectionServerToClient},
		{Kind: "notification", Method: "notifications/initialized"},
		{},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := make([]string, len(inputs))
			for i, in := range inputs {
				want[i] = decidedByOPA(ctx, t, tt.modules, tt.data, in)
			}
			for pass := range 2 {
				b, err := newPolicyBuilder(Options{Timeout: 10 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				q, err := b.build(ctx, tt.modules, tt.data, "the test")
				if err != nil {
					t.Fatalf("building: %v", err)
				}
				e := &Engine{timeout: 10 * time.Second}
				e.queries.Store(q)
				for n := range 2 * len(inputs) {
					i := n % len(inputs)
					if pass == 1 {
						i = len(inputs) - 1 - i
					}
					if got := outcome(e.Decide(ctx, inputs[i])); got != want[i] {
						t.Errorf("input %d (pass %d, time %d): %s, want %s as OPA decides", i, pass, n/len(inputs)+1, got, want[i])
					}
				}
			}
		})
	}
}

// decidedByOPA is how plain OPA decides the whole input, with strict
// built-in errors, as outcome writes it.
func decidedByOPA(ctx context.Context, t *testing.T, modules map[string]*ast.Module, data map[string]any, in *Input) string {
	t.Helper()
	whole, err := in.Value()
	if err != nil {
		t.Fatal(err)
	}
	options := []func(*rego.Rego){rego.Query("data.mcp.decision"), rego.Store(inmem.NewFromObject(data)),
		rego.ParsedInput(whole), rego.StrictBuiltinErrors(true)}
	for _, module := range modules {
		options = append(options, rego.ParsedModule(module))
	}
	rs, err := rego.New(options...).Eval(ctx)
	if err != nil {
		return outcome(Decision{}, err)
	}
	return outcome(parseDecision(rs))
}

// outcome writes a decision, or an error as a block.
func outcome(d Decision, err error) string {
	if err != nil {
		return "block (error)"
	}
	return fmt.Sprintf("%s %q %v", d.Action, d.Reason, d.Approvers)
}

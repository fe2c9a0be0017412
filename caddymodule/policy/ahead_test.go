package policy

import (
	"cmp"
	"context"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"

	"github.com/mcpgate/mcpgate/policies"
)

// TestEvaluatedAhead checks that a policy evaluated ahead of its input
// decides every input exactly as the policy prepared as it is does, and
// that a policy that cannot be evaluated ahead is prepared as it is.
func TestEvaluatedAhead(t *testing.T) {
	ctx := context.Background()
	bench, err := loader.NewFileLoader().Filtered([]string{"../testdata/benchpolicy"}, LoadFilter(false))
	if err != nil {
		t.Fatalf("loading the benchmarks' policy: %v", err)
	}
	tools := map[string]any{"echo": "allow", "create_issue": map[string]any{"action": "needs_approval", "approvers": []any{"caller"}}}
	for i := range 50 {
		tools["tool_"+strconv.Itoa(i)] = []string{"allow", "needs_approval", "block"}[i%3]
	}
	table := map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "write": "needs_approval", "destructive": "block", "tools": tools,
		"servers": map[string]any{"tracker": map[string]any{"write": "block"}},
	}}}
	library := map[string]*ast.Module{}
	for name, source := range policies.Library() {
		if library[name], err = ast.ParseModule(name, source); err != nil {
			t.Fatalf("parsing the library: %v", err)
		}
	}
	parse := func(source string) map[string]*ast.Module {
		t.Helper()
		module, err := ast.ParseModule("policy.rego", source)
		if err != nil {
			t.Fatalf("parsing %s: %v", source, err)
		}
		return map[string]*ast.Module{"policy.rego": module}
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
		call("echo", nil, "write"),
		call("tool_0003", map[string]any{}, "destructive"),
		call("tool_4", map[string]any{}, "write"),
		call("create_issue", map[string]any{}, "write"),
		call("not_in_any_table", map[string]any{}, "read_only"),
		{Kind: "request", Method: "tools/list", Direction: DirectionClientToServer},
		{Kind: "request", Method: "sampling/createMessage", Direction: DirectionServerToClient},
		{Kind: "notification", Method: "notifications/initialized"},
		{},
	}
	tests := []struct {
		name    string
		modules map[string]*ast.Module
		data    map[string]any
		// ahead is whether the policy can be evaluated ahead.
		ahead bool
		// timeout bounds each evaluation; 0 for a long one, so that a
		// policy that can be evaluated ahead is, however busy the
		// machine.
		timeout time.Duration
	}{
		{"tool table with an argument rule", bench.ParsedModules(), bench.Documents, true, 0},
		{"shipped library with a permissions table", library, table, true, 0},
		{"else chains on input", parse(`package mcp
decision := {"action": "allow", "reason": "echo"} if input.tool.name == "echo"
else := {"action": "block", "reason": data.reason}
`), map[string]any{"reason": "only echo"}, true, 0},
		{"failure on data alone", parse(`package mcp
decision := {"action": "allow"} if input.method == "tools/list"
decision := {"action": "block", "reason": sprintf("%d", [to_number(data.limit)])} if input.method == "tools/call"
`), map[string]any{"limit": "ten"}, false, 0},
		{"longer than the evaluation timeout", parse(`package mcp
decision := {"action": "allow", "reason": sprintf("%d", [count(slow)])}
slow contains [a, b] if {
	some a in numbers.range(1, 10000)
	some b in numbers.range(1, 10000)
}
`), nil, false, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := cmp.Or(tt.timeout, 10*time.Second)
			b, err := newPolicyBuilder(Options{Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.prepare(ctx, tt.modules, tt.data, "the test", true); errors.Is(err, errAhead) == tt.ahead {
				t.Fatalf("evaluating ahead: error %v, want it to succeed: %v", err, tt.ahead)
			}
			built, err := b.build(ctx, tt.modules, tt.data, "the test")
			if err != nil {
				t.Fatalf("building: %v", err)
			}
			plain, err := b.prepare(ctx, tt.modules, tt.data, "the test", false)
			if err != nil {
				t.Fatalf("preparing as it is: %v", err)
			}
			e := &Engine{timeout: timeout}
			for i, input := range inputs {
				for _, query := range []struct {
					name        string
					built, want *preparedQuery
				}{{"decision", &built.decision, &plain.decision}, {"permission", &built.permission, &plain.permission}} {
					got, gotErr := e.result(ctx, built, query.built, input)
					want, wantErr := e.result(ctx, plain, query.want, input)
					if !reflect.DeepEqual(got, want) || (gotErr != nil) != (wantErr != nil) {
						t.Errorf("input %d, %s: %+v (error %v), want %+v (error %v)", i, query.name, got, gotErr, want, wantErr)
					}
				}
			}
		})
	}
}

// TestEvaluatedAheadKeepsConflicts: a rule that gives two values for one
// input is an error in Rego (eval_conflict_error), which the gateway turns
// into a block; evaluated ahead of the input, the rule's definitions (or
// solutions) become alternatives, of which any one that holds would
// decide. Every policy here conflicts on some inputs: built as the gateway
// builds it, it must decide every input as the policy prepared as it is
// does, errors included.
func TestEvaluatedAheadKeepsConflicts(t *testing.T) {
	ctx := context.Background()
	const allowAcme = `
default decision := {"action": "block", "reason": "not allowed"}
decision := {"action": "allow", "reason": "protocol"} if input.method != "tools/call"
decision := {"action": "allow", "reason": "acme"} if startswith(repo, "acme/")
`
	policies := []struct{ name, source string }{
		{"a helper rule defined twice", allowAcme + `
repo := input.tool.arguments.repo
repo := input.tool.arguments.repository
`},
		{"a helper rule with many solutions", allowAcme + `
repo := x if {
	some name, x in input.tool.arguments
	endswith(name, "repo")
}
`},
		{"a function defined twice", allowAcme + `
repo := owner(input.tool.arguments.repo)
owner(x) := x if startswith(x, "acme/")
owner(x) := concat("/", ["evil", x]) if contains(x, "..")
`},
		{"a partial object rule with a key twice", `
default decision := {"action": "block", "reason": "not allowed"}
decision := {"action": "allow", "reason": "protocol"} if input.method != "tools/call"
decision := {"action": "allow", "reason": "short names"} if count(by_length) < 3
by_length[count(name)] := name if some name in input.tool.arguments.names
`},
		{"the decision without a default, holding twice", `
decision := {"action": "allow", "reason": "fine"} if input.tool.name == "echo"
decision := {"action": "allow", "reason": "fine"} if input.tool.arguments.repo == "acme/app"
decision := {"action": "block", "reason": "no evil"} if input.tool.arguments.repo == "evil/x"
decision := {"action": "allow", "reason": "protocol"} if input.method != "tools/call"
`},
		{"the decision defined twice", `
default decision := {"action": "block", "reason": "not allowed"}
decision := {"action": "allow", "reason": "protocol"} if input.method != "tools/call"
decision := {"action": "allow", "reason": "echo"} if input.tool.name == "echo"
decision := {"action": "block", "reason": "no evil"} if input.tool.arguments.repo == "evil/x"
`},
	}
	call := func(arguments map[string]any) *Input {
		return &Input{Kind: "request", Method: "tools/call", Direction: DirectionClientToServer, Server: "s",
			Params: map[string]any{"name": "echo", "arguments": arguments},
			Tool:   &Tool{Name: "echo", Arguments: arguments, Category: "read_only"}}
	}
	inputs := []*Input{
		call(map[string]any{"repo": "acme/app"}),
		call(map[string]any{"repo": "acme/app", "repository": "evil/app"}),
		call(map[string]any{"repo": "acme/app", "other_repo": "evil/app"}),
		call(map[string]any{"repo": "acme/../x"}),
		call(map[string]any{"repo": "evil/x"}),
		call(map[string]any{"names": []any{"ab", "cd"}}),
		call(map[string]any{"names": []any{"ab", "cde"}}),
		{Kind: "request", Method: "tools/list", Direction: DirectionClientToServer},
	}
	for _, p := range policies {
		t.Run(p.name, func(t *testing.T) {
			module, err := ast.ParseModule("policy.rego", "package mcp\n"+p.source)
			if err != nil {
				t.Fatal(err)
			}
			modules := map[string]*ast.Module{"policy.rego": module}
			b, err := newPolicyBuilder(Options{Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			built, err := b.build(ctx, modules, nil, "the test")
			if err != nil {
				t.Fatalf("building: %v", err)
			}
			plain, err := b.prepare(ctx, modules, nil, "the test", false)
			if err != nil {
				t.Fatalf("preparing as it is: %v", err)
			}
			e := &Engine{timeout: 10 * time.Second}
			conflicts := 0
			for i, input := range inputs {
				got, gotErr := e.result(ctx, built, &built.decision, input)
				want, wantErr := e.result(ctx, plain, &plain.decision, input)
				if wantErr != nil {
					conflicts++
				}
				if !reflect.DeepEqual(got, want) || (gotErr != nil) != (wantErr != nil) {
					t.Errorf("input %d: %+v (error %v), want %+v (error %v)", i, got, gotErr, want, wantErr)
				}
			}
			if conflicts == 0 {
				t.Errorf("no input conflicts: the case tests nothing")
			}
		})
	}
}

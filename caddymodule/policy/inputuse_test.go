package policy

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/mcpgate/mcpgate/policies"
)

// richInput sets every member of the input document.
func richInput() *Input {
	arguments := map[string]any{"repo": "acme/widgets", "labels": []any{"p1", "bug"}, "options": map[string]any{"draft": true, "depth": 3.0}}
	return &Input{
		Kind: "request", Method: "tools/call", Direction: DirectionClientToServer,
		Params: map[string]any{"name": "create_issue", "arguments": arguments, "_meta": map[string]any{"progressToken": "t1"}},
		Tool: &Tool{Name: "create_issue", Arguments: arguments, Annotations: map[string]any{"destructiveHint": false},
			Category: "write", Changed: true},
		Server: "tracker", Session: "s-1", ProtocolVersion: "2025-11-25",
		User: &User{ID: "alice", Claims: map[string]any{"groups": []any{"eng"}, "email": "alice@example.com"}},
		Request: Request{RemoteIP: "192.0.2.7", Host: "gw.example.com", Path: "/mcp", Headers: map[string]string{
			"user-agent": "claude", "x-team": "platform", "x-field": "repo", "accept": "application/json",
		}},
	}
}

// paths lists the members a use reads, as dotted paths ("" for the whole
// document), sorted.
func (u *inputUse) paths() []string {
	var out []string
	var walk func(prefix string, u *inputUse)
	walk = func(prefix string, u *inputUse) {
		if u.whole {
			out = append(out, prefix)
			return
		}
		for name, member := range u.members {
			walk(strings.TrimPrefix(prefix+"."+name, "."), member)
		}
	}
	walk("", u)
	slices.Sort(out)
	return out
}

// compileTestModule compiles one module for the tests below.
func compileTestModule(t *testing.T, source string) *ast.Compiler {
	t.Helper()
	module, err := ast.ParseModule("t.rego", source)
	if err != nil {
		t.Fatalf("parsing %s: %v", source, err)
	}
	compiler := ast.NewCompiler()
	if compiler.Compile(map[string]*ast.Module{"t.rego": module}); compiler.Failed() {
		t.Fatalf("compiling %s: %v", source, compiler.Errors)
	}
	return compiler
}

// inputUseCases are policies with the members of input they read; every
// way of reaching input as a whole, or a member by a computed key, reads
// all below the static part of the reference.
var inputUseCases = []struct {
	name   string
	policy string
	reads  []string
}{
	{"member", `out := input.tool.name`, []string{"tool.name"}},
	{"several members", `out := [input.method, input.tool.arguments.repo, input.request.headers["x-team"]]`,
		[]string{"method", "request.headers.x-team", "tool.arguments.repo"}},
	{"whole document", `out := input`, []string{""}},
	{"count of the document", `out := count(input)`, []string{""}},
	{"computed key at the top", `out := [k | input[k]]`, []string{""}},
	{"computed key below", `out := [name | some name, _ in input.request.headers]`, []string{"request.headers"}},
	{"index past a computed key", `out := input.tool.arguments.labels[0]`, []string{"tool.arguments.labels"}},
	{"input as a built-in argument", `out := json.marshal(input)`, []string{""}},
	{"object.get of input with a path", `out := object.get(input, ["tool", "arguments", "repo"], "none")`, []string{"tool.arguments.repo"}},
	{"temporary read two ways", "out := [object.get(input.tool.arguments, \"repo\", \"\"), count(input.tool.arguments)]",
		[]string{"tool.arguments"}},
	{"object.get then the same object", "out := x if {\n a := input.tool.arguments\n x := [object.get(a, \"repo\", \"\"), a.labels]\n}",
		[]string{"tool.arguments"}},
	{"object.get in an else branch", "f(x) := 1 if { x == 0 } else := object.get(input.tool.arguments, \"repo\", \"\")\nout := f(1)",
		[]string{"tool.arguments.repo"}},
	{"walk", `out := [x | walk(input, [p, x]); p == ["tool", "name"]]`, []string{""}},
	{"serialized", `out := json.marshal(input.params)`, []string{"params"}},
	{"import alias", "import input.tool as t\nout := t.arguments", []string{"tool.arguments"}},
	{"reference inside a reference", `out := input.params.arguments[input.request.headers["x-field"]]`,
		[]string{"params.arguments", "request.headers.x-field"}},
	{"function argument", "f(x) := x.id\nout := f(input.user)", []string{"user"}},
	{"ref head key", `out[input.tool.name] := input.server`, []string{"server", "tool.name"}},
	{"every", "out if {\n every k, v in input.request.headers { is_string(k); is_string(v) }\n}", []string{"request.headers"}},
	{"negation", "out if not input.user.claims.admin", []string{"user.claims.admin"}},
	{"with", "inner := [input.method, input.tool.name]\nout := x if { x := inner with input.method as \"x\" }",
		[]string{"method", "tool.name"}},
	{"object comprehension", `out := {k: v | some k, v in input.tool}`, []string{"tool"}},
	{"claims", `out := input.user.claims.groups`, []string{"user.claims.groups"}},
	{"object.get with a constant key", `out := object.get(input.tool.arguments, "repo", "none")`, []string{"tool.arguments.repo"}},
	{"object.get of a missing key", `out := object.get(input.tool.arguments, "absent", "none")`, []string{"tool.arguments.absent"}},
	{"object.get with a constant path", `out := object.get(input.tool.arguments, ["options", "draft"], false)`,
		[]string{"tool.arguments.options.draft"}},
	{"object.get through a string", `out := object.get(input.tool, ["name", "x"], "none")`, []string{"tool.name.x"}},
	{"object.get with a computed key", `out := object.get(input.tool.arguments, input.request.headers["x-field"], 0)`,
		[]string{"request.headers.x-field", "tool.arguments"}},
	{"object.get with an empty path", `out := object.get(input.tool, [], 0)`, []string{"tool"}},
	{"object.get of input itself", `out := object.get(input, "method", 0)`, []string{"method"}},
	{"object.get nested in a call", "f(x) := x\nout := f(object.get(input.user.claims, \"email\", \"\"))", []string{"user.claims.email"}},
	{"object.get replaced by a function", "key_count(o, _, _) := count(o)\nn := object.get(input.tool.arguments, \"repo\", 0)\nout := k if { k := n with object.get as key_count }",
		[]string{"tool.arguments"}},
	{"object.get of input replaced", "g(o, _, _) := count(o)\nr := object.get(input, \"method\", 0)\nout := k if { k := r with object.get as g }",
		[]string{""}},
	{"nothing", `out := 1`, nil},
}

// TestInputUseOf checks which members of input each policy is found to
// read.
func TestInputUseOf(t *testing.T) {
	for _, tc := range inputUseCases {
		t.Run(tc.name, func(t *testing.T) {
			compiler := compileTestModule(t, "package t\n"+tc.policy)
			got := inputUseOf(compiler.Modules).paths()
			if !slices.Equal(got, tc.reads) {
				t.Errorf("policy %q reads %q, want %q", tc.policy, got, tc.reads)
			}
		})
	}
}

// TestInputUseInvisible evaluates every policy above on the whole input
// and on the part it is found to read: the results must be the same.
func TestInputUseInvisible(t *testing.T) {
	ctx := context.Background()
	in := richInput()
	whole, err := in.Value()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range inputUseCases {
		t.Run(tc.name, func(t *testing.T) {
			compiler := compileTestModule(t, "package t\n"+tc.policy)
			use := inputUseOf(compiler.Modules)
			part, err := in.value(use)
			if err != nil {
				t.Fatal(err)
			}
			query, err := rego.New(rego.Query("data.t.out"), rego.Compiler(compiler)).PrepareForEval(ctx)
			if err != nil {
				t.Fatal(err)
			}
			results := map[string]rego.ResultSet{}
			for name, value := range map[string]ast.Value{"whole": whole, "part": part} {
				rs, err := query.Eval(ctx, rego.EvalParsedInput(value))
				if err != nil {
					t.Fatalf("evaluating on the %s input: %v", name, err)
				}
				results[name] = rs
			}
			if len(results["whole"]) == 0 {
				t.Fatalf("policy %q is undefined on the whole input; the case proves nothing", tc.policy)
			}
			wholeOut := ast.MustInterfaceToValue(results["whole"][0].Expressions[0].Value)
			if len(results["part"]) == 0 {
				t.Fatalf("policy %q: %v on the whole input, undefined on the part it reads (%v)", tc.policy, wholeOut, part)
			}
			partOut := ast.MustInterfaceToValue(results["part"][0].Expressions[0].Value)
			if wholeOut.Compare(partOut) != 0 {
				t.Errorf("policy %q: %v on the whole input, %v on the part it reads (%v)", tc.policy, wholeOut, partOut, part)
			}
		})
	}
}

// TestInputValueParts checks that value builds only what is read, and
// that Value builds everything.
func TestInputValueParts(t *testing.T) {
	in := richInput()
	whole, err := in.Value()
	if err != nil {
		t.Fatal(err)
	}
	keys := func(v ast.Value) []string {
		var out []string
		for _, key := range v.(ast.Object).Keys() {
			out = append(out, string(key.Value.(ast.String)))
		}
		slices.Sort(out)
		return out
	}
	want := []string{"direction", "kind", "method", "params", "protocol_version", "request", "server", "session", "tool", "user"}
	if got := keys(whole); !slices.Equal(got, want) {
		t.Errorf("Value has members %q, want %q", got, want)
	}
	compiler := compileTestModule(t, "package t\nout := [input.tool.name, input.request.headers[\"x-team\"]]")
	part, err := in.value(inputUseOf(compiler.Modules))
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(part); !slices.Equal(got, []string{"request", "tool"}) {
		t.Errorf("the part read has members %q, want request and tool", got)
	}
	headers, err := part.(ast.Object).Find(ast.MustParseRef("x.request.headers")[1:])
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(headers); !slices.Equal(got, []string{"x-team"}) {
		t.Errorf("the headers read are %q, want only x-team", got)
	}
	if got := slices.Sorted(maps.Keys(in.Request.Headers)); len(got) != 4 {
		t.Errorf("value changed the input's headers: %q", got)
	}
}

// TestLibraryInputUse checks what the shipped library reads of input: no
// arguments, headers or user, and of params only the names of what a
// message names (a prompt, a resource, a completion's reference, the
// resources a subscription names), so that its decisions are built from,
// and cached by, the tool, the message's kind and those names alone.
func TestLibraryInputUse(t *testing.T) {
	engine := newEngine(t, context.Background(), Options{
		Modules: policies.Library(),
		Data:    map[string]any{"mcp": map[string]any{"permissions": map[string]any{"read_only": "allow"}}},
	})
	queries := engine.queries.Load()
	want := []string{"direction", "kind", "method", "params.name", "params.notifications.resourceSubscriptions", "params.ref.name", "params.ref.type", "params.ref.uri", "params.uri", "server", "tool.category", "tool.changed", "tool.name"}
	if got := queries.input.paths(); !slices.Equal(got, want) {
		t.Errorf("the library reads %q, want %q", got, want)
	}
	if queries.decision.cache == nil {
		t.Error("the library's decisions are not cached")
	}
}

// TestHeadersFromRequest checks that headers made from the request's
// header, when a policy reads them, are those the gateway would give:
// lower-case names, no credentials, and an error for a header the policy
// reads that the request gives more than once (which copy an upstream
// reads is not known), but not for one it does not read.
func TestHeadersFromRequest(t *testing.T) {
	header := http.Header{
		"Accept":        {"application/json", "text/event-stream"},
		"X-Team":        {"platform"},
		"Authorization": {"Bearer secret"},
		"Cookie":        {"session=secret"},
	}
	tests := []struct {
		name    string
		policy  string
		want    map[string]string
		wantErr string
	}{
		{"all headers, one given twice", "package t\nout := input.request.headers", nil, "gives its accept header more than once"},
		{"the header given twice", "package t\nout := input.request.headers.accept", nil, "gives its accept header more than once"},
		{"one header", "package t\nout := input.request.headers[\"x-team\"]", map[string]string{"x-team": "platform"}, ""},
		{"a credential", "package t\nout := input.request.headers.authorization", map[string]string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &Input{Request: Request{Header: header}}
			value, err := in.value(inputUseOf(compileTestModule(t, tt.policy).Modules))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			headers, err := value.(ast.Object).Find(ast.MustParseRef("x.request.headers")[1:])
			if err != nil {
				t.Fatalf("no headers in %v: %v", value, err)
			}
			var got map[string]string
			if err := ast.As(headers, &got); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("headers = %v, want %v", got, tt.want)
			}
		})
	}
	once := http.Header{"Accept": {"application/json"}, "X-Team": {"platform"}, "Authorization": {"Bearer secret"}}
	value, err := (&Input{Request: Request{Header: once}}).value(inputUseOf(compileTestModule(t, "package t\nout := input.request.headers").Modules))
	if err != nil {
		t.Fatal(err)
	}
	if got := value.String(); !strings.Contains(got, `"headers": {"accept": "application/json", "x-team": "platform"}`) {
		t.Errorf("all headers given once: %s, want accept and x-team alone", got)
	}
	if unread, err := (&Input{Request: Request{Header: header}}).value(inputUseOf(compileTestModule(t, "package t\nout := input.request.path").Modules)); err != nil {
		t.Fatal(err)
	} else if _, err := unread.(ast.Object).Find(ast.MustParseRef("x.request.headers")[1:]); err == nil {
		t.Errorf("headers were made for a policy that does not read them: %v", unread)
	}
}

package policy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/policies"
)

// writePolicy writes files (name -> content) into a fresh folder.
func writePolicy(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	return dir
}

func toolInput(name string) *Input {
	return &Input{Kind: "request", Method: "tools/call", Tool: &Tool{Name: name, Arguments: map[string]any{"repo": "acme/x"}}}
}

// TestDecideFailsClosed checks that every way a policy can fail to give a
// well-formed decision ends in a block whose error says why (wantReason,
// then, is in the error); its reason, which the client sees, says so in
// the gateway's words, naming none of the policy's files or values.
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
		// (A constant that is not an object, or a set rule, is refused at
		// load: TestNewRejectsBadOptions.)
		{"not an object", `package mcp
decision := concat("", ["al", "low"])`, "", ActionBlock, "want an object", true},
		{"unknown member", `package mcp
decision := {"action": "allow", "allow": true}`, "", ActionBlock, "unknown member", true},
		{"reason not a string", `package mcp
decision := {"action": "allow", "reason": 1}`, "", ActionBlock, "reason", true},
		{"approvers as a set", `package mcp
decision := {"action": "needs_approval", "reason": "r", "approvers": {"caller"}}`, "", ActionBlock, "approvers is a set", true},
		{"evaluation error", `package mcp
decision := {"action": x} if x := to_number("not a number")`, "", ActionBlock, "evaluating policy", true},
		{"conflicting rules", `package mcp
decision := {"action": "allow"} if true
decision := {"action": "block"} if true`, "", ActionBlock, "evaluating policy", true},
		{"set of decisions", `package mcp
decisions := {d | some d in [{"action": "allow"}]}`, "data.mcp.decisions", ActionBlock, "want an object", true},
		{"approvers", `package mcp
decision := {"action": "needs_approval", "reason": "ask", "approvers": ["caller", "group:leads"]}`, "", ActionNeedsApproval, "ask", false},
		{"approvers on allow", `package mcp
decision := {"action": "allow", "approvers": ["caller"]}`, "", ActionBlock, "carries approvers", true},
		{"approvers not an array", `package mcp
decision := {"action": "needs_approval", "approvers": "caller"}`, "", ActionBlock, "want an array", true},
		{"approvers not strings", `package mcp
decision := {"action": "needs_approval", "approvers": [1]}`, "", ActionBlock, "want strings", true},
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
			if tt.wantErr {
				if d.Action != ActionBlock || !strings.HasPrefix(d.Reason, "blocked: the policy gave no valid decision (") || strings.Contains(d.Reason, tt.wantReason) ||
					err == nil || !strings.Contains(err.Error(), tt.wantReason) {
					t.Errorf("decision = %+v, error %v; want a block saying the policy gave no valid decision, and an error containing %q", d, err, tt.wantReason)
				}
				return
			}
			if d.Action != tt.wantAction || !strings.Contains(d.Reason, tt.wantReason) || err != nil {
				t.Errorf("decision = %+v, error %v; want action %s with reason containing %q", d, err, tt.wantAction, tt.wantReason)
			}
		})
	}
}

// TestDecideStops checks that an evaluation slower than the timeout, or
// outlasting its request, stops and blocks, promptly, saying why. (The
// slow rule reads the input, so that it is not computed once, as a shared
// rule, when the policy loads.)
func TestDecideStops(t *testing.T) {
	dir := writePolicy(t, map[string]string{"policy.rego": `package mcp
decision := {"action": "allow", "reason": sprintf("%d", [count(slow)])}
slow contains [a, b, c] if {
	n := 299 + count(input.tool.name)
	some a in numbers.range(1, n)
	some b in numbers.range(1, n)
	some c in numbers.range(1, n)
}`})
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		ctx     func(t *testing.T) context.Context
		reason  string
	}{
		{"timeout", 20 * time.Millisecond, func(*testing.T) context.Context { return context.Background() },
			"took longer than its timeout (20ms)"},
		{"request ended", time.Minute, func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			t.Cleanup(cancel)
			return ctx
		}, "the request ended while it was evaluated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			engine, err := New(context.Background(), Options{Paths: []string{dir}, Timeout: tc.timeout})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			type result struct {
				d   Decision
				err error
			}
			done := make(chan result, 1)
			go func() {
				d, err := engine.Decide(tc.ctx(t), toolInput("t"))
				done <- result{d, err}
			}()
			// The policy takes minutes: stopping at all is what is
			// checked, with room for a busy machine.
			select {
			case r := <-done:
				if r.d.Action != ActionBlock || r.err == nil || !strings.Contains(r.d.Reason, tc.reason) {
					t.Errorf("decision = %+v, err %v; want a block with an error saying %q", r.d, r.err, tc.reason)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the evaluation did not stop within 20s")
			}
		})
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
	input.tool.annotations.readOnlyHint == true
	input.tool.category == "read_only"
	input.tool.changed == true
	input.user.id == "ada"
	input.user.claims.groups == ["eng"]
}`})
	engine, err := New(context.Background(), Options{Paths: []string{dir}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	in := toolInput("t")
	in.Direction = DirectionClientToServer
	in.Server, in.Session, in.ProtocolVersion = "tracker", "s1", "2025-06-18"
	in.Request = Request{RemoteIP: "10.0.0.1", Host: "gw.example", Path: "/mcp", Headers: map[string]string{"user-agent": "test"}}
	in.Tool.Annotations = map[string]any{"readOnlyHint": true}
	in.Tool.Category, in.Tool.Changed = "read_only", true
	in.User = &User{ID: "ada", Claims: map[string]any{"groups": []any{"eng"}}}
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

// TestDocumentDefaults checks that objects a policy may index are objects
// even when the gateway knows nothing, and that an unknown user is absent.
func TestDocumentDefaults(t *testing.T) {
	tests := []struct {
		name  string
		input *Input
		check func(doc map[string]any) error
	}{
		{"no tool, no user", &Input{Kind: "request", Method: "ping"}, func(doc map[string]any) error {
			for _, key := range []string{"tool", "user", "params"} {
				if _, ok := doc[key]; ok {
					return fmt.Errorf("%q is present, want it absent", key)
				}
			}
			return nil
		}},
		{"tool without arguments or annotations", &Input{Tool: &Tool{Name: "t"}}, func(doc map[string]any) error {
			tool := doc["tool"].(map[string]any)
			for _, key := range []string{"arguments", "annotations"} {
				if m, ok := tool[key].(map[string]any); !ok || m == nil {
					return fmt.Errorf("tool.%s = %#v, want an empty object", key, tool[key])
				}
			}
			if tool["category"] != "" || tool["changed"] != false {
				return fmt.Errorf("tool = %v, want empty category and changed false", tool)
			}
			return nil
		}},
		{"user without claims", &Input{User: &User{ID: "ada"}}, func(doc map[string]any) error {
			user, ok := doc["user"].(map[string]any)
			if !ok || user["id"] != "ada" {
				return fmt.Errorf("user = %#v, want id ada", doc["user"])
			}
			if m, ok := user["claims"].(map[string]any); !ok || m == nil {
				return fmt.Errorf("user.claims = %#v, want an empty object", user["claims"])
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.check(document(t, tt.input)); err != nil {
				t.Error(err)
			}
		})
	}
}

// checkAllows checks that New fails with an error containing wantErr or,
// when that is empty, that the engine allows a tool call for wantReason.
func checkAllows(t *testing.T, opts Options, wantReason, wantErr string) {
	t.Helper()
	engine, err := New(context.Background(), opts)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("New error = %v, want one containing %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	d, err := engine.Decide(context.Background(), toolInput("t"))
	if d.Action != ActionAllow || d.Reason != wantReason {
		t.Errorf("decision = %+v (err %v), want allow with reason %q", d, err, wantReason)
	}
}

// TestModules checks policies given as sources, alone and beside files.
func TestModules(t *testing.T) {
	allowModule := "package mcp\ndecision := {\"action\": \"allow\", \"reason\": data.mcp.lib.reason}"
	libModule := "package mcp.lib\nreason := \"from the library\""
	tests := []struct {
		name       string
		files      map[string]string
		modules    map[string]string
		wantReason string
		wantErr    string
	}{
		{"modules only", nil, map[string]string{"mcp.rego": allowModule, "lib.rego": libModule}, "from the library", ""},
		{"modules beside files", map[string]string{"mcp.rego": allowModule}, map[string]string{"lib.rego": libModule}, "from the library", ""},
		{"test modules left out", nil, map[string]string{"mcp.rego": allowModule, "lib.rego": libModule, "mcp_test.rego": "package mcp\ndecision := 1"}, "from the library", ""},
		{"only test modules", nil, map[string]string{"mcp_test.rego": allowModule}, "", "no policy paths, modules or bundle"},
		{"syntax error", nil, map[string]string{"mcp.rego": "package mcp\ndecision := {"}, "", "parsing policy module mcp.rego"},
		{"compile error", nil, map[string]string{"mcp.rego": "package mcp\ndecision := data.mcp.lib.f(1)"}, "", "compiling policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var paths []string
			if tt.files != nil {
				paths = []string{writePolicy(t, tt.files)}
			}
			checkAllows(t, Options{Paths: paths, Modules: tt.modules}, tt.wantReason, tt.wantErr)
		})
	}
}

// TestData checks that Options.Data joins the data document, and that a
// path set both by it and by the policy's files is refused by name.
func TestData(t *testing.T) {
	policy := `package mcp
decision := {"action": data.mcp.permissions.tools[input.tool.name], "reason": data.mcp.note}`
	tests := []struct {
		name       string
		files      map[string]string
		data       map[string]any
		wantReason string
		wantErr    string
	}{
		{"merged beside file data", map[string]string{"note.json": `{"mcp": {"note": "from a file"}}`},
			map[string]any{"mcp": map[string]any{"permissions": map[string]any{"tools": map[string]any{"t": "allow"}}}}, "from a file", ""},
		{"merged into the same object", map[string]string{"note.json": `{"mcp": {"note": "n", "other": {"u": "block"}}}`},
			map[string]any{"mcp": map[string]any{"permissions": map[string]any{"tools": map[string]any{"t": "allow"}}, "other": map[string]any{"t": "x"}}}, "n", ""},
		{"same leaf", map[string]string{"note.json": `{"mcp": {"note": "n", "other": {"t": "block"}}}`},
			map[string]any{"mcp": map[string]any{"permissions": map[string]any{"tools": map[string]any{"t": "allow"}}, "other": map[string]any{"t": "x"}}}, "", `data.mcp.other.t is set twice`},
		{"object against a value", map[string]string{"note.json": `{"mcp": {"note": "n", "other": "none"}}`},
			map[string]any{"mcp": map[string]any{"permissions": map[string]any{"tools": map[string]any{"t": "allow"}}, "other": map[string]any{}}}, "", `data.mcp.other is set twice`},
		// The permissions table is the configuration's alone: merged, a
		// data file's entries would override it where it is silent (a
		// server's section allowing what the table's category blocks).
		{"the permissions table added to", map[string]string{"extra.json": `{"mcp": {"permissions": {"servers": {"tracker": {"destructive": "allow"}}, "tools": {"drop_db": "allow"}}}}`},
			map[string]any{"mcp": map[string]any{"permissions": map[string]any{"destructive": "block", "tools": map[string]any{"t": "allow"}}}}, "", `sets data.mcp.permissions, which the gateway's permissions table sets`},
		{"against a rule", nil,
			map[string]any{"mcp": map[string]any{"decision": "allow"}}, "", "compiling policy"},
		{"not JSON", nil, map[string]any{"mcp": make(chan int)}, "", "not a JSON document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"policy.rego": policy}
			maps.Copy(files, tt.files)
			checkAllows(t, Options{Paths: []string{writePolicy(t, files)}, Data: tt.data}, tt.wantReason, tt.wantErr)
		})
	}
}

// TestToolPermission checks the permission query: defined, undefined (the
// tool is shown) and failing (the tool is hidden).
func TestToolPermission(t *testing.T) {
	policy := `package mcp
decision := {"action": "allow"}
tool_permission := {"action": data.table[input.tool.name], "reason": "table"} if data.table[input.tool.name] != "broken"
tool_permission := {"action": to_number("x")} if data.table[input.tool.name] == "broken"
`
	table := `{"table": {"open": "allow", "shut": "block", "odd": "maybe", "broken": "broken"}}`
	tests := []struct {
		name       string
		policy     string
		query      string
		tool       string
		wantAction Action
		wantOK     bool
		wantErr    bool
	}{
		{"allowed", policy, "", "open", ActionAllow, true, false},
		{"blocked", policy, "", "shut", ActionBlock, true, false},
		{"not in the table", policy, "", "other", "", false, false},
		{"policy without permissions", "package mcp\ndecision := {\"action\": \"allow\"}", "", "open", "", false, false},
		{"malformed", policy, "", "odd", ActionBlock, true, true},
		{"evaluation error", policy, "", "broken", ActionBlock, true, true},
		{"custom query", "package mcp\ndecision := {\"action\": \"allow\"}\nperm := {\"action\": \"needs_approval\"}\n", "data.mcp.perm", "open", ActionNeedsApproval, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writePolicy(t, map[string]string{"policy.rego": tt.policy, "table.json": table})
			engine, err := New(context.Background(), Options{Paths: []string{dir}, PermissionQuery: tt.query})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			d, ok, err := engine.ToolPermission(context.Background(), toolInput(tt.tool))
			if d.Action != tt.wantAction || ok != tt.wantOK || (err != nil) != tt.wantErr {
				t.Errorf("ToolPermission = %+v, %v, %v; want action %q, ok %v, error %v", d, ok, err, tt.wantAction, tt.wantOK, tt.wantErr)
			}
		})
	}
}

// TestNewRejectsBadOptions checks option combinations that cannot work.
func TestNewRejectsBadOptions(t *testing.T) {
	dir := writePolicy(t, map[string]string{"p.rego": "package mcp\ndecision := {\"action\": \"allow\"}"})
	bundle := &BundleConfig{URL: "http://127.0.0.1:1", Resource: "b.tar.gz"}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"nothing", Options{}, "no policy paths, modules or bundle"},
		{"permission query not a reference", Options{Paths: []string{dir}, PermissionQuery: "1 +"}, "permission query"},
		{"watch without paths", Options{Modules: map[string]string{"p.rego": "package mcp"}, Watch: true}, "watching needs policy paths"},
		{"paths and bundle", Options{Paths: []string{dir}, Bundle: bundle}, "cannot be combined"},
		{"watch and bundle", Options{Bundle: bundle, Watch: true}, "watching needs policy paths"},
		{"bundle without resource", Options{Bundle: &BundleConfig{URL: "http://127.0.0.1:1"}}, "needs a service URL and a resource"},
		{"bundle delays reversed", Options{Bundle: &BundleConfig{URL: "http://127.0.0.1:1", Resource: "b", MinDelay: time.Minute, MaxDelay: time.Second}}, "less than min delay"},
		{"no decision", Options{Modules: map[string]string{"p.rego": "package mcp\ndecisions := {\"action\": \"allow\"}"}}, "defines no data.mcp.decision (the decision query)"},
		{"a decision query naming nothing", Options{Paths: []string{dir}, Query: "data.org.decision"}, "defines no data.org.decision"},
		{"a decision that is a number", Options{Modules: map[string]string{"p.rego": "package mcp\ndecision := 1"}}, "as something other than an object"},
		{"a decision that is a set", Options{Modules: map[string]string{"p.rego": "package mcp\ndecision contains \"allow\""}}, "as something other than an object"},
		{"decisions that are strings", Options{Modules: map[string]string{"p.rego": "package mcp\ndecision := \"allow\" if input.a\ndecision := \"block\" if input.b"}}, "as something other than an object"},
		{"a decision in data that is a string", Options{Modules: map[string]string{"p.rego": "package other\nx := 1"}, Data: map[string]any{"mcp": map[string]any{"decision": "allow"}}}, "as something other than an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// document returns the input as policies see it, in plain Go values.
func document(t *testing.T, in *Input) map[string]any {
	t.Helper()
	value, err := in.Value()
	if err != nil {
		t.Fatalf("Value: %v", err)
	}
	doc, err := ast.JSON(value)
	if err != nil {
		t.Fatalf("ast.JSON: %v", err)
	}
	return doc.(map[string]any)
}

// TestParseInputMatchesValue keeps the two statements of the input's shape
// in step: a full document read by ParseInput comes back from Value as it
// was.
func TestParseInputMatchesValue(t *testing.T) {
	raw := `{"kind":"request","method":"tools/call","params":{"name":"t","arguments":{"n":1.50}},
		"direction":"client_to_server",
		"tool":{"name":"t","arguments":{"n":1.50},"argument_names":{"n":"n"},"annotations":{"readOnlyHint":true},"category":"read_only","changed":true,"secrets":[]},
		"server":"s","session":"x","protocol_version":"2025-06-18",
		"user":{"id":"u","claims":{"groups":["g"]}},
		"client":{"capabilities":{"sampling":true,"sampling_tools":true,"sampling_context":false,"tasks":true,"roots":false,"elicitation":{"form":true,"url":false}}},
		"request":{"remote_ip":"10.0.0.1","host":"h","path":"/mcp","headers":{"user-agent":"a"}}}`
	in, err := ParseInput([]byte(raw))
	if err != nil {
		t.Fatalf("ParseInput: %v", err)
	}
	var want map[string]any
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}
	got := document(t, in)
	if !reflect.DeepEqual(normalize(t, got), normalize(t, want)) {
		t.Errorf("Value(ParseInput(doc)) = %v\nwant %v", got, want)
	}
	const call = `{"kind":"request","method":"tools/call","tool":{"name":"t","category":"write",`
	for _, bad := range []string{`{"kind":"request","tol":{}}`, `{"tool":{"name":"t","argument":{}}}`, `{} {}`, `[]`,
		// What the gateway never builds: argument names that fold alike
		// (it refuses the call), argument_names of its own.
		call + `"arguments":{"Repo":"evil/x","repo":"acme/x"}}}`,
		call + `"arguments":{"repo":"evil/x"},"argument_names":{"repo":"nope"}}}`,
		// Secrets of its own, or none where the gateway finds one.
		call + `"arguments":{"repo":"evil/x"},"secrets":[{"kind":"private key","path":"repo"}]}}`,
		call + `"arguments":{"key":"` + testKey + `"},"secrets":[]}}`,
	} {
		if _, err := ParseInput([]byte(bad)); err == nil {
			t.Errorf("ParseInput(%s): want an error", bad)
		}
	}
	if _, err := ParseInput([]byte(call + `"arguments":{"Repo":"acme/x"},"argument_names":{"repo":"Repo"}}}`)); err != nil {
		t.Errorf("ParseInput with the argument_names the gateway makes: %v", err)
	}
	if _, err := ParseInput([]byte(call + `"arguments":{"key":"` + testKey + `"},"secrets":[{"kind":"private key","path":"key"}]}}`)); err != nil {
		t.Errorf("ParseInput with the secrets the gateway finds: %v", err)
	}
}

// normalize re-encodes v as JSON and decodes it with numbers kept exact,
// so that documents from different decoders compare.
func normalize(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRevisionNamesThePolicy: decisions name the policy and data that
// gave them, by content.
func TestRevisionNamesThePolicy(t *testing.T) {
	revision := func(data map[string]any) string {
		t.Helper()
		engine := newEngine(t, context.Background(), Options{Paths: []string{writePolicy(t, map[string]string{"p.rego": `package mcp
decision := {"action": "allow"}`})}, Data: data})
		d, err := engine.Decide(context.Background(), toolInput("t"))
		if err != nil || !strings.HasPrefix(d.Revision, "sha256:") {
			t.Fatalf("decision %+v (%v); want a revision", d, err)
		}
		return d.Revision
	}
	a, b := revision(map[string]any{"x": 1}), revision(map[string]any{"x": 1})
	if a != b {
		t.Errorf("one policy and data gave revisions %s and %s; want one", a, b)
	}
	if c := revision(map[string]any{"x": 2}); c == a {
		t.Errorf("other data gave the same revision %s", c)
	}
}

// TestDecisionDefinedInData: a decision query may name a document of the
// policy's data rather than a rule; only one naming neither is refused.
func TestDecisionDefinedInData(t *testing.T) {
	engine, err := New(context.Background(), Options{
		Modules: map[string]string{"p.rego": "package other\n\nx := 1\n"},
		Data:    map[string]any{"mcp": map[string]any{"decision": map[string]any{"action": "allow", "reason": "from data"}}},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	if d, err := engine.Decide(context.Background(), toolInput("open")); err != nil || d.Action != ActionAllow || d.Reason != "from data" {
		t.Errorf("Decide = %+v, %v; want the data's allow", d, err)
	}
}

// TestParseInputAsBuilt: ParseInput takes what the gateway builds (a
// client's tools/call notification carries its tool; an empty method;
// numbers past a float's range) and refuses what it never builds.
func TestParseInputAsBuilt(t *testing.T) {
	for _, tt := range []struct {
		name, doc, wantErr string
	}{
		{"a tools/call notification", `{"kind": "notification", "method": "tools/call", "tool": {"name": "x", "arguments": {}, "category": "destructive"}}`, ""},
		{"an empty method", `{"kind": "request", "method": ""}`, ""},
		{"a number past a float's range", `{"kind": "request", "method": "tools/call", "params": {"name": "x", "arguments": {"id": 1e400}}, "tool": {"name": "x", "arguments": {"id": 1e400}, "category": "destructive"}}`, ""},
		{"a response", `{"kind": "response", "direction": "server_to_client"}`, ""},
		{"a member twice inside params", `{"kind": "request", "method": "ping", "params": {"a": 1, "a": 2}}`, `duplicate object member name "a"`},
		{"a method on a response", `{"kind": "response", "method": "ping"}`, "a response has no method"},
		{"a tool on a response", `{"kind": "response", "tool": {"name": "x", "category": "write"}}`, "tool is set on a client's tools/call only"},
		{"a tool on a server's request", `{"kind": "request", "method": "tools/call", "direction": "server_to_client", "tool": {"name": "x", "category": "write"}}`, "tool is set on a client's tools/call only"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in, err := ParseInput([]byte(tt.doc))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ParseInput: %v, want it read", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ParseInput: %v, want an error containing %q", err, tt.wantErr)
			case tt.wantErr == "":
				if _, err := in.Value(); err != nil {
					t.Errorf("Value: %v", err)
				}
			}
		})
	}
}

// TestDecisionShapesAccepted: decisions that may be objects load: a
// constant object, one computed, an else chain ending in one, a partial
// object, an object in data.
func TestDecisionShapesAccepted(t *testing.T) {
	for name, opts := range map[string]Options{
		"a constant object":           {Modules: map[string]string{"p.rego": "package mcp\ndecision := {\"action\": \"allow\", \"reason\": \"r\"}"}},
		"a computed one":              {Modules: map[string]string{"p.rego": "package mcp\ndecision := d if d := input.d"}},
		"an else chain ending in one": {Modules: map[string]string{"p.rego": "package mcp\ndecision := 1 if input.a\n\telse := {\"action\": \"allow\", \"reason\": \"r\"}"}},
		"a partial object":            {Modules: map[string]string{"p.rego": "package mcp\ndecision[k] := v if { some k, v in input.d }"}},
		"an object in data":           {Modules: map[string]string{"p.rego": "package other\nx := 1"}, Data: map[string]any{"mcp": map[string]any{"decision": map[string]any{"action": "allow", "reason": "r"}}}},
		"members as rules":            {Modules: map[string]string{"p.rego": "package mcp\ndecision.action := \"allow\"\ndecision.reason := \"r\""}},
		"members with constant keys":  {Modules: map[string]string{"p.rego": "package mcp\ndecision[\"action\"] := \"allow\"\ndecision[\"reason\"] := \"r\""}},
		"a package of that name":      {Modules: map[string]string{"p.rego": "package mcp.decision\ndefault action := \"block\"\naction := \"allow\" if input.a\nreason := \"r\""}},
	} {
		t.Run(name, func(t *testing.T) {
			e, err := New(context.Background(), opts)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			e.Close()
		})
	}
}

// TestPermissionsTableRead: a policy given the configuration's permissions
// table must read it somewhere (data.mcp.permissions, or a reference that
// may reach it); one that never does is refused, since the table would be
// ignored and the tools it blocks allowed.
func TestPermissionsTableRead(t *testing.T) {
	const head = "package mcp\nimport rego.v1\ndefault decision := {\"action\": \"block\", \"reason\": \"no\"}\n"
	table := map[string]any{"mcp": map[string]any{"permissions": map[string]any{"destructive": map[string]any{"action": "block"}, "tools": map[string]any{}}}}
	withLibrary := func(name, source string) map[string]string {
		modules := maps.Clone(policies.Library())
		modules[name] = source
		return modules
	}
	tests := []struct {
		name    string
		modules map[string]string
		query   string
		data    map[string]any
		wantErr bool
	}{
		{"the library", policies.Library(), "", table, false},
		{"the library beside a decision of its own that ignores the table", withLibrary("org.rego", "package org\nimport rego.v1\ndecision := {\"action\": \"allow\", \"reason\": \"org\"}"), "data.org.decision", table, true},
		{"the library beside a decision of its own that defers to it", withLibrary("org.rego", "package org\nimport rego.v1\ndecision := data.mcp.decision"), "data.org.decision", table, false},
		{"a policy reading the table by an import", map[string]string{"p.rego": "package mcp\nimport rego.v1\nimport data.mcp.permissions as p\ndecision := {\"action\": \"allow\", \"reason\": \"ok\"} if p.destructive.action != \"block\""}, "", table, false},
		{"a decision of parts, reading the table", map[string]string{"p.rego": "package mcp.decision\nimport rego.v1\naction := \"allow\" if data.mcp.permissions.tools.x\ndefault action := \"block\"\nreason := \"r\""}, "", table, false},
		{"a decision of parts, one helper reading the table unused", map[string]string{"p.rego": "package mcp.decision\nimport rego.v1\naction := \"allow\"\nreason := \"r\"", "h.rego": "package helpers\nunused if data.mcp.permissions.tools.x"}, "", table, true},
		{"a policy reading the table", map[string]string{"p.rego": head + `decision := {"action": "allow", "reason": "ok"} if data.mcp.permissions.destructive.action != "block"`}, "", table, false},
		{"a policy reading the table in a function", map[string]string{"p.rego": head + `decision := {"action": "allow", "reason": "ok"} if blocked("destructive")
blocked(category) if data.mcp.permissions[category].action == "block"`}, "", table, false},
		{"a policy reading data by a variable", map[string]string{"p.rego": head + `decision := {"action": "allow", "reason": "ok"} if { some k; data[k].permissions }`}, "", table, false},
		{"a policy allowing everything", map[string]string{"p.rego": head + `decision := {"action": "allow", "reason": "ok"}`}, "", table, true},
		{"a policy reading other data", map[string]string{"p.rego": head + `decision := {"action": "allow", "reason": "ok"} if data.mcp.other == 1`}, "", table, true},
		{"a policy reading input only", map[string]string{"p.rego": head + `decision := {"action": "allow", "reason": "ok"} if input.permissions`}, "", table, true},
		{"a policy allowing everything, no table", map[string]string{"p.rego": head + `decision := {"action": "allow", "reason": "ok"}`}, "", nil, false},
		// Rules inside the table would be merged into it, where it is
		// silent: refused as data there is.
		{"the library and a rule inside the table", withLibrary("section.rego", "package mcp.permissions.servers.tracker\ndestructive := \"allow\""), "", table, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(context.Background(), Options{Modules: tt.modules, Query: tt.query, Data: tt.data})
			if err == nil {
				e.Close()
			}
			if tt.wantErr != (err != nil) || err != nil && !strings.Contains(err.Error(), "data.mcp.permissions") {
				t.Errorf("New: %v; want an error saying the table is never read: %v", err, tt.wantErr)
			}
		})
	}
}

// TestConcurrentCompiles: policies compiled at once (two sites loading,
// one site's files reloaded while another's bundle activates, OPA's
// bundle plugin compiling what it activates) take turns: OPA's type
// checker writes into the types built-ins declare, which all compilers
// share, and the library's rules give object.union's result beside other
// objects. Run with -race, it fails unless they do.
func TestConcurrentCompiles(t *testing.T) {
	library := map[string]string{}
	for name, source := range policies.Library() {
		library["/"+name] = source
	}
	engines := make([]*Engine, 6)
	errs := make([]error, len(engines))
	var wg sync.WaitGroup
	for i := range engines {
		opts := Options{Modules: policies.Library()}
		if i%2 == 0 {
			server := &bundleServer{}
			server.serve(t, "1", library, nil)
			opts = Options{Bundle: &BundleConfig{URL: server.start(t).URL, Resource: "bundles/mcp.tar.gz",
				MinDelay: 50 * time.Millisecond, MaxDelay: 100 * time.Millisecond}}
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			engines[i], errs[i] = New(ctx, opts)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("engine %d: %v", i, err)
		}
		engines[i].Close()
	}
}

// TestToolSecrets: input.tool.secrets holds the credentials the gateway
// finds in a call's arguments, at any depth, for a rule of the
// organization's to block or hold the call by; decisions are cached by
// what was found, not by the arguments.
func TestToolSecrets(t *testing.T) {
	engine, err := New(context.Background(), Options{Modules: map[string]string{"p.rego": `package mcp
import rego.v1
default decision := {"action": "allow", "reason": "ok"}
decision := {"action": "block", "reason": concat("; ", [sprintf("%s at %s", [s.kind, s.path]) | some s in input.tool.secrets])} if {
	count(input.tool.secrets) > 0
}`}, CacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	token := func(i int) string { return "ghp" + "_" + strconv.Itoa(i) + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8U" }
	tests := []struct {
		arguments map[string]any
		want      Decision
	}{
		{map[string]any{"title": "fine"}, Decision{Action: ActionAllow, Reason: "ok"}},
		{map[string]any{"title": "fine", "files": []any{map[string]any{"content": token(1)}}},
			Decision{Action: ActionBlock, Reason: "GitHub token at files[0].content"}},
		{map[string]any{"title": "fine", "files": []any{map[string]any{"content": token(2)}}},
			Decision{Action: ActionBlock, Reason: "GitHub token at files[0].content", Cached: true}},
		{map[string]any{"title": "still fine"}, Decision{Action: ActionAllow, Reason: "ok", Cached: true}},
	}
	for _, tt := range tests {
		in := toolInput("t")
		in.Tool.Arguments = tt.arguments
		d, err := engine.Decide(context.Background(), in)
		if err != nil || d.Action != tt.want.Action || d.Reason != tt.want.Reason || d.Cached != tt.want.Cached {
			t.Errorf("arguments %v: decision %+v, %v; want %+v", tt.arguments, d, err, tt.want)
		}
	}
}

// testKey is a private key's block as a JSON string holds it, built from
// parts so that no whole key stands in the source.
const testKey = "-----BEGIN " + "PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyjiWA4R4\\n-----END PRIVATE KEY-----"

package policy

import (
	"context"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/mcpgate/mcpgate/internal/coldcache"
	"github.com/mcpgate/mcpgate/policies"
)

// benchEvict, when set, makes BenchmarkDecide write through that many
// bytes of memory between two decisions, so that each finds OPA's code
// and data out of the processor's caches, as in place (see
// internal/coldcache), and report the decisions' median time.
var benchEvict = flag.Int("policy.evict", 0, "BenchmarkDecide: bytes to write between two decisions, to evict the processor's caches (0: none)")

// BenchmarkDecide measures one decision on a tools/call, evaluated (the
// decision cache is off), from the input to the decision: a policy that
// allows everything (what evaluating costs whatever the policy), the
// benchmarks' policy (a 1,000-entry tool table plus an argument rule,
// which reads the call's repo), the same with a table of 10 tools (what
// the table's size weighs), and the shipped library deciding by a
// 1,000-entry permissions table.
func BenchmarkDecide(b *testing.B) {
	tools := map[string]any{"echo": "allow"}
	for i := range 1000 {
		tools["tool_"+strconv.Itoa(10000 + i)[1:]] = []string{"allow", "needs_approval", "block"}[i%3]
	}
	for _, bc := range []struct {
		name string
		opts func(b *testing.B) Options
	}{
		{"allow", func(*testing.B) Options {
			return Options{Modules: map[string]string{"allow.rego": "package mcp\n\ndecision := {\"action\": \"allow\", \"reason\": \"allowed\"}\n"}}
		}},
		{"rule", func(*testing.B) Options { return Options{Paths: []string{"../testdata/benchpolicy"}} }},
		{"rule-10-tools", benchPolicyOf10Tools},
		{"table", func(*testing.B) Options {
			return Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
				"read_only": "allow", "write": "needs_approval", "destructive": "block", "tools": tools,
			}}}}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := bc.opts(b)
			opts.CacheSize = -1
			engine, err := New(context.Background(), opts)
			if err != nil {
				b.Fatalf("loading the policy: %v", err)
			}
			b.Cleanup(func() { _ = engine.Close() })
			input := func(n int) *Input {
				arguments := map[string]any{"text": "call " + strconv.Itoa(n), "repo": "acme/widgets-" + strconv.Itoa(n)}
				return &Input{
					Kind: "request", Method: "tools/call", Direction: DirectionClientToServer,
					Params:          map[string]any{"name": "echo", "arguments": arguments},
					Tool:            &Tool{Name: "echo", Arguments: arguments, Annotations: map[string]any{"readOnlyHint": true}, Category: "read_only"},
					Server:          "tracker",
					ProtocolVersion: "2025-06-18",
				}
			}
			b.ReportAllocs()
			coldcache.Loop(b, *benchEvict, func(n int) {
				d, err := engine.Decide(context.Background(), input(n))
				if err != nil || d.Action != ActionAllow {
					b.Fatalf("decision %+v (error %v), want allow", d, err)
				}
			})
		})
	}
}

// benchPolicyOf10Tools is the benchmarks' policy with the first 10 tools
// of its table (echo among them).
func benchPolicyOf10Tools(b *testing.B) Options {
	module, err := os.ReadFile("../testdata/benchpolicy/mcp.rego")
	if err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile("../testdata/benchpolicy/tools.json")
	if err != nil {
		b.Fatal(err)
	}
	var data struct {
		MCP struct {
			Tools map[string]any `json:"tools"`
		} `json:"mcp"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		b.Fatal(err)
	}
	names := slices.Sorted(maps.Keys(data.MCP.Tools))
	tools := map[string]any{"echo": data.MCP.Tools["echo"]}
	for _, name := range names[:9] {
		tools[name] = data.MCP.Tools[name]
	}
	return Options{Modules: map[string]string{"mcp.rego": string(module)}, Data: map[string]any{"mcp": map[string]any{"tools": tools}}}
}

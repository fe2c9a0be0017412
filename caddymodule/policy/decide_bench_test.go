package policy

import (
	"context"
	"strconv"
	"testing"

	"github.com/mcpgate/mcpgate/policies"
)

// BenchmarkDecide measures one decision on a tools/call, evaluated (the
// decision cache is off), from the input to the decision: a policy that
// allows everything (what evaluating costs whatever the policy), the
// benchmarks' policy (a 1,000-entry tool table plus an argument rule,
// which reads the call's repo), and the shipped library deciding by a
// 1,000-entry permissions table.
func BenchmarkDecide(b *testing.B) {
	tools := map[string]any{"echo": "allow"}
	for i := range 1000 {
		tools["tool_"+strconv.Itoa(10000 + i)[1:]] = []string{"allow", "needs_approval", "block"}[i%3]
	}
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"allow", Options{Modules: map[string]string{"allow.rego": "package mcp\n\ndecision := {\"action\": \"allow\", \"reason\": \"allowed\"}\n"}}},
		{"rule", Options{Paths: []string{"../testdata/benchpolicy"}}},
		{"table", Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
			"read_only": "allow", "write": "needs_approval", "destructive": "block", "tools": tools,
		}}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := bc.opts
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
			n := 0
			for b.Loop() {
				n++
				d, err := engine.Decide(context.Background(), input(n))
				if err != nil || d.Action != ActionAllow {
					b.Fatalf("decision %+v (error %v), want allow", d, err)
				}
			}
		})
	}
}

package policy

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestSharedRules checks which rules every evaluation shares: those that
// evaluate alike whatever the input, computed when the policy is prepared.
func TestSharedRules(t *testing.T) {
	dir := writePolicy(t, map[string]string{
		"policy.rego": `package t
import rego.v1

methods := {"ping", "tools/list"}
limit := data.limit
wider := limit + 1
nothing := 1 if limit > 10
broken := to_number("ten")
now := time.now_ns()
asked := input.method
echoed := asked
mocked := x if x := limit with data.limit as 5
double(x) := 2 * x
decision := {"action": "allow", "reason": sprintf("%d %d", [limit, mocked])}
`,
		"data.json": `{"limit": 3}`,
	})
	engine := newEngine(t, context.Background(), Options{Paths: []string{dir}, Query: "data.t.decision"})
	shared := engine.queries.Load().shared
	tests := []struct {
		rule   string
		shared bool
		// value is the rule's shared value ("" for undefined).
		value string
	}{
		{"methods", true, `{"ping", "tools/list"}`},
		{"limit", true, "3"},
		{"wider", true, "4"},
		{"nothing", true, ""},
		{"broken", false, ""},
		{"now", false, ""},
		{"asked", false, ""},
		{"echoed", false, ""},
		{"mocked", false, ""},
		{"double", false, ""},
		{"decision", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			value, shared := shared.lookup(ast.MustParseRef("data.t." + tt.rule))
			if shared != tt.shared {
				t.Fatalf("shared = %v, want %v", shared, tt.shared)
			}
			got := ""
			if value != nil {
				got = value.String()
			}
			if got != tt.value {
				t.Errorf("value = %q, want %q", got, tt.value)
			}
		})
	}
	// Inside a with, rules are evaluated again: mocked is 5, not 3.
	d, err := engine.Decide(context.Background(), &Input{Kind: "request", Method: "ping"})
	if err != nil || d.Reason != "3 5" {
		t.Errorf("decision = %+v (error %v), want the reason %q", d, err, "3 5")
	}
}

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

// TestRuleCache checks that the rule cache answers as OPA's own does:
// values and undefined refs recorded, forgotten when a frame is left, and
// the shared rules only outside any frame.
func TestRuleCache(t *testing.T) {
	shared := &sharedRules{}
	shared.add([]string{"t", "methods"}, ast.StringTerm("shared"))
	ref := ast.MustParseRef
	one, two := ast.IntNumberTerm(1), ast.IntNumberTerm(2)
	tests := []struct {
		name string
		do   func(c *ruleCache)
		get  ast.Ref
		want *ast.Term
		// undefined is whether the ref is known to be undefined.
		undefined bool
	}{
		{"nothing recorded", func(*ruleCache) {}, ref("data.t.p"), nil, false},
		{"a value", func(c *ruleCache) { c.Put(ref("data.t.p"), one) }, ref("data.t.p"), one, false},
		{"another ref", func(c *ruleCache) { c.Put(ref("data.t.p"), one) }, ref("data.t.q"), nil, false},
		{"a longer ref", func(c *ruleCache) { c.Put(ref("data.t.p"), one) }, ref("data.t.p.x"), nil, false},
		{"a function's value", func(c *ruleCache) { c.Put(ref("data.t.f").Append(one), two) }, ref("data.t.f").Append(one), two, false},
		{"undefined", func(c *ruleCache) { c.Put(ref("data.t.p"), nil) }, ref("data.t.p"), nil, true},
		{"undefined stays so", func(c *ruleCache) { c.Put(ref("data.t.p"), nil); c.Put(ref("data.t.p"), one) }, ref("data.t.p"), nil, true},
		{"a value replaced", func(c *ruleCache) { c.Put(ref("data.t.p"), one); c.Put(ref("data.t.p"), two) }, ref("data.t.p"), two, false},
		{"shared", func(*ruleCache) {}, ref("data.t.methods"), ast.StringTerm("shared"), false},
		{"shared not inside a frame", func(c *ruleCache) { c.Push() }, ref("data.t.methods"), nil, false},
		{"inside a frame", func(c *ruleCache) { c.Put(ref("data.t.p"), one); c.Push(); c.Put(ref("data.t.q"), two) }, ref("data.t.p"), nil, false},
		{"a frame left", func(c *ruleCache) { c.Push(); c.Put(ref("data.t.q"), two); c.Pop() }, ref("data.t.q"), nil, false},
		{"after a frame", func(c *ruleCache) { c.Put(ref("data.t.p"), one); c.Push(); c.Pop() }, ref("data.t.p"), one, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newRuleCache(shared)
			defer c.release()
			tt.do(c)
			got, undefined := c.Get(tt.get)
			if !got.Equal(tt.want) || undefined != tt.undefined {
				t.Errorf("Get(%v) = %v, %v; want %v, %v", tt.get, got, undefined, tt.want, tt.undefined)
			}
		})
	}
}

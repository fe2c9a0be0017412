package policy

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// cachedDecisions returns how many results the engine's decision query
// remembers, or -1 when it does not cache.
func cachedDecisions(e *Engine) int {
	cache := e.queries.Load().decision.cache
	if cache == nil {
		return -1
	}
	return cache.results.Len()
}

// repoPolicy allows tools/call only on repositories under acme/, reading
// the tool's name and its repo argument and nothing else of the call.
const repoPolicy = `package mcp
decision := {"action": "allow", "reason": concat(" ", [input.tool.name, "on", repo])} if startswith(repo, "acme/")
else := {"action": "block", "reason": "not an acme repository"}
repo := object.get(input.tool.arguments, "repo", "")
`

// TestDecisionCacheRemembers checks that the decision cache is keyed by
// what the policy reads: arguments it does not read share a result, and
// each result is the one evaluation gives.
func TestDecisionCacheRemembers(t *testing.T) {
	engine := newEngine(t, context.Background(), Options{Paths: []string{writePolicy(t, map[string]string{"p.rego": repoPolicy})}})
	call := func(tool, repo, text string) *Input {
		return &Input{Kind: "request", Method: "tools/call", Tool: &Tool{Name: tool, Arguments: map[string]any{"repo": repo, "text": text}}}
	}
	allow := func(reason string, cached bool) Decision {
		return Decision{Action: ActionAllow, Reason: reason, Cached: cached}
	}
	block := func(cached bool) Decision {
		return Decision{Action: ActionBlock, Reason: "not an acme repository", Cached: cached}
	}
	for i, tc := range []struct {
		input  *Input
		want   Decision
		cached int
	}{
		{call("echo", "acme/widgets", "one"), allow("echo on acme/widgets", false), 1},
		{call("echo", "acme/widgets", "two"), allow("echo on acme/widgets", true), 1},
		{call("echo", "other/widgets", "two"), block(false), 2},
		{call("list", "acme/widgets", "two"), allow("list on acme/widgets", false), 3},
		{call("echo", "acme/widgets", "three"), allow("echo on acme/widgets", true), 3},
		{call("echo", "other/widgets", "four"), block(true), 3},
	} {
		d, err := engine.Decide(context.Background(), tc.input)
		if d.Revision == "" {
			t.Errorf("call %d: the decision names no policy revision", i)
		}
		d.Revision = ""
		if err != nil || !reflect.DeepEqual(d, tc.want) {
			t.Errorf("call %d: decision %+v (error %v), want %+v", i, d, err, tc.want)
		}
		if n := cachedDecisions(engine); n != tc.cached {
			t.Errorf("call %d: %d decisions remembered, want %d", i, n, tc.cached)
		}
	}
}

// TestDecisionCacheSkipsFailures checks that an evaluation that fails is
// not remembered, and that its block is given again.
func TestDecisionCacheSkipsFailures(t *testing.T) {
	policy := "package mcp\ndecision := {\"action\": \"allow\"} if to_number(input.tool.arguments.repo) > 1\n"
	engine := newEngine(t, context.Background(), Options{Paths: []string{writePolicy(t, map[string]string{"p.rego": policy})}})
	for range 2 {
		d, err := engine.Decide(context.Background(), toolInput("t"))
		if err == nil || d.Action != ActionBlock {
			t.Errorf("decision %+v (error %v), want a block with an error", d, err)
		}
	}
	if n := cachedDecisions(engine); n != 0 {
		t.Errorf("%d failed evaluations remembered, want none", n)
	}
}

// TestDecisionCacheSkipsLongKeys checks that a call whose read part is
// longer than maxCacheKeyBytes is decided, and not remembered.
func TestDecisionCacheSkipsLongKeys(t *testing.T) {
	policy := "package mcp\ndecision := {\"action\": \"allow\", \"reason\": input.tool.arguments.text}\n"
	engine := newEngine(t, context.Background(), Options{Paths: []string{writePolicy(t, map[string]string{"p.rego": policy})}})
	for _, tc := range []struct {
		size   int
		cached int
	}{{maxCacheKeyBytes / 2, 1}, {maxCacheKeyBytes, 1}, {2 * maxCacheKeyBytes, 1}} {
		text := strings.Repeat("x", tc.size)
		in := &Input{Kind: "request", Method: "tools/call", Tool: &Tool{Name: "t", Arguments: map[string]any{"text": text}}}
		d, err := engine.Decide(context.Background(), in)
		if err != nil || d.Action != ActionAllow || d.Reason != text {
			t.Errorf("text of %d bytes: decision %.40v (error %v), want allow with the text", tc.size, d, err)
		}
		if n := cachedDecisions(engine); n != tc.cached {
			t.Errorf("after a text of %d bytes, %d decisions remembered, want %d", tc.size, n, tc.cached)
		}
	}
}

// TestDecisionCacheOnlyDeterministic checks that a policy calling a
// non-deterministic built-in is never cached, and that caching can be
// turned off.
func TestDecisionCacheOnlyDeterministic(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rules     string
		cacheSize int
		cached    bool
		query     string
	}{
		{"pure", `decision := {"action": "allow"} if input.tool.name == "t"`, 0, true, ""},
		{"pure, caching off", `decision := {"action": "allow"} if input.tool.name == "t"`, -1, false, ""},
		{"clock", `decision := {"action": "allow"} if time.now_ns() > 0`, 0, false, ""},
		{"clock in a helper", "recent if time.now_ns() > 0\ndecision := {\"action\": \"allow\"} if recent", 0, false, ""},
		{"http.send", `decision := {"action": "allow"} if http.send({"method": "GET", "url": "http://127.0.0.1:1"}).status_code == 200`, 0, false, ""},
		{"random", `decision := {"action": "allow"} if rand.intn("x", 10) >= 0`, 0, false, ""},
		{"uuid", `decision := {"action": "allow"} if uuid.rfc4122("x") != ""`, 0, false, ""},
		{"mocked clock", "recent if time.now_ns() > 0\ndecision := {\"action\": \"allow\"} if recent with time.now_ns as 1", 0, false, ""},
		{"clock in the decision query", "by := {0: {\"action\": \"allow\"}, 1: {\"action\": \"block\"}}", 0, false,
			"data.mcp.by[time.now_ns() % 2]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writePolicy(t, map[string]string{"p.rego": "package mcp\n" + tc.rules + "\n"})
			engine := newEngine(t, context.Background(), Options{Paths: []string{dir}, CacheSize: tc.cacheSize, Query: tc.query})
			if cached := cachedDecisions(engine) >= 0; cached != tc.cached {
				t.Errorf("cached = %v, want %v", cached, tc.cached)
			}
			if cached := engine.queries.Load().permission.cache != nil; cached != tc.cached {
				t.Errorf("permission query cached = %v, want %v", cached, tc.cached)
			}
		})
	}
}

// TestDeterministic checks which modules and queries are found pure: print
// and trace, whose output a remembered result would skip, the clock, DNS
// and certificate verification make them impure.
func TestDeterministic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		module string
		query  string
		want   bool
	}{
		{"pure", "p if input.x == 1", "data.t.p", true},
		{"print", "p if { print(input.x); true }", "data.t.p", false},
		{"trace", "p if { trace(\"here\"); true }", "data.t.p", false},
		{"clock", "p if { time.now_ns() > 0 }", "data.t.p", false},
		{"dns", "p if { net.lookup_ip_addr(\"x\") }", "data.t.p", false},
		{"certificates", "p if { crypto.x509.parse_and_verify_certificates(input.x)[0] }", "data.t.p", false},
		{"jwt with the clock", "p if { io.jwt.decode_verify(input.x, {})[0] }", "data.t.p", false},
		{"clock in the query", "by := {0: 1, 1: 2}", "data.t.by[time.now_ns() % 2]", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			module := ast.MustParseModule("package t\n" + tc.module)
			query := ast.MustParseBody(tc.query)
			if got := deterministic(map[string]*ast.Module{"t.rego": module}, query); got != tc.want {
				t.Errorf("deterministic(%q, %q) = %v, want %v", tc.module, tc.query, got, tc.want)
			}
		})
	}
}

// TestCacheConsultedSparsely checks that a cache whose inputs stop
// repeating is consulted on one call in sparseEvery, and on every call
// again once they repeat.
func TestCacheConsultedSparsely(t *testing.T) {
	cache, err := newDecisionCache(100)
	if err != nil {
		t.Fatal(err)
	}
	consulted := func(calls int, key func(i int) string) int {
		t.Helper()
		n := 0
		for i := range calls {
			if !cache.consulted() {
				continue
			}
			n++
			if _, found := cache.get(key(i)); !found {
				cache.put(key(i), cachedResult{defined: true})
			}
		}
		return n
	}
	distinct := func(i int) string { return "distinct " + strconv.Itoa(i) }
	same := func(int) string { return "same" }
	if n := consulted(cacheWindow, distinct); n != cacheWindow {
		t.Fatalf("first window: consulted on %d calls, want every one of %d", n, cacheWindow)
	}
	if n := consulted(cacheWindow*sparseEvery, distinct); n != cacheWindow {
		t.Fatalf("inputs not repeating: consulted on %d of %d calls, want %d", n, cacheWindow*sparseEvery, cacheWindow)
	}
	consulted(cacheWindow*sparseEvery, same)
	if n := consulted(cacheWindow, same); n != cacheWindow {
		t.Fatalf("inputs repeating again: consulted on %d calls, want every one of %d", n, cacheWindow)
	}
}

package approval

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// callWith returns alice's call of tool t on server s with args, a JSON
// object.
//
// The arguments are decoded with every number as written (json.Number),
// not through mcpmsg.Parse, which refuses the numbers that float readers
// read as another value before any call is bound: a binding stays exact
// whatever reaches it.
func callWith(t *testing.T, args string) Call {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(args))
	dec.UseNumber()
	var arguments map[string]any
	if err := dec.Decode(&arguments); err != nil {
		t.Fatalf("decoding arguments %s: %v", args, err)
	}
	return Call{User: "alice", Server: "s", Tool: "t", ToolHash: "9f86d081", Arguments: arguments}
}

// mustBinding returns the call's binding, failing the test on an error.
func mustBinding(t *testing.T, c Call) string {
	t.Helper()
	b, err := c.Binding()
	if err != nil {
		t.Fatalf("Binding of %+v: %v", c, err)
	}
	return b
}

// TestBindingExact checks that an approval binds exactly the call it was
// asked for: spellings of the arguments that no JSON reader can tell apart
// (member order, string escapes, whitespace) bind alike; any other
// difference, numbers that float64 would round alike included, binds to
// another approval. Each class lists spellings of one value; every
// spelling is checked against every other, of its class and of the rest.
func TestBindingExact(t *testing.T) {
	classes := [][]string{
		// Integers around 2^53, 2^63 and 2^64, which float64 rounds.
		{`{"n":9007199254740991}`},
		{`{"n":9007199254740992}`},
		{`{"n":9007199254740993}`},
		{`{"n":9223372036854775807}`},
		{`{"n":9223372036854775808}`},
		{`{"n":-9223372036854775808}`},
		{`{"n":-9223372036854775809}`},
		{`{"n":18446744073709551615}`},
		{`{"n":18446744073709551616}`},
		{`{"n":18446744073709551617}`},
		// Exponents beyond float64, and floats that are one float64.
		{`{"n":1e400}`},
		{`{"n":1e401}`},
		{`{"n":1.7976931348623157e308}`},
		{`{"n":1.7976931348623158e308}`},
		{`{"n":0.1}`},
		{`{"n":0.10000000000000001}`},
		// One value to float64, different numbers to a decimal reader.
		{`{"n":1}`, `{ "n" : 1 }`},
		{`{"n":1.0}`},
		{`{"n":1e0}`},
		{`{"n":100}`},
		{`{"n":1e2}`},
		{`{"n":1E2}`},
		{`{"n":1e+2}`},
		{`{"n":0}`},
		{`{"n":-0}`},
		{`{"n":0.0}`},
		// Strings: escapes are the same string, characters are not.
		{`{"s":"a"}`, `{"s":"\u0061"}`, `{"\u0073":"a"}`},
		{`{"s":"😀"}`, `{"s":"\ud83d\ude00"}`, `{"s":"\uD83D\uDE00"}`},
		{`{"s":"é"}`, `{"s":"\u00e9"}`},
		{`{"s":"e\u0301"}`, "{\"s\":\"e\u0301\"}"},
		{`{"s":"/"}`, `{"s":"\/"}`},
		{`{"s":"\n"}`, `{"s":"\u000a"}`},
		{`{"s":"A"}`},
		{`{"s":""}`},
		{`{"s":"0"}`},
		{`{"s":0}`},
		{`{"s":null}`},
		{`{"s":false}`},
		{`{"s":[]}`},
		{`{"s":{}}`},
		// Member order and whitespace, at every depth.
		{`{"a":1,"b":2}`, `{"b":2,"a":1}`, "{\n\t\"b\" : 2 ,\r\n \"a\":1}"},
		{`{"a":{"x":[1,{"y":"z","w":null}],"v":true}}`, `{"a":{"v":true,"x":[1,{"w":null,"y":"\u007a"}]}}`},
		{`{"a":{"x":[{"y":"z","w":null},1],"v":true}}`},
		{`{"a":[1]}`},
		{`{"a":[1.0]}`},
		{`{"a":{"n":9007199254740992}}`},
		{`{"a":{"n":9007199254740993}}`},
		{`{}`, ` { } `},
	}
	classOf := make(map[string]int)
	for i, class := range classes {
		for _, args := range class {
			t.Run(args, func(t *testing.T) {
				b := mustBinding(t, callWith(t, args))
				other, seen := classOf[b]
				switch {
				case !seen:
					classOf[b] = i
				case other != i:
					t.Errorf("%s binds like %s, want another approval", args, classes[other][0])
				}
				if first := mustBinding(t, callWith(t, class[0])); first != b {
					t.Errorf("%s binds differently from %s, want the same approval", args, class[0])
				}
			})
		}
	}
}

// TestBindingRespellings checks the same property on random arguments:
// two random spellings of one value bind alike, and changing one number to
// another spelling of the same float64 binds differently.
func TestBindingRespellings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		value := object{{"n", randomNumber(r)}, {"v", randomValue(r, 3)}}
		first, second := spell(r, value), spell(r, value)
		if a, b := mustBinding(t, callWith(t, first)), mustBinding(t, callWith(t, second)); a != b {
			t.Fatalf("case %d: %s and %s bind differently, want the same approval", i, first, second)
		}
		changed := spell(r, respellNumber(value, r.IntN(countNumbers(value))))
		if a, b := mustBinding(t, callWith(t, first)), mustBinding(t, callWith(t, changed)); a == b {
			t.Fatalf("case %d: %s and %s bind alike, want different approvals", i, first, changed)
		}
	}
}

// The values of TestBindingRespellings: objects keep their members in
// order, numbers their text.
type (
	object []member
	member struct {
		name  string
		value any
	}
	number string
)

var (
	// names fold apart (mcpmsg.FoldName): arguments whose names fold together are refused before they are bound.
	names   = []string{"a", "b", "c", "é", "😀", "a b", "", "日本"}
	strs    = []string{"a", "é", "e\u0301", "😀", "/", "\n", `"`, `\`, "x y", "", "\u2028", "日本", "\x00"}
	numbers = []string{"0", "-0", "1", "1.0", "1e0", "100", "1e2", "1E2", "1e+2", "0.1", "0.10", "-5.5e-3",
		"9007199254740992", "9007199254740993", "18446744073709551616", "1e400", "1e401"}
	spaces = []string{"", " ", "\n", "\t", "\r\n  "}
)

func randomNumber(r *rand.Rand) number { return number(numbers[r.IntN(len(numbers))]) }

// randomValue returns a random value nested at most depth deep.
func randomValue(r *rand.Rand, depth int) any {
	kinds := 6
	if depth == 0 {
		kinds = 4
	}
	switch r.IntN(kinds) {
	case 0:
		return randomNumber(r)
	case 1:
		return strs[r.IntN(len(strs))]
	case 2:
		return r.IntN(2) == 0
	case 3:
		return nil
	case 4:
		var o object
		for _, j := range r.Perm(len(names))[:r.IntN(4)] {
			o = append(o, member{names[j], randomValue(r, depth-1)})
		}
		return o
	default:
		a := make([]any, r.IntN(4))
		for i := range a {
			a[i] = randomValue(r, depth-1)
		}
		return a
	}
}

// spell writes v as JSON with random member order, escapes and spaces.
func spell(r *rand.Rand, v any) string {
	ws := func() string { return spaces[r.IntN(len(spaces))] }
	switch v := v.(type) {
	case object:
		parts := make([]string, len(v))
		for i, j := range r.Perm(len(v)) {
			parts[i] = ws() + spellString(r, v[j].name) + ws() + ":" + ws() + spell(r, v[j].value) + ws()
		}
		return "{" + ws() + strings.Join(parts, ",") + "}"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = ws() + spell(r, e) + ws()
		}
		return "[" + strings.Join(parts, ",") + ws() + "]"
	case number:
		return string(v)
	case string:
		return spellString(r, v)
	case bool:
		return strconv.FormatBool(v)
	default:
		return "null"
	}
}

// spellString writes s as a JSON string, each character either as it is
// (when JSON allows) or as a \u escape (a surrogate pair beyond U+FFFF),
// in upper or lower case hex.
func spellString(r *rand.Rand, s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		literal := c >= 0x20 && c != '"' && c != '\\'
		if literal && r.IntN(2) == 0 {
			b.WriteRune(c)
			continue
		}
		format := "\\u%04x"
		if r.IntN(2) == 0 {
			format = "\\u%04X"
		}
		if hi, lo := utf16.EncodeRune(c); hi != utf8.RuneError {
			fmt.Fprintf(&b, format+format, hi, lo)
		} else {
			fmt.Fprintf(&b, format, c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// countNumbers counts the numbers in v.
func countNumbers(v any) int {
	n := 0
	walkNumbers(v, func(number) number { n++; return "" })
	return n
}

// respellNumber returns v with its k-th number written otherwise, with
// the same float64 value: 1 as 1.0, 1.0 as 1.00, 1e2 as 1E2.
func respellNumber(v any, k int) any {
	return walkNumbers(v, func(n number) number {
		k--
		switch s := string(n); {
		case k != -1:
			return n
		case strings.ContainsAny(s, "eE"):
			return number(strings.NewReplacer("e", "E", "E", "e").Replace(s))
		case strings.Contains(s, "."):
			return number(s + "0")
		default:
			return number(s + ".0")
		}
	})
}

// walkNumbers returns a copy of v with every number n replaced by f(n).
func walkNumbers(v any, f func(number) number) any {
	switch v := v.(type) {
	case object:
		o := make(object, len(v))
		for i, m := range v {
			o[i] = member{m.name, walkNumbers(m.value, f)}
		}
		return o
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = walkNumbers(e, f)
		}
		return a
	case number:
		return f(v)
	default:
		return v
	}
}

// TestBindingApprovers: who may decide is part of the binding, in any
// order and with repeats; a principal outside the vocabulary is refused.
func TestBindingApprovers(t *testing.T) {
	call := func(approvers ...string) Call {
		c := callWith(t, `{"n":1}`)
		c.Approvers = approvers
		return c
	}
	anyone := mustBinding(t, call())
	leads := mustBinding(t, call("group:leads", "inbox:alice"))
	tests := []struct {
		name      string
		approvers []string
		want      string // "" for a binding unlike anyone's and leads'
	}{
		{"none", nil, anyone},
		{"empty list", []string{}, anyone},
		{"same, reordered", []string{"inbox:alice", "group:leads"}, leads},
		{"same, repeated", []string{"inbox:alice", "group:leads", "inbox:alice"}, leads},
		{"fewer", []string{"inbox:alice"}, ""},
		{"more", []string{"inbox:alice", "group:leads", "webhook"}, ""},
		{"other", []string{"inbox:bob", "group:leads"}, ""},
		{"every principal", []string{"webhook", "admin", "admin:carol", "inbox", "inbox:alice", "group:leads", "caller"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustBinding(t, call(tt.approvers...))
			switch {
			case tt.want != "" && got != tt.want:
				t.Errorf("approvers %q bind to %s, want %s", tt.approvers, got, tt.want)
			case tt.want == "" && (got == anyone || got == leads):
				t.Errorf("approvers %q bind like another list of approvers, want a binding of their own", tt.approvers)
			}
		})
	}
	for _, bad := range []string{"", "alice", "inbox:", "group:", "admin:", "Inbox", "caller:alice", "webhook:x"} {
		t.Run("refused "+bad, func(t *testing.T) {
			c := call("webhook", bad)
			if b, err := c.Binding(); err == nil {
				t.Errorf("approver %q bound to %s, want an error", bad, b)
			}
		})
	}
}

// TestBindingParts: another user, server, tool or tool definition binds to another
// approval; the session counts only without a user.
func TestBindingParts(t *testing.T) {
	base := callWith(t, `{"title":"x","n":1}`)
	want := mustBinding(t, base)
	tests := []struct {
		name   string
		change func(*Call)
		same   bool
	}{
		{"same user in another session", func(c *Call) { c.Session = "another session" }, true},
		{"another user", func(c *Call) { c.User = "bob" }, false},
		{"the same user id from another realm", func(c *Call) { c.Realm = `jwt issuer "https://other.example"` }, false},
		{"a realm that moves into the user id", func(c *Call) { c.Realm, c.User = "", c.Realm+":"+c.User }, false},
		{"another server", func(c *Call) { c.Server = "other" }, false},
		{"another tool", func(c *Call) { c.Tool = "delete_issue" }, false},
		{"another definition of the tool", func(c *Call) { c.ToolHash = "2b" + c.ToolHash }, false},
		{"a definition's name that moves into the tool's", func(c *Call) { c.Tool, c.ToolHash = c.Tool+c.ToolHash[:2], c.ToolHash[2:] }, false},
		{"another argument", func(c *Call) { c.Arguments = callWith(t, `{"title":"y","n":1}`).Arguments }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.change(&c)
			if got := mustBinding(t, c) == want; got != tt.same {
				t.Errorf("binds to the same approval: %v, want %v", got, tt.same)
			}
		})
	}
	anonymousA := Call{Session: "a", Server: "s", Tool: "t"}
	anonymousB := Call{Session: "b", Server: "s", Tool: "t"}
	if mustBinding(t, anonymousA) == mustBinding(t, anonymousB) {
		t.Error("without a user, calls in different sessions bind to the same approval, want different ones")
	}
}

// TestCanonicalArgumentsRefused: arguments that cannot be written as JSON
// exactly are an error, never a lossy binding.
func TestCanonicalArgumentsRefused(t *testing.T) {
	tests := []struct {
		name string
		args map[string]any
	}{
		{"invalid UTF-8", map[string]any{"s": "\xff"}},
		{"number that is not a number", map[string]any{"n": json.Number(`"1"`)}},
		{"empty number", map[string]any{"n": json.Number("")}},
		{"number with trailing data", map[string]any{"n": json.Number("1 2")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Call{Server: "s", Tool: "t", Arguments: tt.args}
			if b, err := c.Binding(); err == nil {
				t.Errorf("arguments %#v bound to %s, want an error", tt.args, b)
			}
		})
	}
}

// TestEntitled checks who may decide an approval.
func TestEntitled(t *testing.T) {
	var (
		webhook = Decider{ID: "webhook", Principals: []string{"webhook"}, Claim: "alice"}
		admin   = Decider{ID: "admin", Principals: []string{"admin"}}
		carol   = Decider{ID: "admin:carol", Principals: []string{"admin", "admin:carol"}}
		alice   = Decider{ID: "inbox:alice", Principals: []string{"inbox", "inbox:alice"}}
		dave    = Decider{ID: "inbox:dave", Principals: []string{"inbox", "inbox:dave", "group:leads"}}
		caller  = Decider{ID: "caller", Principals: []string{"caller"}}
		nobody  = Decider{ID: "nobody"}
		blank   = Decider{ID: "blank", Principals: []string{""}}
	)
	tests := []struct {
		approvers []string
		by        Decider
		want      bool
	}{
		{nil, webhook, true},
		{nil, admin, true},
		{nil, alice, true},
		{nil, caller, false},
		{nil, Decider{ID: "caller and inbox", Principals: []string{"caller", "inbox"}}, true},
		{nil, nobody, false},
		{nil, blank, false},
		{[]string{"inbox:alice"}, alice, true},
		{[]string{"inbox:alice"}, dave, false},
		{[]string{"inbox:alice"}, webhook, false},
		{[]string{"inbox:alice"}, admin, false},
		{[]string{"inbox:alice"}, caller, false},
		{[]string{"inbox"}, alice, true},
		{[]string{"group:leads", "admin:carol"}, dave, true},
		{[]string{"group:leads", "admin:carol"}, carol, true},
		{[]string{"group:leads", "admin:carol"}, admin, false},
		{[]string{"group:leads", "admin:carol"}, alice, false},
		{[]string{"admin"}, carol, true},
		{[]string{"caller"}, caller, true},
		{[]string{"caller"}, webhook, false},
		{[]string{"webhook"}, webhook, true},
		{[]string{"webhook"}, blank, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q by %s", tt.approvers, tt.by.ID), func(t *testing.T) {
			a := &Approval{ID: "apr_x", Approvers: tt.approvers}
			if got := a.Entitled(tt.by); got != tt.want {
				t.Errorf("Entitled(%+v) = %v, want %v", tt.by, got, tt.want)
			}
		})
	}
}

// TestCallerNeverDecidesOwnCall: a reviewer known to be the held call's
// own caller (by any spelling of the caller's id) may not decide it,
// unless its approvers name the caller; anyone else decides as before.
func TestCallerNeverDecidesOwnCall(t *testing.T) {
	reviewer := func(callers ...string) Decider {
		return Decider{ID: "inbox:x", Principals: []string{"inbox", "inbox:x", "group:leads"}, Callers: callers}
	}
	tests := []struct {
		name      string
		user      string
		approvers []string
		by        Decider
		want      bool
	}{
		{"any reviewer, the caller", "alice", nil, reviewer("alice"), false},
		{"inbox, the caller", "alice", []string{"inbox"}, reviewer("alice"), false},
		{"their own account named", "alice", []string{"inbox:x"}, reviewer("alice"), false},
		{"their group", "alice", []string{"group:leads"}, reviewer("alice"), false},
		{"a mapped id", "alice@example.com", []string{"inbox"}, reviewer("alice", "alice@example.com"), false},
		{"another case", "Alice", []string{"inbox"}, reviewer("alice"), false},
		{"spaces around", "alice ", []string{"inbox"}, reviewer("alice"), false},
		{"full-width letters", "ａｌｉｃｅ", []string{"inbox"}, reviewer("alice"), false},
		{"folded sharp s", "STRASSE", []string{"inbox"}, reviewer("straße"), false},
		{"small Cherokee letters", "\u13a0\u13a1", []string{"inbox"}, reviewer("\uab70\uab71"), false},
		{"an ideographic space around", "\u3000alice", []string{"inbox"}, reviewer("alice"), false},
		{"a remote admin", "carol", []string{"admin"}, Decider{ID: "admin:carol", Principals: []string{"admin", "admin:carol"}, Callers: []string{"carol"}}, false},
		{"the approvers name the caller", "alice", []string{"caller", "inbox"}, reviewer("alice"), true},
		{"someone else", "alice", []string{"inbox"}, reviewer("bob"), true},
		{"a caller nobody knows", "", []string{"inbox"}, reviewer("alice"), true},
		{"a decider the route cannot tell", "alice", []string{"admin"}, Decider{ID: "admin", Principals: []string{"admin"}}, true},
		{"an empty caller id counts for nothing", "alice", []string{"inbox"}, reviewer(""), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Approval{ID: "apr_x", User: tt.user, Approvers: tt.approvers}
			if got := a.Entitled(tt.by); got != tt.want {
				t.Errorf("Entitled = %v, want %v", got, tt.want)
			}
			if err := a.entitle(tt.by); (err == nil) != tt.want {
				t.Errorf("entitle = %v, want refused %v", err, !tt.want)
			}
		})
	}
}

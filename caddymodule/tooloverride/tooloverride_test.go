package tooloverride

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestNew: overrides that name no tool, change nothing, rename to a name
// the specification does not advise, or offer two tools under one name
// are refused, each saying which; the rest load.
func TestNew(t *testing.T) {
	tests := []struct {
		name      string
		overrides map[string]Override
		refused   string // in the error; "" when loaded
	}{
		{"none", nil, ""},
		{"a rename and a description", map[string]Override{"search_v2": {Name: "search", Description: "Search the issues."}}, ""},
		{"a description alone", map[string]Override{"search": {Description: "Search."}}, ""},
		{"a swap", map[string]Override{"a": {Name: "b"}, "b": {Name: "a"}}, ""},
		{"a rename to its own name", map[string]Override{"a": {Name: "a"}}, ""},
		{"a rename to a name another tool gives up", map[string]Override{"a": {Name: "b"}, "b": {Name: "c"}}, ""},
		{"no tool named", map[string]Override{"": {Name: "x"}}, "names no tool"},
		{"nothing changed", map[string]Override{"a": {}}, `tool "a" changes neither`},
		{"a title alone", map[string]Override{"a": {Title: "A"}}, ""},
		{"a name with a space", map[string]Override{"a": {Name: "send mail"}}, `renamed to "send mail": a tool's name must be`},
		{"a name too long", map[string]Override{"a": {Name: strings.Repeat("n", 129)}}, "must be 1 to 128"},
		{"a name with a slash", map[string]Override{"a": {Name: "mail/send"}}, "must be 1 to 128"},
		{"two tools renamed alike", map[string]Override{"a": {Name: "x"}, "b": {Name: "x"}}, `tools "a" and "b" are both renamed to "x"`},
		{"a rename to a name another keeps", map[string]Override{"a": {Name: "b"}, "b": {Description: "B."}}, `tool "a" is renamed to "b", which tool "b" keeps`},
		{"two names that differ by case", map[string]Override{"a": {Name: "X"}, "b": {Name: "x"}}, `renamed to "X" and "x", which differ only by case`},
		{"a rename to a name another keeps but for case", map[string]Override{"a": {Name: "B"}, "b": {Description: "B."}}, `which tool "b" keeps as its own name, but for case`},
		{"a name kept that differs by case from an old name", map[string]Override{"Echo": {Name: "say"}, "echo": {Description: "E."}}, `tool "echo" keeps its name, which differs only by case from that of tool "Echo"`},
		{"a swap by case", map[string]Override{"a": {Name: "A"}, "A": {Name: "a"}}, "which differ only by case"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.overrides)
			switch {
			case tt.refused == "" && err != nil:
				t.Errorf("New(%v) = %v; want it loaded", tt.overrides, err)
			case tt.refused != "" && err == nil:
				t.Errorf("New(%v) loaded; want it refused for %s", tt.overrides, tt.refused)
			case tt.refused != "" && !strings.Contains(err.Error(), tt.refused):
				t.Errorf("New(%v) = %v; want %s", tt.overrides, err, tt.refused)
			case tt.refused == "" && (s == nil) != (len(tt.overrides) == 0):
				t.Errorf("New(%v) = %v; want a set exactly when there are overrides", tt.overrides, s)
			}
		})
	}
}

// TestUpstream: a call by a tool's new name reaches the tool; a call by
// the old name of a renamed tool offers nothing, unless another tool is
// renamed to it, nor does a name that differs from a new name only by
// case (a tool the lists hide); other names are the server's own.
func TestUpstream(t *testing.T) {
	s, err := New(map[string]Override{
		"search_v2": {Name: "search"},
		"a":         {Name: "b"},
		"b":         {Name: "a"},
		"read":      {Description: "Read a file."},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		called, upstream string
		offered          bool
	}{
		{"Search", "", false},
		{"SEARCH_V2", "", false},
		{"search", "search_v2", true},
		{"search_v2", "", false},
		{"a", "b", true},
		{"b", "a", true},
		{"read", "read", true},
		{"other", "other", true},
	}
	for _, tt := range tests {
		if upstream, offered := s.Upstream(tt.called); upstream != tt.upstream || offered != tt.offered {
			t.Errorf("Upstream(%q) = %q, %v; want %q, %v", tt.called, upstream, offered, tt.upstream, tt.offered)
		}
	}
	var none *Set
	if upstream, offered := none.Upstream("x"); upstream != "x" || !offered {
		t.Errorf("no overrides: Upstream(x) = %q, %v", upstream, offered)
	}
}

// TestExpose: a listed tool is renamed and described as overridden, the
// rest of its definition kept; a tool not overridden comes as it was,
// unless another tool is renamed to its name, or to one that differs
// from it only by case, when it is hidden.
func TestExpose(t *testing.T) {
	s, err := New(map[string]Override{
		"search_v2": {Name: "search", Description: "Search the <open> issues."},
		"read":      {Description: "Read a file."},
		"x":         {Name: "shadow"},
		"titled":    {Title: "Find issues"},
		"y":         {Name: "Echo"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tool string
		want       map[string]any // nil: hidden
		same       bool           // the very bytes
	}{
		{"search_v2", `{"name":"search_v2","description":"old","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}`,
			map[string]any{"name": "search", "description": "Search the <open> issues.", "inputSchema": map[string]any{"type": "object"}, "annotations": map[string]any{"readOnlyHint": true}}, false},
		{"read", `{"name":"read","inputSchema":{}}`, map[string]any{"name": "read", "description": "Read a file.", "inputSchema": map[string]any{}}, false},
		{"other", `{"name":"other","description":"kept"}`, map[string]any{"name": "other", "description": "kept"}, true},
		{"titled", `{"name":"titled","title":"Search v2","annotations":{"title":"Search v2","readOnlyHint":true}}`,
			map[string]any{"name": "titled", "title": "Find issues", "annotations": map[string]any{"title": "Find issues", "readOnlyHint": true}}, false},
		{"titled", `{"name":"titled","annotations":{"readOnlyHint":true}}`,
			map[string]any{"name": "titled", "title": "Find issues", "annotations": map[string]any{"readOnlyHint": true}}, false},
		{"shadow", `{"name":"shadow"}`, nil, false},
		{"echo", `{"name":"echo"}`, nil, false},
		{"ſhadow", `{"name":"ſhadow"}`, nil, false},
	}
	for _, tt := range tests {
		exposed, hidden, err := s.Expose(json.RawMessage(tt.tool), tt.name)
		if err != nil {
			t.Errorf("Expose(%s): %v", tt.tool, err)
			continue
		}
		if hidden != (tt.want == nil) {
			t.Errorf("Expose(%s): hidden %v; want %v", tt.tool, hidden, tt.want == nil)
			continue
		}
		if hidden {
			continue
		}
		var got map[string]any
		if err := json.Unmarshal(exposed, &got); err != nil {
			t.Fatal(err)
		}
		if gotJSON, wantJSON := mustJSON(t, got), mustJSON(t, tt.want); gotJSON != wantJSON {
			t.Errorf("Expose(%s) = %s; want %s", tt.tool, gotJSON, wantJSON)
		}
		if tt.same && string(exposed) != tt.tool {
			t.Errorf("Expose(%s) = %s; want the very bytes", tt.tool, exposed)
		}
	}
	if _, _, err := s.Expose(json.RawMessage(`[1]`), "read"); err == nil {
		t.Error("Expose of a definition that is no object: no error")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

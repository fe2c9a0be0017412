package catalog

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// absent stands for a hint left out of the annotations.
type absent struct{}

func TestCategoryOf(t *testing.T) {
	tests := []struct {
		readOnly, destructive any
		want                  Category
	}{
		{absent{}, absent{}, Destructive},
		{absent{}, true, Destructive},
		{absent{}, false, Write},
		{absent{}, "false", Destructive},
		{absent{}, nil, Destructive},
		{true, absent{}, ReadOnly},
		{true, true, ReadOnly},
		{true, false, ReadOnly},
		{true, "false", ReadOnly},
		{true, nil, ReadOnly},
		{false, absent{}, Destructive},
		{false, true, Destructive},
		{false, false, Write},
		{false, "false", Destructive},
		{false, nil, Destructive},
		{"true", absent{}, Destructive},
		{"true", true, Destructive},
		{"true", false, Write},
		{"true", "false", Destructive},
		{"true", nil, Destructive},
		{1.0, absent{}, Destructive},
		{1.0, false, Write},
		{1.0, 0.0, Destructive},
		{nil, absent{}, Destructive},
		{nil, false, Write},
	}
	for _, tt := range tests {
		annotations := map[string]any{"title": "x"}
		if _, ok := tt.readOnly.(absent); !ok {
			annotations["readOnlyHint"] = tt.readOnly
		}
		if _, ok := tt.destructive.(absent); !ok {
			annotations["destructiveHint"] = tt.destructive
		}
		t.Run(fmt.Sprintf("readOnly=%#v,destructive=%#v", tt.readOnly, tt.destructive), func(t *testing.T) {
			if got := CategoryOf(annotations); got != tt.want {
				t.Errorf("CategoryOf(%v) = %q, want %q", annotations, got, tt.want)
			}
		})
	}
	t.Run("nil annotations", func(t *testing.T) {
		if got := CategoryOf(nil); got != Destructive {
			t.Errorf("CategoryOf(nil) = %q, want %q", got, Destructive)
		}
	})
}

// TestCategoryOfSDKTools checks categories of tools as the go-sdk encodes
// them, through the same path the gateway takes: a tools/list result read
// by ParseToolsList and learned by a Catalog.
func TestCategoryOfSDKTools(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name        string
		annotations *mcp.ToolAnnotations
		want        Category
	}{
		{"no annotations", nil, Destructive},
		{"empty annotations", &mcp.ToolAnnotations{}, Destructive},
		{"read only", &mcp.ToolAnnotations{ReadOnlyHint: true}, ReadOnly},
		{"read only and destructive", &mcp.ToolAnnotations{ReadOnlyHint: true, DestructiveHint: &yes}, ReadOnly},
		{"not destructive", &mcp.ToolAnnotations{DestructiveHint: &no}, Write},
		{"destructive", &mcp.ToolAnnotations{DestructiveHint: &yes}, Destructive},
		{"idempotent only", &mcp.ToolAnnotations{IdempotentHint: true}, Destructive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result, err := json.Marshal(&mcp.ListToolsResult{Tools: []*mcp.Tool{{
				Name:        "tool",
				InputSchema: map[string]any{"type": "object"},
				Annotations: tt.annotations,
			}}})
			if err != nil {
				t.Fatal(err)
			}
			tools, _, _, err := ParseToolsList(result)
			if err != nil {
				t.Fatalf("ParseToolsList(%s): %v", result, err)
			}
			c := newTestCatalog(t, NewFilePinStore(t.TempDir()+"/pins.json"))
			if err := c.Learn(t.Context(), "s", tools, c.Generation("s")); err != nil {
				t.Fatal(err)
			}
			got, ok := c.Lookup("s", "tool")
			if !ok {
				t.Fatalf("Lookup after learning %s: tool not found", result)
			}
			if got.Category != tt.want {
				t.Errorf("category of %s = %q, want %q", result, got.Category, tt.want)
			}
		})
	}
}

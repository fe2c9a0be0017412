package gateway_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
)

// TestListedItemsHiddenPerCaller: resources and prompts lists hide, from
// each caller, the items the policy blocks that caller from reaching (a
// rule on the resource's URI, on the prompt's name and the caller), as
// tools lists hide tools; under a policy that reads arguments, lists
// show everything, as before. Every transport's reply (JSON, a stream)
// and revision is filtered alike.
func TestListedItemsHiddenPerCaller(t *testing.T) {
	byName := `package mcp

import rego.v1

import data.mcp

block contains sprintf("resource %q is not public", [uri]) if {
	some uri in mcp.resource_uris
	not startswith(uri, "file:///public/")
}

block contains "the quarterly prompt is for finance" if {
	mcp.prompt_name == "quarterly"
	input.user.id != "finn"
}
`
	byArgument := byName + `
block contains "echo only in acme's repositories" if {
	input.tool.name == "echo"
	not startswith(mcp.argument(input.tool, "repo"), "acme/")
}
`
	table := map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "write": "allow", "destructive": "block", "resources": "allow", "prompts": "allow",
	}}}
	everything := map[string][]string{"resources": {"file:///public/a", "file:///public/b", "file:///secret"}, "prompts": {"greet", "quarterly"}}
	tests := []struct {
		name string
		rule string
		want map[string]map[string][]string // user, then list
	}{
		{"rules on names", byName, map[string]map[string][]string{
			"alice": {"resources": {"file:///public/a", "file:///public/b"}, "prompts": {"greet"}},
			"finn":  {"resources": {"file:///public/a", "file:///public/b"}, "prompts": {"greet", "quarterly"}},
		}},
		{"a rule on an argument too", byArgument, map[string]map[string][]string{"alice": everything, "finn": everything}},
	}
	for _, tt := range tests {
		for _, mode := range []upstreamtest.Mode{upstreamtest.StatefulJSON, upstreamtest.StatefulSSE} {
			t.Run(tt.name+", "+mode.Name, func(t *testing.T) {
				modules := maps.Clone(policies.Library())
				modules["org.rego"] = tt.rule
				engine, err := policy.New(context.Background(), policy.Options{Modules: modules, Data: table})
				if err != nil {
					t.Fatal(err)
				}
				u := upstreamtest.Unstarted("items", nil, upstreamTools)
				for _, uri := range everything["resources"] {
					u.Server.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
						return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, Text: "x"}}}, nil
					})
				}
				for _, name := range everything["prompts"] {
					u.Server.AddPrompt(&mcp.Prompt{Name: name}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
						return &mcp.GetPromptResult{}, nil
					})
				}
				up := u.Start(t, mode.Handler(u.Server))
				cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
				cfg.MaxBody = 64 << 10
				cfg.Identity = userHeaderIdentity("")
				gw := serveGateway(t, cfg, up.URL)
				for user, want := range tt.want {
					for _, version := range []string{"", mcphttp.Version20251125} {
						session := connectAs(t, gw.URL, user, version)
						resources, err := session.ListResources(t.Context(), nil)
						if err != nil {
							t.Fatalf("%s: resources/list: %v", user, err)
						}
						var uris []string
						for _, r := range resources.Resources {
							uris = append(uris, r.URI)
						}
						prompts, err := session.ListPrompts(t.Context(), nil)
						if err != nil {
							t.Fatalf("%s: prompts/list: %v", user, err)
						}
						var names []string
						for _, p := range prompts.Prompts {
							names = append(names, p.Name)
						}
						slices.Sort(uris)
						slices.Sort(names)
						if !slices.Equal(uris, want["resources"]) || !slices.Equal(names, want["prompts"]) {
							t.Errorf("%s under %q: resources %q, prompts %q; want %q, %q", user, version, uris, names, want["resources"], want["prompts"])
						}
					}
				}
			})
		}
	}
}

// TestListedItemsReadStrictly: a resources list's item that names no URI
// a read could reach, or one that servers resolve in different ways, is
// hidden; a list with a member a reader may take for its items
// ("Resources") is refused; past 2,000 items, a page's items are hidden.
func TestListedItemsReadStrictly(t *testing.T) {
	var many []string
	for i := range 2001 {
		many = append(many, fmt.Sprintf(`{"name":"r","uri":"file:///r%d"}`, i))
	}
	for _, tt := range []struct{ name, result, want string }{
		{"a page past the bound", `{"resources":[` + strings.Join(many, ",") + `]}`,
			`{"resources":[` + strings.Join(many[:2000], ",") + `]}`},
		{"items without a URI, or resolving elsewhere", `{"resources":[{"name":"a","uri":"file:///a"},{"name":"b"},{"name":"c","uri":7},{"name":"d","uri":"file:///a/../etc"}]}`,
			`{"resources":[{"name":"a","uri":"file:///a"}]}`},
		{"a member in another case", `{"resources":[],"Resources":[{"name":"x","uri":"file:///x"}]}`, "which readers may take for it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				message, _ := upstreamtest.ReadMessage(r)
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, message.ID, tt.result)
			}))
			engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{"read_only": "allow", "resources": "allow"}}}})
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
			cfg.MaxBody = 64 << 10
			gw := serveGateway(t, cfg, up.URL)
			got := post(t, gw.URL, http.Header{"Mcp-Protocol-Version": {"2025-11-25"}}, `{"jsonrpc":"2.0","id":3,"method":"resources/list"}`)
			if !strings.Contains(string(got.body), tt.want) {
				t.Errorf("HTTP %d %s; want it to hold %s", got.status, got.body, tt.want)
			}
		})
	}
}

// TestStrayItemListsHidden: a resources list the upstream sends as the
// answer of another request (on another POST's reply, as an upstream
// that answers on the latest stream of an id does; after the list was
// cancelled) is filtered all the same; an item naming its URI twice, in
// two cases, is hidden (a reader matching names in any case may take the
// other); an item the policy would hold for approval is hidden, as a
// read of it is refused.
func TestStrayItemListsHidden(t *testing.T) {
	rule := `package mcp

import rego.v1

import data.mcp

block contains sprintf("resource %q is not public", [uri]) if {
	some uri in mcp.resource_uris
	not startswith(uri, "file:///public/")
	not startswith(uri, "file:///held/")
}

needs_approval contains "held resources need a person" if {
	some uri in mcp.resource_uris
	startswith(uri, "file:///held/")
}
`
	modules := maps.Clone(policies.Library())
	modules["org.rego"] = rule
	engine, err := policy.New(context.Background(), policy.Options{Modules: modules, Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{"read_only": "allow", "resources": "allow"}}}})
	if err != nil {
		t.Fatal(err)
	}
	const list = `{"resources":[{"name":"a","uri":"file:///public/a"},{"name":"s","uri":"file:///secret"},{"name":"h","uri":"file:///held/h"},{"name":"v","uri":"file:///public/v","URI":"file:///secret"}]}`
	// go-sdk's client skips a null item and reads the rest.
	const withNull = `{"resources":[null,{"name":"s","uri":"file:///secret"},{"name":"a","uri":"file:///public/a"}]}`
	const noList = `{"resources":"see the docs","prompts":[1,2],"nested":{"resources":[{"uri":"file:///secret"}]}}`
	up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		message, _ := upstreamtest.ReadMessage(r)
		w.Header().Set("Content-Type", "application/json")
		result := list
		switch string(message.ID) {
		case "4":
			result = noList
		case "5":
			result = withNull
		}
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, message.ID, result)
	}))
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.MaxBody = 64 << 10
	gw := serveGateway(t, cfg, up.URL)
	for _, method := range []string{"resources/list", "ping"} {
		got := post(t, gw.URL, http.Header{"Mcp-Protocol-Version": {"2025-11-25"}}, `{"jsonrpc":"2.0","id":3,"method":"`+method+`"}`)
		if want := `{"resources":[{"name":"a","uri":"file:///public/a"}]}`; !strings.Contains(string(got.body), want) {
			t.Errorf("%s answered with a resources list: HTTP %d %s; want it to hold %s alone", method, got.status, got.body, want)
		}
	}
	// A result with members of those names that are no lists is left
	// as it came.
	if got := post(t, gw.URL, http.Header{"Mcp-Protocol-Version": {"2025-11-25"}}, `{"jsonrpc":"2.0","id":4,"method":"ping"}`); !strings.Contains(string(got.body), noList) {
		t.Errorf("a result naming resources and prompts that are no lists: HTTP %d %s; want it as it came", got.status, got.body)
	}
	if got := post(t, gw.URL, http.Header{"Mcp-Protocol-Version": {"2025-11-25"}}, `{"jsonrpc":"2.0","id":5,"method":"ping"}`); !strings.Contains(string(got.body), `{"resources":[{"name":"a","uri":"file:///public/a"}]}`) {
		t.Errorf("a stray list with a null item: HTTP %d %s; want it filtered", got.status, got.body)
	}
}

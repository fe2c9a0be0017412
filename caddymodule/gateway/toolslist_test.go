package gateway_test

import (
	"context"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
)

// peekForAdmins is a rule of the organization's on the caller and the
// tool's name alone: only admins may call peek.
const peekForAdmins = `package mcp

import rego.v1

block contains "only admins may peek at issues" if {
	input.tool.name == "peek"
	input.user.id != "admin"
}
`

// TestToolsListHiddenPerCaller: a tool the policy blocks for one caller,
// whatever the call's arguments (a rule of the organization's that reads
// the caller and the tool's name alone), is hidden from that caller's
// tools list and kept in another's; under a policy that reads
// arguments, a list hides only what the table blocks (a call without
// arguments says nothing of calls with them).
func TestToolsListHiddenPerCaller(t *testing.T) {
	byCaller := peekForAdmins
	byArgument := `package mcp

import rego.v1

import data.mcp

block contains "echo only in acme's repositories" if {
	input.tool.name == "echo"
	not startswith(mcp.argument(input.tool, "repo"), "acme/")
}
`
	table := map[string]any{"mcp": map[string]any{"permissions": map[string]any{"read_only": "allow", "write": "allow", "destructive": "block"}}}
	tests := []struct {
		name      string
		rule      string
		wantUsers map[string][]string
	}{
		{"a rule on the caller", byCaller, map[string][]string{
			"admin": {"create_issue", "echo", "peek"},
			"alice": {"create_issue", "echo"},
		}},
		{"a rule on an argument", byArgument, map[string][]string{
			"admin": {"create_issue", "echo", "peek"},
			"alice": {"create_issue", "echo", "peek"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			modules := maps.Clone(policies.Library())
			modules["org.rego"] = tt.rule
			engine, err := policy.New(context.Background(), policy.Options{Modules: modules, Data: table})
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
			cfg.MaxBody = 64 << 10
			cfg.Identity = userHeaderIdentity("")
			up := newUpstream(t, upstreamtest.StatefulSSE)
			gw := serveGateway(t, cfg, up.URL)
			for user, want := range tt.wantUsers {
				session := connectAs(t, gw.URL, user, "")
				listed, err := session.ListTools(t.Context(), nil)
				if err != nil {
					t.Fatalf("%s: tools/list: %v", user, err)
				}
				var names []string
				for _, tool := range listed.Tools {
					names = append(names, tool.Name)
				}
				slices.Sort(names)
				if !slices.Equal(names, want) {
					t.Errorf("%s's tools/list = %q; want %q", user, names, want)
				}
			}
		})
	}
}

// connectAs opens a go-sdk client session through the gateway at url as
// user (the X-Test-User header userHeaderIdentity reads), speaking version
// ("" for the SDK's latest).
func connectAs(t *testing.T, url, user, version string) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: headerAdder{"X-Test-User": user}}}
	session, err := client.Connect(t.Context(), transport, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("%s connecting: %v", user, err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

// headerAdder is an http.RoundTripper that sends its headers with every
// request.
type headerAdder map[string]string

func (h headerAdder) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for name, value := range h {
		r.Header.Set(name, value)
	}
	return http.DefaultTransport.RoundTrip(r)
}

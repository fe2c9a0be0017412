package gateway_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/tooloverride"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// TestToolOverrides: a tool renamed is listed under its new name and
// described as overridden, and a call of its new name runs the server's
// tool; a call of its old name is refused as a tool the server does not
// offer; the policy and the table decide on the server's names (a
// destructive tool renamed stays blocked, and hidden); a tool of the
// server's that keeps the name another is renamed to is hidden, and a
// call of that name reaches the renamed tool. On JSON and SSE replies.
func TestToolOverrides(t *testing.T) {
	for _, mode := range []upstreamtest.Mode{upstreamtest.StatefulJSON, upstreamtest.StatefulSSE} {
		t.Run(mode.Name, func(t *testing.T) {
			up, session, tools := listOverridden(t, mode, map[string]tooloverride.Override{
				"echo":         {Name: "say", Description: "Say the text back."},
				"delete_issue": {Name: "remove_issue"},
				"create_issue": {Description: "File an issue (a person approves it)."},
			})
			descriptions := map[string]string{}
			for _, tool := range tools {
				descriptions[tool.Name] = tool.Description
			}
			want := map[string]string{"say": "Say the text back.", "create_issue": "File an issue (a person approves it)."}
			if fmt.Sprint(descriptions) != fmt.Sprint(want) {
				t.Errorf("tools/list: %v; want %v (echo renamed, delete_issue blocked, peek blocked)", descriptions, want)
			}
			for _, tt := range []struct {
				tool, want string
				isError    bool
			}{
				{"say", "echo:hi", false},
				{"echo", `the server does not offer a tool named "echo"`, true},
				{"remove_issue", refusedDestructive, true},
				{"delete_issue", `the server does not offer a tool named "delete_issue"`, true},
			} {
				got, isError := callTool(t, session, tt.tool, "hi")
				if isError != tt.isError || !strings.Contains(got, tt.want) {
					t.Errorf("calling %s: %q (isError %v); want %q (isError %v)", tt.tool, got, isError, tt.want, tt.isError)
				}
			}
			if n := up.CallCount("delete_issue"); n != 0 {
				t.Errorf("delete_issue ran %d times", n)
			}
		})
	}

	t.Run("a tool renamed to another's name", func(t *testing.T) {
		up, session, tools := listOverridden(t, upstreamtest.StatefulJSON, map[string]tooloverride.Override{"create_issue": {Name: "echo"}})
		var names []string
		for _, tool := range tools {
			names = append(names, tool.Name)
			if tool.Name == "echo" && (tool.Annotations == nil || tool.Annotations.ReadOnlyHint) {
				t.Errorf("the echo listed is %+v; want create_issue's definition", tool)
			}
		}
		if !slices.Equal(names, []string{"echo"}) {
			t.Errorf("tools/list: %v; want echo alone (create_issue renamed to it, the server's echo hidden, peek and delete_issue blocked)", names)
		}
		if got, isError := callTool(t, session, "echo", "hi"); !isError || !strings.Contains(got, refusedApproval) {
			t.Errorf("calling echo: %q (isError %v); want create_issue's refusal (it needs approval)", got, isError)
		}
		if n := up.CallCount("echo"); n != 0 {
			t.Errorf("the server's echo ran %d times; want it reached by no name", n)
		}
	})
}

// listOverridden starts an upstream serving upstreamTools in mode behind
// a gateway with the library, the test's table and overrides, connects
// a client, and returns them with the tools the client is listed.
func listOverridden(t *testing.T, mode upstreamtest.Mode, overrides map[string]tooloverride.Override) (*upstreamtest.Upstream, *mcp.ClientSession, []*mcp.Tool) {
	t.Helper()
	up := newUpstream(t, mode)
	cfg := libraryConfig(t)
	var err error
	if cfg.ToolOverrides, err = tooloverride.New(overrides); err != nil {
		t.Fatal(err)
	}
	session := connect(t, serveGateway(t, cfg, up.URL).URL, nil, "")
	listed, err := session.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return up, session, listed.Tools
}

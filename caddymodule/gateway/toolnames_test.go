package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/tooloverride"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
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
				{"remove_issue", refusedDestructive + `, and destructive tools are set to block` + "\n\n" + `The tool "remove_issue" you called is the server's "delete_issue".`, true},
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

	t.Run("a tool renamed to another's name in another case", func(t *testing.T) {
		up, session, tools := listOverridden(t, upstreamtest.StatefulJSON, map[string]tooloverride.Override{"create_issue": {Name: "Echo"}})
		if len(tools) != 1 || tools[0].Name != "Echo" {
			t.Errorf("tools/list: %v; want Echo alone (the server's echo hidden)", tools)
		}
		if got, isError := callTool(t, session, "echo", "hi"); !isError || !strings.Contains(got, `the server does not offer a tool named "echo"`) || up.CallCount("echo") != 0 {
			t.Errorf("calling echo: %q (isError %v, ran %d times); want it refused", got, isError, up.CallCount("echo"))
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

// TestRenamedCallOnTheWire: a renamed call goes to the server as the
// client sent it but for its tool's name: under 2026-07-28 its Mcp-Name
// header, checked against the name the client sent, is made the
// server's too (go-sdk's server checks it), and a member of the message
// the gateway does not know, and numbers as written, reach the server
// unchanged; in a 2025-03-26 batch, each call is renamed, and a renamed
// tool's old name refused.
func TestRenamedCallOnTheWire(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	cfg := libraryConfig(t)
	var err error
	if cfg.ToolOverrides, err = tooloverride.New(map[string]tooloverride.Override{"echo": {Name: "say"}}); err != nil {
		t.Fatal(err)
	}
	gw := serveGateway(t, cfg, up.URL)
	header := http.Header{mcphttp.HeaderProtocolVersion: {mcphttp.Version20260728}, mcphttp.HeaderMethod: {"tools/call"}, mcphttp.HeaderName: {"say"}}
	got := post(t, gw.URL, header, `{"jsonrpc":"2.0","id":1,"x-vendor":{"n":1.50e2},"method":"tools/call","params":{"name":"say","arguments":{"text":"hi"},"x-n":1.0,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`)
	if got.status != http.StatusOK || !strings.Contains(string(got.body), "echo:hi") {
		t.Fatalf("a 2026-07-28 call of say with Mcp-Name say: HTTP %d %s; want echo's answer", got.status, got.body)
	}
	received := up.ReceivedFromClients()
	last := received[len(received)-1]
	if name := last.Header.Get(mcphttp.HeaderName); name != "echo" {
		t.Errorf("the server got Mcp-Name %q; want echo", name)
	}
	for _, want := range []string{`"name":"echo"`, `"x-vendor":{"n":1.50e2}`, `"x-n":1.0`} {
		if !strings.Contains(string(last.Body), want) {
			t.Errorf("the server got %s; want it to hold %s", last.Body, want)
		}
	}

	batch := `[` + callBody("1", "say", "b1") + `,` + callBody("2", "echo", "b2") + `]`
	got = post(t, gw.URL, http.Header{mcphttp.HeaderProtocolVersion: {mcphttp.Version20250326}}, batch)
	if !strings.Contains(string(got.body), "echo:b1") || !strings.Contains(string(got.body), `the server does not offer a tool named \"echo\"`) || up.SawBodyContaining("b2") {
		t.Errorf("a batch of say and echo: HTTP %d %s; want say run as echo, echo refused", got.status, got.body)
	}
	// A batch's Mcp-Name (optional in 2025-03-26) names every message's
	// name; renamed, it is taken out rather than made one message's.
	batch = `[` + callBody("3", "say", "b3") + `,{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"say"}}]`
	post(t, gw.URL, http.Header{mcphttp.HeaderProtocolVersion: {mcphttp.Version20250326}, mcphttp.HeaderName: {"say"}}, batch)
	received = up.ReceivedFromClients()
	if last := received[len(received)-1]; !strings.Contains(string(last.Body), "b3") || last.Header.Get(mcphttp.HeaderName) != "" {
		t.Errorf("a batch with Mcp-Name say: the server got Mcp-Name %q with %s; want none", last.Header.Get(mcphttp.HeaderName), last.Body)
	}
}

// TestConfirmationNamesCalledTool: where tools swap names, the caller
// asked to confirm a call is told the tool by the name they called it
// by, beside the server's (the server's create_issue, offered as echo,
// is no harmless echo to them).
func TestConfirmationNamesCalledTool(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	cfg := callerConfirmsConfig(t)
	var err error
	if cfg.ToolOverrides, err = tooloverride.New(map[string]tooloverride.Override{"echo": {Name: "create_issue"}, "create_issue": {Name: "echo"}}); err != nil {
		t.Fatal(err)
	}
	gw := serveGateway(t, cfg, up.URL)
	asked := make(chan string, 1)
	session := connect(t, gw.URL, &mcp.ClientOptions{ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		asked <- req.Params.Message
		return &mcp.ElicitResult{Action: "accept"}, nil
	}}, mcphttp.Version20251125)
	if text, isError := callTool(t, session, "echo", "hi"); isError || text != "create_issue:hi" {
		t.Errorf("calling echo (the server's create_issue), confirmed: %q (isError %v)", text, isError)
	}
	select {
	case message := <-asked:
		if !strings.Contains(message, `run the tool "echo" (the server's "create_issue")`) {
			t.Errorf("the caller was asked %q; want the tool named as they called it, and as the server does", message)
		}
	default:
		t.Error("the caller was never asked")
	}
}

// TestHeldRenamedCallAnswerNamesCalledTool: what a held call of a
// renamed tool ends with (here the caller declined it) names the tool as
// they called it, beside the server's, as its refusal does.
func TestHeldRenamedCallAnswerNamesCalledTool(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	cfg := callerConfirmsConfig(t)
	var err error
	if cfg.ToolOverrides, err = tooloverride.New(map[string]tooloverride.Override{"create_issue": {Name: "open_issue"}}); err != nil {
		t.Fatal(err)
	}
	gw := serveGateway(t, cfg, up.URL)
	session := connect(t, gw.URL, &mcp.ClientOptions{ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		return &mcp.ElicitResult{Action: "decline"}, nil
	}}, mcphttp.Version20251125)
	text, isError := callTool(t, session, "open_issue", "hi")
	if !isError || !strings.Contains(text, "You declined this call") || !strings.Contains(text, `The tool "open_issue" you called is the server's "create_issue".`) {
		t.Errorf("open_issue, declined: %q (isError %v); want the decline, naming the tool as called and as the server's", text, isError)
	}
}

// TestTableEntryUnderNewNameRefused: a permissions table entry under the
// name a tool is renamed to (not the server's name of any tool
// overridden) would decide nothing: the gateway does not start.
func TestTableEntryUnderNewNameRefused(t *testing.T) {
	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "tools": map[string]any{"say": "block"},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	if cfg.ToolOverrides, err = tooloverride.New(map[string]tooloverride.Override{"echo": {Name: "say"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.New(cfg); err == nil || !strings.Contains(err.Error(), `the permissions table names tool "say", the name tool "echo" is renamed to`) {
		t.Errorf("gateway.New = %v; want the table entry refused", err)
	}
}

// TestRetiredGatewayRenamesAsRunning: a gateway a reload retired renames
// the lists it still relays as the gateways serving its server now do
// (calls are renamed by theirs): the server's echo, which the running
// configuration hides behind create_issue renamed to echo, is not
// offered; gateways that rename alike agree, and those that do not have
// the list shown empty.
func TestRetiredGatewayRenamesAsRunning(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	var now []*gateway.Gateway
	cfg := libraryConfig(t)
	cfg.Running = func() []*gateway.Gateway { return now }
	old := serveGateway(t, cfg, up.URL)
	header := http.Header{}
	header.Set("Mcp-Session-Id", initialize(t, old.URL, header))
	header.Set("Mcp-Protocol-Version", "2025-06-18")
	renamed := func(overrides map[string]tooloverride.Override) *gateway.Gateway {
		renewed := libraryConfig(t)
		var err error
		if renewed.ToolOverrides, err = tooloverride.New(overrides); err != nil {
			t.Fatal(err)
		}
		return newGateway(t, renewed)
	}
	echoIsCreate := map[string]tooloverride.Override{"create_issue": {Name: "echo"}}
	old.gateway.Retire(true)
	for _, tt := range []struct {
		name    string
		running []*gateway.Gateway
		want    string
	}{
		{"one running gateway", []*gateway.Gateway{renamed(echoIsCreate)}, `"readOnlyHint":false},"inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"additionalProperties":false},"name":"echo"}]`},
		{"two that agree", []*gateway.Gateway{renamed(echoIsCreate), renamed(echoIsCreate)}, `"name":"echo"`},
		{"two that do not", []*gateway.Gateway{renamed(echoIsCreate), renamed(nil)}, `"tools":[]`},
	} {
		now = tt.running
		got := post(t, old.URL, header, `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`)
		if body := string(got.body); strings.Contains(body, `"readOnlyHint":true`) || !strings.Contains(body, tt.want) {
			t.Errorf("%s: the retired gateway relayed %s; want it to hold %s, and not the server's echo", tt.name, body, tt.want)
		}
	}
}

package caddymodule_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// TestToolCallsThroughGateway runs go-sdk clients through real Caddy
// against go-sdk servers in every Streamable HTTP mode: allowed calls run,
// refused ones never reach the upstream, and the reason reaches the client.
func TestToolCallsThroughGateway(t *testing.T) {
	for _, mode := range upstreamtest.Modes {
		t.Run(mode.Name, func(t *testing.T) {
			up := newUpstream(t, mode)
			gateway := startGateway(t, up.URL, gatewayOptions{})
			session := connect(t, gateway, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			tools, err := session.ListTools(ctx, nil)
			if err != nil {
				t.Fatalf("tools/list through the gateway: %v", err)
			}
			// The policy blocks delete_issue by its name alone, so the list
			// hides it, as the permissions table hides what it blocks.
			var listed []string
			for _, tool := range tools.Tools {
				listed = append(listed, tool.Name)
			}
			slices.Sort(listed)
			if want := "create_issue,echo,slow"; strings.Join(listed, ",") != want {
				t.Errorf("tools/list gave %v, want the upstream's 4 but delete_issue, which the policy blocks", listed)
			}

			res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
			if err != nil {
				t.Fatalf("calling allowed tool echo: %v", err)
			}
			if res.IsError || resultText(res) != "echo:hi" {
				t.Errorf("echo result = %q (isError %v), want %q", resultText(res), res.IsError, "echo:hi")
			}

			refusals := []struct {
				tool, want string
			}{
				{"delete_issue", "Blocked by policy: deleting issues is not allowed here"},
				{"create_issue", "needs approval, but no approval is configured"},
				{"not_listed", `Blocked by policy: the server does not offer a tool named "not_listed"`},
			}
			for _, refusal := range refusals {
				res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: refusal.tool, Arguments: map[string]any{"text": "x"}})
				if err != nil {
					t.Fatalf("calling %s: want a tool result with isError, got error %v", refusal.tool, err)
				}
				if !res.IsError || !strings.Contains(resultText(res), refusal.want) {
					t.Errorf("%s result = %q (isError %v), want isError with %q", refusal.tool, resultText(res), res.IsError, refusal.want)
				}
				if n := up.CallCount(refusal.tool); n != 0 {
					t.Errorf("upstream ran %s %d times, want 0", refusal.tool, n)
				}
				if up.SawBodyContaining(`"` + refusal.tool + `"`) {
					t.Errorf("upstream received a body naming %s", refusal.tool)
				}
			}

			_, err = session.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///etc/passwd"})
			if err == nil || !strings.Contains(err.Error(), "reading resources is off in tests") {
				t.Errorf("resources/read: want a JSON-RPC error carrying the reason, got %v", err)
			}
			if up.SawBodyContaining("resources/read") {
				t.Error("upstream received the refused resources/read")
			}

			if mode.Stateless {
				assertUpstreamSawHeader(t, up, "Mcp-Method", "tools/call")
			}
		})
	}
}

// assertUpstreamSawHeader checks that some request reached the upstream
// with the header set to value (proof that the client spoke a revision
// that sends it, and that the gateway kept it).
func assertUpstreamSawHeader(t *testing.T, up *upstreamtest.Upstream, name, value string) {
	t.Helper()
	for _, r := range up.Received() {
		if r.Header.Get(name) == value {
			return
		}
	}
	t.Errorf("upstream never saw %s: %s", name, value)
}

// TestStreamsPassThroughUnbuffered proves the gateway streams SSE as the
// upstream flushes it: the slow tool sends a progress notification and then
// waits until the client has seen it, which deadlocks if anything buffers.
func TestStreamsPassThroughUnbuffered(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{})
	session := connect(t, gateway, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			if req.Params.Message == "half way" {
				up.ReleaseSlow()
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	params := &mcp.CallToolParams{Name: "slow", Arguments: map[string]any{"text": "s"}}
	params.SetProgressToken("p1")
	res, err := session.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("slow call: %v (the progress event did not reach the client before the result: buffered?)", err)
	}
	if resultText(res) != "slow:s" {
		t.Errorf("slow result = %q, want %q", resultText(res), "slow:s")
	}
}

// TestSessionStreamsAndDelete checks what the stateful transport needs of a
// proxy: the session holds (the client sees a sealed id, the upstream its
// own), the standalone GET stream carries server notifications, and
// DELETE reaches the upstream when the client closes.
func TestSessionStreamsAndDelete(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{})
	changed := make(chan struct{}, 1)
	session := connect(t, gateway, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
	})
	if session.ID() == "" {
		t.Fatal("no Mcp-Session-Id came back through the gateway")
	}
	// The notification may only be sent once the client's GET stream is
	// open; adding tools until one arrives tolerates that race.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		mcp.AddTool(up.Server, &mcp.Tool{Name: "added_" + string(rune('a'+i%26))}, func(context.Context, *mcp.CallToolRequest, upstreamtest.TextInput) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{}, nil, nil
		})
		select {
		case <-changed:
		case <-time.After(200 * time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("notifications/tools/list_changed never arrived on the GET stream through the gateway")
		}
		break
	}

	upstreamSession := ""
	for _, r := range up.Received() {
		if r.Method == "GET" && r.Header.Get("Mcp-Session-Id") != "" {
			upstreamSession = r.Header.Get("Mcp-Session-Id")
		}
	}
	if upstreamSession == "" || upstreamSession == session.ID() {
		t.Errorf("upstream saw the GET stream with session %q, client has %q; want the upstream's own id, sealed for the client",
			upstreamSession, session.ID())
	}
	if err := session.Close(); err != nil {
		t.Fatalf("closing the session: %v", err)
	}
	deleted := false
	for _, r := range up.Received() {
		if r.Method == "DELETE" && r.Header.Get("Mcp-Session-Id") == upstreamSession {
			deleted = true
		}
	}
	if !deleted {
		t.Error("DELETE for the session did not reach the upstream")
	}
}

// jsonRPCError is the part of an error response the tests look at.
type jsonRPCError struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// TestInitializeProposingAFutureRevision: a client may propose a revision
// newer than any the gateway knows, without the headers of the revisions
// that require them; the server negotiates it down, as it would without
// the gateway.
func TestInitializeProposingAFutureRevision(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{})
	status, body := post(t, gateway, nil,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2099-01-01","capabilities":{},"clientInfo":{"name":"future","version":"1"}}}`)
	var reply struct {
		Result struct {
			ProtocolVersion string `json:"protocolVersion"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &reply); status != http.StatusOK || err != nil || reply.Result.ProtocolVersion == "" || reply.Result.ProtocolVersion == "2099-01-01" {
		t.Errorf("initialize proposing 2099-01-01: %d %s; want the server's answer with a revision it speaks", status, body)
	}
}

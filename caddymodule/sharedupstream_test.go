package caddymodule_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// Two handlers that front one MCP server (the same `upstream <name>`)
// under two server names, each with its own policy and guards, do not
// share sessions: a session opened on one and used on the other would
// have its calls decided by the second, and their answers (on the
// first's stream) guarded by the first, which neither alone allows.
// These tests were found by a review: each mixed use got through before
// sessions were sealed for their server as well as their upstream.

// leakedToken is what the "leak" tool answers: a GitHub token, built so
// that no whole credential stands in the source.
var leakedToken = "ghp" + "_" + strings.Repeat("aB3dE5gH7j", 3) + "K9mN0p"

// leakUpstream serves echo (read-only) and leak (destructive: no
// annotations), which answers with a credential, the way serve serves;
// with dropStream, leak closes its call's event stream before answering
// (the client resumes it).
func leakUpstream(t *testing.T, serve func(*mcp.Server) http.Handler, dropStream bool) *upstreamtest.Upstream {
	t.Helper()
	u := upstreamtest.Unstarted("leak-upstream", nil, []*mcp.Tool{{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}})
	mcp.AddTool(u.Server, &mcp.Tool{Name: "leak"}, func(ctx context.Context, req *mcp.CallToolRequest, in upstreamtest.TextInput) (*mcp.CallToolResult, any, error) {
		if dropStream {
			req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 10 * time.Millisecond})
			time.Sleep(100 * time.Millisecond)
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "the key is " + leakedToken}}}, nil, nil
	})
	return u.Start(t, serve(u.Server))
}

// startSharedUpstream starts Caddy with two sites in front of up, each
// with an mcp_policy of the given body (which names its server) and
// `upstream shared`, and returns their addresses (host:port).
func startSharedUpstream(t *testing.T, up *upstreamtest.Upstream, policyA, policyB string) (hostA, hostB string) {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	portA, portB := freePort(t), freePort(t)
	upstream := strings.TrimPrefix(up.URL, "http://")
	site := func(port int, policy string) string {
		return fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\tmcp_policy {\n\t\tupstream shared\n%s\n\t}\n\treverse_proxy %s\n}\n", port, policy, upstream)
	}
	startCaddy(t, globalOptions(t)+site(portA, policyA)+site(portB, policyB))
	waitForListener(t, portA)
	waitForListener(t, portB)
	return fmt.Sprintf("127.0.0.1:%d", portA), fmt.Sprintf("127.0.0.1:%d", portB)
}

// sendsTo sends every request of one HTTP method to another host.
type sendsTo struct{ method, host string }

func (s sendsTo) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == s.method {
		r = r.Clone(r.Context())
		r.URL.Host, r.Host = s.host, s.host
	}
	return http.DefaultTransport.RoundTrip(r)
}

// callOrErr calls tool with text and returns its result's text, or the
// error.
func callOrErr(session *mcp.ClientSession, tool, text string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": text}})
	if err != nil {
		return "error: " + err.Error()
	}
	return resultText(res)
}

// connectOrErr is connectOver, returning the error rather than failing.
func connectOrErr(t *testing.T, transport mcp.Transport, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "mixing-client", Version: "1"}, opts)
	session, err := client.Connect(t.Context(), transport, &mcp.ClientSessionOptions{ProtocolVersion: legacyVersion})
	if err == nil {
		t.Cleanup(func() { session.Close() })
	}
	return session, err
}

// A blocks the destructive tool leak and does not screen credentials; B
// allows leak under block_secrets.
const (
	readOnlyPolicy = "\t\tserver readonly\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t}"
	screenedPolicy = "\t\tserver screened\n\t\tblock_secrets\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t\tdestructive allow\n\t\t}"
)

// TestSharedUpstreamHTTPSSEStreamElsewhere: an HTTP+SSE client that
// opens its stream on A and posts its messages on B is refused (its
// session is unknown on B); alone, neither lets leak's credential reach
// the client.
func TestSharedUpstreamHTTPSSEStreamElsewhere(t *testing.T) {
	up := leakUpstream(t, legacyHandler, false)
	hostA, hostB := startSharedUpstream(t, up, readOnlyPolicy, screenedPolicy)
	for _, host := range []string{hostA, hostB} {
		if got := callOrErr(connectOver(t, &mcp.SSEClientTransport{Endpoint: "http://" + host + "/sse"}, nil, legacyVersion), "leak", ""); strings.Contains(got, leakedToken) {
			t.Fatalf("%s alone: %q; want leak blocked or its credential withheld", host, got)
		}
	}
	mixed, err := connectOrErr(t, &mcp.SSEClientTransport{Endpoint: "http://" + hostA + "/sse", HTTPClient: &http.Client{Transport: sendsTo{http.MethodPost, hostB}}}, nil)
	if err == nil {
		t.Errorf("stream on A, messages posted on B: connected, and leak answered %q; want the session unknown on B", callOrErr(mixed, "leak", ""))
	} else if !strings.Contains(err.Error(), "404") {
		t.Errorf("stream on A, messages posted on B: %v; want 404 (unknown session)", err)
	}
}

// TestSharedUpstreamStreamResumedElsewhere: a Streamable HTTP call
// posted on B whose event stream drops before its result, resumed (GET,
// Last-Event-ID) on A, does not get the credential B withholds.
func TestSharedUpstreamStreamResumedElsewhere(t *testing.T) {
	up := leakUpstream(t, streamableHandler(&mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)}), true)
	hostA, hostB := startSharedUpstream(t, up, readOnlyPolicy, screenedPolicy)
	if got := callOrErr(connectOver(t, &mcp.StreamableClientTransport{Endpoint: "http://" + hostB + "/mcp"}, nil, legacyVersion), "leak", ""); strings.Contains(got, leakedToken) || !strings.Contains(got, "withheld") {
		t.Fatalf("B alone: %q; want the credential withheld", got)
	}
	mixed := connectOver(t, &mcp.StreamableClientTransport{Endpoint: "http://" + hostB + "/mcp", HTTPClient: &http.Client{Transport: sendsTo{http.MethodGet, hostA}}}, nil, legacyVersion)
	if got := callOrErr(mixed, "leak", ""); strings.Contains(got, leakedToken) {
		t.Errorf("call posted on B, its stream resumed on A: the client got %q, the credential B withholds", got)
	}
}

// TestSharedUpstreamServerRequestDecidedElsewhere: B allows the tool ask
// but its policy blocks the server's sampling requests; A blocks ask
// (its table allows writes alone) and lets servers sample. An HTTP+SSE
// client with its stream on A and its messages posted on B is refused,
// and never sees ask's sampling request.
func TestSharedUpstreamServerRequestDecidedElsewhere(t *testing.T) {
	up := newTransportUpstream(t, legacyHandler)
	rules := blockRule(t, `"servers may not sample here" if {
	input.direction == "server_to_client"
	input.method == "sampling/createMessage"
}`)
	hostA, hostB := startSharedUpstream(t, up,
		"\t\tserver lenient\n\t\tpermissions {\n\t\t\twrite allow\n\t\t}",
		"\t\tpolicy ../policies "+rules+"\n\t\tserver strict\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t}")
	var alone clientHandlers
	for _, host := range []string{hostA, hostB} {
		if got := callOrErr(connectOver(t, &mcp.SSEClientTransport{Endpoint: "http://" + host + "/sse"}, alone.options(), legacyVersion), "ask", "the secret, please"); got == "sampled:42" {
			t.Fatalf("%s alone: ask answered %q; want ask blocked or its sampling refused", host, got)
		}
	}
	var mixed clientHandlers
	if session, err := connectOrErr(t, &mcp.SSEClientTransport{Endpoint: "http://" + hostA + "/sse", HTTPClient: &http.Client{Transport: sendsTo{http.MethodPost, hostB}}}, mixed.options()); err == nil {
		callOrErr(session, "ask", "the secret, please")
	}
	for _, handlers := range []*clientHandlers{&alone, &mixed} {
		if sampled, _ := handlers.seen(); len(sampled) != 0 {
			t.Errorf("the client sampled %q; neither handler lets it", sampled)
		}
	}
}

package caddymodule_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	_ "github.com/mcpgate/mcpgate/caddymodule"
	"github.com/mcpgate/mcpgate/internal/caddytest"
)

// The Caddy harness shared with cmd/mcpgate's tests.
var (
	startCaddy      = caddytest.Start
	freePort        = caddytest.FreePort
	waitForListener = caddytest.WaitForListener
	globalOptions   = caddytest.GlobalOptions
)

// gatewayOptions shapes the gateway site a test runs.
type gatewayOptions struct {
	// policy overrides the mcp_policy block's body; default: the test
	// policy.
	policy string
	// global adds lines to the global options block.
	global []string
	// sites adds site blocks to the Caddyfile.
	sites string
	// before adds directives to the gateway's site (e.g. basic_auth).
	before string
}

// startGateway runs the gateway in front of upstream and returns its URL.
func startGateway(t testing.TB, upstream string, opts gatewayOptions) string {
	t.Helper()
	policyBlock := opts.policy
	if policyBlock == "" {
		policyBlock = "policy testdata/policy\n\t\tserver test"
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // tool pins go to Caddy's data directory
	port := freePort(t)
	startCaddy(t, globalOptions(t, opts.global...)+opts.sites+fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	%s
	mcp_policy {
		%s
	}
	reverse_proxy %s
}
`, port, opts.before, policyBlock, strings.TrimPrefix(upstream, "http://")))
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	waitForListener(t, port)
	return url
}

// upstream is a real MCP server (the go-sdk's Streamable HTTP handler)
// that records every request it receives, so tests can prove what the
// gateway did not forward.
type upstream struct {
	URL    string
	server *mcp.Server

	mu       sync.Mutex
	requests []recordedRequest
	calls    map[string]int

	// slowRelease is closed by a test to let the slow tool finish.
	slowRelease chan struct{}
}

type recordedRequest struct {
	Method string
	URL    string
	Header http.Header
	Body   []byte
}

type upstreamMode struct {
	name         string
	stateless    bool
	jsonResponse bool
}

// The upstream modes tests run in.
var (
	statefulSSE   = upstreamMode{name: "stateful SSE"}
	statefulJSON  = upstreamMode{name: "stateful JSON", jsonResponse: true}
	statelessSSE  = upstreamMode{name: "stateless SSE", stateless: true}
	statelessJSON = upstreamMode{name: "stateless JSON", stateless: true, jsonResponse: true}
	// upstreamModes are all of them.
	upstreamModes = []upstreamMode{statefulSSE, statefulJSON, statelessSSE, statelessJSON}
)

type textInput struct {
	Text string `json:"text,omitempty"`
}

// defaultTools are the test upstream's tools, name to annotations.
var defaultTools = []*mcp.Tool{
	{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
	{Name: "slow", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
	{Name: "delete_issue"},
	{Name: "create_issue"},
}

// lastSession is the Mcp-Session-Id of the last request the upstream
// received that had one: the upstream's own id of the session.
func (u *upstream) lastSession() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := len(u.requests) - 1; i >= 0; i-- {
		if id := u.requests[i].Header.Get("Mcp-Session-Id"); id != "" {
			return id
		}
	}
	return ""
}

func newUpstream(t testing.TB, mode upstreamMode) *upstream {
	t.Helper()
	return newUpstreamWith(t, mode, defaultTools, 0)
}

// newUpstreamWith starts an upstream serving the given tools, listing
// pageSize tools per tools/list page (0: the SDK's default).
func newUpstreamWith(t testing.TB, mode upstreamMode, tools []*mcp.Tool, pageSize int) *upstream {
	t.Helper()
	u := &upstream{calls: make(map[string]int), slowRelease: make(chan struct{})}
	u.server = mcp.NewServer(&mcp.Implementation{Name: "test-upstream", Version: "1"}, &mcp.ServerOptions{PageSize: pageSize})
	for _, tool := range tools {
		u.addTool(tool)
	}

	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return u.server },
		&mcp.StreamableHTTPOptions{Stateless: mode.stateless, JSONResponse: mode.jsonResponse})
	srv := httptest.NewServer(u.recording(handler))
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// recording returns handler, recording every request it receives.
func (u *upstream) recording(handler http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		u.mu.Lock()
		u.requests = append(u.requests, recordedRequest{Method: r.Method, URL: r.URL.String(), Header: r.Header.Clone(), Body: body})
		u.mu.Unlock()
		handler.ServeHTTP(w, r)
	})
}

// addTool adds (or replaces) a tool that answers "<name>:<text>" and
// counts its calls.
func (u *upstream) addTool(tool *mcp.Tool) {
	name := tool.Name
	tool = new(*tool) // AddTool fills in the schema; keep the caller's copy intact
	mcp.AddTool(u.server, tool, func(ctx context.Context, req *mcp.CallToolRequest, in textInput) (*mcp.CallToolResult, any, error) {
		u.mu.Lock()
		u.calls[name]++
		u.mu.Unlock()
		if name == "slow" {
			if err := u.slow(ctx, req); err != nil {
				return nil, nil, err
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + ":" + in.Text}}}, nil, nil
	})
}

// slow sends one progress notification, then waits until the test
// releases it: a test that sees the notification before releasing proves
// the gateway streams without buffering.
func (u *upstream) slow(ctx context.Context, req *mcp.CallToolRequest) error {
	if token := req.Params.GetProgressToken(); token != nil {
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 1, Total: 2, Message: "half way"}); err != nil {
			return err
		}
	}
	select {
	case <-u.slowRelease:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *upstream) callCount(tool string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[tool]
}

// received returns copies of the requests the upstream saw.
func (u *upstream) received() []recordedRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recordedRequest(nil), u.requests...)
}

// receivedFromClients returns the requests the upstream saw, leaving out
// the gateway's own tools/list fetches.
func (u *upstream) receivedFromClients() []recordedRequest {
	var out []recordedRequest
	for _, r := range u.received() {
		if !bytes.Contains(r.Body, []byte(`"mcpgate-tools-list"`)) {
			out = append(out, r)
		}
	}
	return out
}

// sawBodyContaining reports whether any request body the upstream received
// contains s.
func (u *upstream) sawBodyContaining(s string) bool {
	for _, r := range u.received() {
		if bytes.Contains(r.Body, []byte(s)) {
			return true
		}
	}
	return false
}

// connect opens a go-sdk client session to the gateway.
func connect(t testing.TB, url string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, opts)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connecting to the gateway at %s: %v", url, err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

// resultText joins the text contents of a tool result.
func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if text, ok := c.(*mcp.TextContent); ok {
			b.WriteString(text.Text)
		}
	}
	return b.String()
}

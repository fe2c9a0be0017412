// Package upstreamtest is the MCP server mcpgate's tests put behind the
// gateway: a real go-sdk server (or a raw one a test writes) that records
// every HTTP request it receives and counts the calls each tool runs, so
// that tests can prove what the gateway forwarded and what it did not.
package upstreamtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Mode is how an upstream serves Streamable HTTP.
type Mode struct {
	// Name names the mode in subtests.
	Name string
	// Stateless serves without sessions.
	Stateless bool
	// JSONResponse answers in JSON rather than in event streams.
	JSONResponse bool
}

// The modes tests run in.
var (
	StatefulSSE   = Mode{Name: "stateful SSE"}
	StatefulJSON  = Mode{Name: "stateful JSON", JSONResponse: true}
	StatelessSSE  = Mode{Name: "stateless SSE", Stateless: true}
	StatelessJSON = Mode{Name: "stateless JSON", Stateless: true, JSONResponse: true}
	// Modes are all of them.
	Modes = []Mode{StatefulSSE, StatefulJSON, StatelessSSE, StatelessJSON}
)

// Handler serves server over Streamable HTTP in mode m.
func (m Mode) Handler(server *mcp.Server) http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: m.Stateless, JSONResponse: m.JSONResponse})
}

// ToolsListID begins the JSON-RPC id of the gateway's own tools/list
// requests, which ReceivedFromClients leaves out.
const ToolsListID = "mcpgate-tools-list-"

// Request is one HTTP request an upstream received.
type Request struct {
	Method string
	URL    string
	Header http.Header
	Body   []byte
}

// TextInput is what the tools of AddTool take.
type TextInput struct {
	Text string `json:"text,omitempty"`
}

// Upstream is a test's MCP server.
type Upstream struct {
	// URL is where it serves, once started.
	URL string
	// Server is its go-sdk server (nil for a raw one).
	Server *mcp.Server

	slowRelease chan struct{}
	releaseOnce sync.Once

	mu       sync.Mutex
	requests []Request
	calls    map[string]int
}

// New starts a go-sdk MCP server serving tools in mode, listing pageSize
// tools per tools/list page (0: the SDK's default).
func New(tb testing.TB, mode Mode, tools []*mcp.Tool, pageSize int) *Upstream {
	tb.Helper()
	u := Unstarted("test-upstream", &mcp.ServerOptions{PageSize: pageSize}, tools)
	return u.Start(tb, mode.Handler(u.Server))
}

// Unstarted makes a go-sdk MCP server named name serving tools (see
// AddTool), for a test to add to and serve in a way of its own with Start.
func Unstarted(name string, opts *mcp.ServerOptions, tools []*mcp.Tool) *Upstream {
	u := &Upstream{calls: make(map[string]int), slowRelease: make(chan struct{})}
	u.Server = mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, opts)
	for _, tool := range tools {
		u.AddTool(tool)
	}
	return u
}

// Raw starts an upstream that serves handler, a raw MCP server of the
// test's own, recording what it receives.
func Raw(tb testing.TB, handler http.Handler) *Upstream {
	tb.Helper()
	return (&Upstream{calls: make(map[string]int), slowRelease: make(chan struct{})}).Start(tb, handler)
}

// Start serves handler on a loopback port until the test ends, recording
// every request, and returns u with its URL set.
func (u *Upstream) Start(tb testing.TB, handler http.Handler) *Upstream {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		u.mu.Lock()
		u.requests = append(u.requests, Request{Method: r.Method, URL: r.URL.String(), Header: r.Header.Clone(), Body: body})
		u.mu.Unlock()
		handler.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// AddTool adds (or redefines) a tool that answers "<name>:<text>" and
// counts its calls. A tool named "slow" first sends one progress
// notification (when the call asks for progress), then waits until
// ReleaseSlow: a test that sees the notification before releasing proves
// the gateway streams without buffering.
func (u *Upstream) AddTool(tool *mcp.Tool) {
	name := tool.Name
	tool = new(*tool) // AddTool fills in the schema; keep the caller's copy intact
	mcp.AddTool(u.Server, tool, func(ctx context.Context, req *mcp.CallToolRequest, in TextInput) (*mcp.CallToolResult, any, error) {
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

// slow is the slow tool's wait.
func (u *Upstream) slow(ctx context.Context, req *mcp.CallToolRequest) error {
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

// ReleaseSlow lets every call of the slow tool, running or to come,
// finish. Releasing twice does nothing more.
func (u *Upstream) ReleaseSlow() {
	u.releaseOnce.Do(func() { close(u.slowRelease) })
}

// CallCount is how many times the tool ran.
func (u *Upstream) CallCount(tool string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls[tool]
}

// Received returns copies of the requests the upstream saw so far.
func (u *Upstream) Received() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.requests...)
}

// ReceivedFromClients returns the requests the upstream saw, leaving out
// the gateway's own tools/list fetches.
func (u *Upstream) ReceivedFromClients() []Request {
	var out []Request
	for _, r := range u.Received() {
		if !bytes.Contains(r.Body, []byte(`"`+ToolsListID)) {
			out = append(out, r)
		}
	}
	return out
}

// SawBodyContaining reports whether any request body the upstream
// received contains s.
func (u *Upstream) SawBodyContaining(s string) bool {
	for _, r := range u.Received() {
		if bytes.Contains(r.Body, []byte(s)) {
			return true
		}
	}
	return false
}

// LastSession is the Mcp-Session-Id of the last request the upstream
// received that had one: the upstream's own id of the session.
func (u *Upstream) LastSession() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := len(u.requests) - 1; i >= 0; i-- {
		if id := u.requests[i].Header.Get("Mcp-Session-Id"); id != "" {
			return id
		}
	}
	return ""
}

// CapabilityIgnoring starts a raw MCP server that ignores what its client
// declared: it lists one read-only tool, t, and answers every tools/call
// with an event stream that first asks the client for an elicitation,
// then gives the result "done". It serves no GET stream.
func CapabilityIgnoring(tb testing.TB) *Upstream {
	tb.Helper()
	return Raw(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _ := ReadMessage(r)
		switch {
		case r.Method == http.MethodGet:
			w.WriteHeader(http.StatusMethodNotAllowed)
		case m.Method == "initialize":
			w.Header().Set("Mcp-Session-Id", "raw-1")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"raw","version":"1"}}}`, m.ID)
		case m.Method == "tools/list":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"t","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]}}`, m.ID)
		case m.Method == "tools/call":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "data: %s\n\n", `{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"message":"Proceed?","requestedSchema":{"type":"object","properties":{}}}}`)
			fmt.Fprintf(w, "data: %s\n\n", fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"done"}]}}`, m.ID))
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
}

// Message is what a raw upstream's handler reads of a posted JSON-RPC
// message to choose its answer.
type Message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
}

// ReadMessage reads r's body whole and returns it with its message's id and
// method (zero when the body is not one JSON-RPC message, as a GET's).
func ReadMessage(r *http.Request) (Message, []byte) {
	body, _ := io.ReadAll(r.Body)
	var m Message
	_ = json.Unmarshal(body, &m)
	return m, body
}

package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
)

// The harness runs the pipeline without Caddy: a Gateway built from a
// Config, served by httptest, whose next handler is a real reverse proxy
// to a real MCP server (the go-sdk's Streamable HTTP handler) that records
// what reaches it.

// The names the test gateway is configured with.
const (
	// testServer is Config.Server, the policy's input.server.
	testServer = "test"
	// testUpstream is Config.Upstream: what sessions are sealed for,
	// with testServer.
	testUpstream = "test-upstream"
)

// sessionScope is what the test gateways seal their session tokens for.
var sessionScope = gateway.SessionScope(testUpstream, testServer)

// permissionsTable is the organization's tool table the shipped library
// decides with: read-only tools run, write tools need approval,
// destructive ones are blocked, and so is peek by name.
func permissionsTable() map[string]any {
	return map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only":   "allow",
		"write":       "needs_approval",
		"destructive": "block",
		"tools":       map[string]any{"peek": "block"},
	}}}
}

// The refusals permissionsTable gives, as the client reads them.
const (
	refusedDestructive = `Blocked by policy: tool "delete_issue" is a destructive tool`
	refusedPeek        = `Blocked by policy: tool "peek" is set to block`
	refusedApproval    = "This call needs approval, but no approval is configured on this gateway"
	refusedUnlisted    = `Blocked by policy: the server does not offer a tool named "not_listed"`
)

// gatewayOptions shapes the gateway a test runs.
type gatewayOptions struct {
	// maxBody is Config.MaxBody; default 64 KiB.
	maxBody int64
	// userHeader, when set, identifies every caller by this request
	// header (Identity.AuthenticatedUser), as an earlier handler would.
	userHeader string
	// approvals holds calls that need approval (in memory), each for
	// holdFor before it is answered as pending.
	approvals bool
	holdFor   time.Duration
	// redis, with approvals, keeps them in the Redis at this address
	// rather than in memory.
	redis string
	// pins is the pin file, shared by gateways started with the same
	// one as replicas share a store; default: one of the gateway's own.
	pins string
}

// testGateway is a Gateway served over HTTP.
type testGateway struct {
	// URL is the MCP endpoint.
	URL string
	// gateway is the Gateway served.
	gateway *gateway.Gateway
	// sealer is the gateway's session sealer, for tests that forge
	// tokens.
	sealer *sessiontoken.Sealer
	// catalog is the gateway's tool catalog, for tests that accept
	// tools as an operator does.
	catalog *catalog.Catalog
	// approvals is the gateway's approval service, when it has one, for
	// tests that decide as reviewers do.
	approvals *approval.Service
}

// startGateway serves a Gateway in front of the MCP server at upstreamURL.
func startGateway(t *testing.T, upstreamURL string, opts gatewayOptions) *testGateway {
	t.Helper()
	ctx := context.Background()
	engine, err := policy.New(ctx, policy.Options{Modules: policies.Library(), Data: permissionsTable()})
	if err != nil {
		t.Fatalf("compiling the shipped library with the permissions table: %v", err)
	}
	if opts.pins == "" {
		opts.pins = filepath.Join(t.TempDir(), "pins.json")
	}
	cfg := testConfig(t, engine, opts.pins)
	cfg.MaxBody = opts.maxBody
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 64 << 10
	}
	if opts.userHeader != "" {
		cfg.Identity = &gateway.Identity{AuthenticatedUser: func(r *http.Request) string { return r.Header.Get(opts.userHeader) }}
	}
	if opts.approvals {
		cfg.Approvals = &gateway.Approvals{Service: newApprovalService(t, opts.redis), Hold: opts.holdFor, Keepalive: time.Second}
	}
	return serveGateway(t, cfg, upstreamURL)
}

// serveGateway builds a Gateway from cfg and serves it over HTTP in front
// of upstreamURL until the test ends.
func serveGateway(t *testing.T, cfg gateway.Config, upstreamURL string) *testGateway {
	t.Helper()
	g := newGateway(t, cfg)
	next := proxyTo(t, upstreamURL)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Serve(w, r, next); err != nil {
			// What Caddy does with a handler's error, when nothing was
			// written yet.
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	gw := &testGateway{URL: srv.URL + "/mcp", gateway: g, sealer: cfg.Sealer, catalog: cfg.Catalog}
	if cfg.Approvals != nil {
		gw.approvals = cfg.Approvals.Service
	}
	return gw
}

// libraryConfig is testConfig with the shipped library deciding by the
// test table (permissionsTable), and bodies up to 64 KiB.
func libraryConfig(tb testing.TB) gateway.Config {
	tb.Helper()
	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: permissionsTable()})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := testConfig(tb, engine, filepath.Join(tb.TempDir(), "pins.json"))
	cfg.MaxBody = 64 << 10
	return cfg
}

// callerConfirmsConfig is libraryConfig with a table under which read-only
// tools run and write tools need their caller's own confirmation.
func callerConfirmsConfig(tb testing.TB) gateway.Config {
	tb.Helper()
	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow",
		"write":     map[string]any{"action": "needs_approval", "approvers": []any{"caller"}},
	}}}})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := testConfig(tb, engine, filepath.Join(tb.TempDir(), "pins.json"))
	cfg.MaxBody = 64 << 10
	return cfg
}

// userHeaderIdentity names the caller by the X-Test-User header, in realm.
func userHeaderIdentity(realm string) *gateway.Identity {
	return &gateway.Identity{Realm: realm, AuthenticatedUser: func(r *http.Request) string { return r.Header.Get("X-Test-User") }}
}

// testConfig is the configuration of a test gateway deciding with engine,
// its catalog's pins kept in pinsFile.
func testConfig(tb testing.TB, engine *policy.Engine, pinsFile string) gateway.Config {
	tb.Helper()
	tools, err := catalog.New(context.Background(), catalog.NewFilePinStore(pinsFile))
	if err != nil {
		tb.Fatalf("opening the tool catalog: %v", err)
	}
	metrics, err := gateway.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		tb.Fatalf("registering metrics: %v", err)
	}
	sealer, err := sessiontoken.New(sessiontoken.NewKey())
	if err != nil {
		tb.Fatalf("making the session sealer: %v", err)
	}
	return gateway.Config{
		Engine:   engine,
		Server:   testServer,
		Upstream: testUpstream,
		Sealer:   sealer,
		Catalog:  tools,
		Sessions: gateway.NewSessions(),
		Metrics:  metrics,
	}
}

// newGateway builds a Gateway from cfg, closed when the test ends.
func newGateway(tb testing.TB, cfg gateway.Config) *gateway.Gateway {
	tb.Helper()
	g, err := gateway.New(cfg)
	if err != nil {
		tb.Fatalf("building the gateway: %v", err)
	}
	tb.Cleanup(func() {
		if err := g.Close(); err != nil {
			tb.Errorf("closing the gateway: %v", err)
		}
	})
	return g
}

// newApprovalService starts an approval service over an in-memory store,
// or the Redis at redisAddr when set, which sends no webhooks.
func newApprovalService(t *testing.T, redisAddr string) *approval.Service {
	t.Helper()
	secret := func() approval.Secret {
		s, err := approval.ParseSecret(base64.StdEncoding.EncodeToString(sessiontoken.NewKey()))
		if err != nil {
			t.Fatalf("making an approval secret: %v", err)
		}
		return s
	}
	service, err := approval.NewService(func(onChange approval.ChangeFunc) (approval.Store, error) {
		if redisAddr != "" {
			return approval.NewRedisStore(redisAddr, "", onChange)
		}
		return approval.NewMemoryStore(onChange), nil
	}, &approval.Settings{
		WebhookSecrets:  []approval.Secret{secret()},
		DecisionSecrets: []approval.Secret{secret()},
		CallbackURL:     "https://gw.example/approvals",
		Timeout:         time.Minute,
	})
	if err != nil {
		t.Fatalf("starting the approval service: %v", err)
	}
	t.Cleanup(func() {
		if err := service.Close(); err != nil {
			t.Errorf("closing the approval service: %v", err)
		}
	})
	return service
}

// reverseProxy is the gateway's next handler: a reverse proxy, as Caddy's
// reverse_proxy would be.
type reverseProxy struct {
	proxy *httputil.ReverseProxy
}

// ServeHTTP implements gateway.Next.
func (p reverseProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	p.proxy.ServeHTTP(w, r)
	return nil
}

// proxyTo returns a next handler proxying to target.
func proxyTo(t *testing.T, target string) gateway.Next {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("parsing the upstream's URL %q: %v", target, err)
	}
	return reverseProxy{proxy: &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) },
		// Streams end with cancelled requests when clients leave.
		ErrorLog: log.New(io.Discard, "", 0),
	}}
}

// upstreamTools are the tools the test upstream serves: echo and peek are
// read-only, create_issue writes, delete_issue (no annotations) is
// destructive by MCP's defaults.
var upstreamTools = []*mcp.Tool{
	{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
	{Name: "peek", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
	{Name: "create_issue", Annotations: &mcp.ToolAnnotations{DestructiveHint: new(false)}},
	{Name: "delete_issue"},
}

// newUpstream starts a go-sdk MCP server serving upstreamTools in mode;
// each tool answers "<name>:<text>".
func newUpstream(t *testing.T, mode upstreamtest.Mode) *upstreamtest.Upstream {
	t.Helper()
	return upstreamtest.New(t, mode, upstreamTools, 0)
}

// reply is an HTTP response, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// rpc decodes the reply as one JSON-RPC response.
func (r reply) rpc(t *testing.T) rpcResponse {
	t.Helper()
	var resp rpcResponse
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatalf("reply is not one JSON-RPC message: %v; HTTP %d, body %s", err, r.status, r.body)
	}
	return resp
}

// rpcResponse is the part of a JSON-RPC response the tests read.
type rpcResponse struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// send sends req and reads the whole reply.
func send(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the reply to %s %s: %v", req.Method, req.URL, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: body}
}

// post sends one raw POST of body.
func post(t *testing.T, url string, header http.Header, body string) reply {
	t.Helper()
	return send(t, clienttest.NewRequest(t, http.MethodPost, url, header, strings.NewReader(body)))
}

// initialize opens a session with a raw initialize under 2025-06-18 and
// returns the session id the client is given.
func initialize(t *testing.T, url string, header http.Header) string {
	t.Helper()
	r := post(t, url, header,
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	session := r.header.Get("Mcp-Session-Id")
	if r.status != http.StatusOK || session == "" {
		t.Fatalf("initialize: HTTP %d, session %q, body %s; want 200 with a session", r.status, session, r.body)
	}
	return session
}

// connect opens a go-sdk client session through the gateway, speaking
// version ("" for the SDK's latest).
func connect(t *testing.T, url string, opts *mcp.ClientOptions, version string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, opts)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connecting through the gateway at %s: %v", url, err)
	}
	t.Cleanup(func() { _ = session.Close() })
	return session
}

// callTool calls a tool with text and returns the result's text and
// isError, failing t on a protocol error.
func callTool(t *testing.T, session *mcp.ClientSession, tool, text string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": text}})
	if err != nil {
		t.Fatalf("calling %s: want a result, got error %v", tool, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if text, ok := c.(*mcp.TextContent); ok {
			b.WriteString(text.Text)
		}
	}
	return b.String(), res.IsError
}

// callBody is a raw tools/call of tool with text, as id.
func callBody(id, tool, text string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"text":"` + text + `"}}}`
}

// codeRefused is the JSON-RPC code of the gateway's refusals of messages
// other than tools/call.
const codeRefused = gateway.CodeRefusedByPolicy

// Codes of the refusals before policy.
const (
	codeParse   = mcpmsg.CodeParseError
	codeInvalid = mcpmsg.CodeInvalidRequest
)

package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// requestPolicy blocks calls to the admin endpoint, by path or by host.
const requestPolicy = "package mcp\n\nimport rego.v1\n\ndefault decision := {\"action\": \"allow\"}\n\n" +
	"decision := {\"action\": \"block\", \"reason\": \"admin path\"} if startswith(input.request.path, \"/admin\")\n\n" +
	"decision := {\"action\": \"block\", \"reason\": \"admin host\"} if split(input.request.host, \":\")[0] == \"admin.example\"\n"

// rawCall posts a tools/call with the request target and Host exactly as
// given (a client would resolve or reject some of them first).
func rawCall(t *testing.T, gatewayURL, target, host string) reply {
	t.Helper()
	address := strings.TrimPrefix(gatewayURL, "http://")
	address = address[:strings.IndexByte(address, '/')]
	conn, err := net.DialTimeout("tcp", address, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	const call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
		"MCP-Protocol-Version: 2025-06-18\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", target, host, len(call), call)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: body}
}

// TestRequestAsServersReadIt: the policy reads the request's path and host
// as the upstream's server would. A path that servers resolve in
// different ways (dot segments, which Node.js, fetch-style frameworks and
// servlet containers resolve and Express does not; empty segments; a
// servlet's path parameters; a backslash; an encoded slash; a percent sign
// left after decoding; any character but those RFC 3986 lets a segment
// hold as data) is refused before anything reads it; so is a Host that
// is not a DNS name, an IP address written canonically or a port as
// every reader reads them (a final dot, brackets around a name, a second
// colon, "127.1"), which a policy and an upstream's virtual hosts may read
// apart; one in upper case is read in lower case, as the upstream then
// gets it (TestPolicyReadsHostAsTheUpstream).
func TestRequestAsServersReadIt(t *testing.T) {
	up := messageUpstream(t, func(_ string, id json.RawMessage, _ []byte) string {
		return `{"jsonrpc":"2.0","id":` + string(id) + `,"result":{"content":[{"type":"text","text":"ran"}]}}`
	})
	gw := policyGateway(t, requestPolicy, up.URL)
	const ran, blocked, refused = "ran", "blocked", "refused"
	for _, tt := range []struct {
		target, host, want string
	}{
		{"/mcp", "public.example", ran},
		{"/mcp/", "public.example", ran},
		{"/a-b_c~d.e/!$&'()*+,=:@/mcp", "public.example", ran},
		{"/caf%C3%A9/mcp", "public.example", refused},
		{"/a;v=1/mcp", "public.example", refused},
		{"/;x/admin/mcp", "public.example", refused},
		{"/;/admin/mcp", "public.example", refused},
		{"/admin;x/mcp", "public.example", refused},
		{"/admin%3bx/mcp", "public.example", refused},
		{"/admin%00/mcp", "public.example", refused},
		{"/admin%09/mcp", "public.example", refused},
		{"/admin%20/mcp", "public.example", refused},
		{"/%C0%AE%C0%AE/admin/mcp", "public.example", refused},
		{"/%EF%BC%8E%EF%BC%8E/admin/mcp", "public.example", refused},
		{"/admin%23x/mcp", "public.example", refused},
		{"/admin%3Fx/mcp", "public.example", refused},
		{"/.well-known/mcp", "public.example", ran},
		{"/admin/mcp", "public.example", blocked},
		{"/public/../admin/mcp", "public.example", refused},
		{"/public/%2e%2e/admin/mcp", "public.example", refused},
		{"/public/.%2E/admin/mcp", "public.example", refused},
		{"/public/..;x/admin/mcp", "public.example", refused},
		{"/./admin/mcp", "public.example", refused},
		{"/public/..", "public.example", refused},
		{"//admin/mcp", "public.example", refused},
		{"/public//mcp", "public.example", refused},
		{`/public\..\admin/mcp`, "public.example", refused},
		{"/public/%5c../admin/mcp", "public.example", refused},
		{"/public%2f..%2fadmin/mcp", "public.example", refused},
		{"/public/%252e%252e/admin/mcp", "public.example", refused},
		{"/mcp", "admin.example", blocked},
		{"/mcp", "admin.example:8080", blocked},
		{"/mcp", "ADMIN.Example", blocked},
		{"/mcp", "Admin.Example:8080", blocked},
		{"/mcp", "admin.example.", refused},
		{"/mcp", "Admin.Example.:8080", refused},
		{"/mcp", "[admin.example]:80", refused},
		{"/mcp", "admin.example:80:80", refused},
		{"/mcp", "admin.example:[x]", refused},
		{"/mcp", "admin.example:080", refused},
		{"/mcp", "admin.example:", refused},
		{"/mcp", "admin.example:99999", refused},
		{"/mcp", "127.0.0.1:8080", ran},
		{"/mcp", "127.1", refused},
		{"/mcp", "0177.0.0.1", refused},
		{"/mcp", "127.0.0.0x1", refused},
		{"/mcp", "0x7f000001:8080", refused},
		{"/mcp", "0x7f.0.0.0x1", refused},
		{"/mcp", "127.0.0.0x", refused},
		{"/mcp", "my_host.internal:80", ran},
		{"/mcp", "0xcafe.example", ran},
		{"/mcp", "[::1]:8080", ran},
		{"/mcp", "[::FFFF:7f00:1]:8080", ran},
		{"/mcp", "[::1%25lo]:8080", refused},
	} {
		t.Run(tt.target+" "+tt.host, func(t *testing.T) {
			r := rawCall(t, gw.URL, tt.target, tt.host)
			got := "?"
			switch body := string(r.body); {
			case r.status == http.StatusOK && strings.Contains(body, `"ran"`):
				got = ran
			case r.status == http.StatusOK && strings.Contains(body, "Blocked by policy: admin"):
				got = blocked
			case r.status == http.StatusBadRequest && strings.Contains(body, "servers read in different ways"):
				got = refused
			}
			if got != tt.want {
				t.Errorf("HTTP %d %s; want %s", r.status, r.body, tt.want)
			}
		})
	}
}

// TestGoClientWithUpperCaseHost: the Go SDK's client, whose endpoint URL
// names its host in upper case (Go's HTTP client sends it as written),
// is served.
func TestGoClientWithUpperCaseHost(t *testing.T) {
	gw := startGateway(t, newUpstream(t, upstreamtest.StatelessJSON).URL, gatewayOptions{})
	endpoint := strings.Replace(gw.URL, "127.0.0.1", "LOCALHOST", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
	if err != nil {
		t.Fatalf("the Go SDK's client at %s: %v", endpoint, err)
	}
	_ = session.Close()
}

// TestHostHeaderBesideAuthority: a Host header an HTTP/2 request carries
// beside its :authority (Go's server keeps it in the header; the request's
// Host is the :authority) never reaches the policy, as it never reaches
// the upstream.
func TestHostHeaderBesideAuthority(t *testing.T) {
	const headersPolicy = "package mcp\n\nimport rego.v1\n\ndefault decision := {\"action\": \"allow\"}\n\n" +
		"decision := {\"action\": \"block\", \"reason\": json.marshal(input.request.headers)} if input.method == \"tools/call\"\n"
	engine, err := policy.New(context.Background(), policy.Options{Modules: map[string]string{"p.rego": headersPolicy}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.MaxBody = 64 << 10
	g := newGateway(t, cfg)
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(callBody("1", "echo", "x")))
	r.Host = "public.example"
	r.Header = http.Header{"Host": {"admin.example"}, "Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"},
		"Mcp-Protocol-Version": {"2025-06-18"}}
	w := httptest.NewRecorder()
	_ = g.Serve(w, r, proxyTo(t, newUpstream(t, upstreamtest.StatelessJSON).URL))
	if body := w.Body.String(); !strings.Contains(body, "Blocked by policy") || strings.Contains(body, "admin.example") {
		t.Errorf("the policy's headers: %s; want them without the Host header", body)
	}
}

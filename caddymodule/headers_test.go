package caddymodule_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// headersPolicy blocks every tools/call with the headers it was given as
// its reason, so that a test reads what the policy saw.
const headersPolicy = `package mcp

import rego.v1

default decision := {"action": "allow", "reason": "protocol"}

decision := {"action": "block", "reason": json.marshal(input.request.headers)} if input.method == "tools/call"
`

// TestPolicyReadsHeadersAsTheUpstream: a policy decides on the headers
// the upstream receives, never on one it does not: hop-by-hop headers
// (which reverse_proxy drops) and X-Forwarded-* from a client that is not
// a trusted proxy (which reverse_proxy replaces) are not shown to it, and
// a header given twice that it reads is refused (joined, the policy would
// read "a, b" where a Go upstream reads "a"). X-Forwarded-* from a
// trusted proxy are shown.
func TestPolicyReadsHeadersAsTheUpstream(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "headers.rego"), []byte(headersPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t, upstreamtest.StatelessJSON)
	const untrusted, trusted = "10.0.0.0/8", "127.0.0.1/32"
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`
	tests := []struct {
		name    string
		proxies string // the server's trusted_proxies
		header  http.Header
		want    []string // in the policy's reason
		notWant []string
	}{
		{"hop-by-hop headers", untrusted,
			http.Header{"Keep-Alive": {"timeout=5"}, "Te": {"gzip"}, "Proxy-Connection": {"keep-alive"}, "Alt-Svc": {"h3=\":443\""}, "X-Team": {"platform"}},
			[]string{`"x-team":"platform"`}, []string{`"keep-alive":`, `"te":`, `"proxy-connection":`, `"alt-svc":`}},
		{"TE naming trailers", untrusted,
			http.Header{"Te": {"gzip, trailers"}},
			[]string{`"te":"trailers"`}, []string{`gzip, trailers`}},
		{"X-Forwarded-* from a client", untrusted,
			http.Header{"X-Forwarded-For": {"10.9.9.9"}, "X-Forwarded-Host": {"internal.example"}, "X-Forwarded-Proto": {"https"}},
			nil, []string{"10.9.9.9", "internal.example", "x-forwarded"}},
		{"X-Forwarded-* from a trusted proxy", trusted,
			http.Header{"X-Forwarded-For": {"10.9.9.9"}},
			[]string{`"x-forwarded-for":"10.9.9.9"`}, nil},
		{"a header read, given twice", untrusted,
			http.Header{"X-Team": {"restricted", "platform"}},
			[]string{"gives its x-team header more than once"}, []string{`"x-team":`}},
	}
	gateways := map[string]string{}
	parent := t
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if gateways[tt.proxies] == "" {
				clear(gateways) // one Caddy runs in the process: starting another stops it
				gateways[tt.proxies] = startGateway(parent, up.URL, gatewayOptions{
					policy: "policy " + dir + "\n\t\tserver test",
					global: []string{"servers {\n\t\ttrusted_proxies static " + tt.proxies + "\n\t}"},
				})
			}
			header := http.Header{"Mcp-Protocol-Version": {"2025-06-18"}}
			for name, values := range tt.header {
				header[name] = values
			}
			before := up.CallCount("echo")
			status, body := post(t, gateways[tt.proxies], header, call)
			if status != http.StatusOK || !strings.Contains(string(body), `"isError":true`) {
				t.Fatalf("HTTP %d %s; want the call blocked", status, body)
			}
			for _, want := range tt.want {
				if !strings.Contains(string(body), strings.ReplaceAll(want, `"`, `\"`)) {
					t.Errorf("the policy's reason %s lacks %s", body, want)
				}
			}
			for _, notWant := range tt.notWant {
				if strings.Contains(strings.ToLower(string(body)), strings.ReplaceAll(notWant, `"`, `\"`)) {
					t.Errorf("the policy saw %s: %s", notWant, body)
				}
			}
			if got := up.CallCount("echo") - before; got != 0 {
				t.Errorf("the upstream ran echo %d times", got)
			}
		})
	}
}

// hostPolicy allows calls to one virtual host, public.example, alone.
const hostPolicy = `package mcp

import rego.v1

default decision := {"action": "block", "reason": "only the public host"}

decision := {"action": "allow"} if input.method != "tools/call"

decision := {"action": "allow"} if split(input.request.host, ":")[0] == "public.example"
`

// TestPolicyReadsHostAsTheUpstream: the policy reads the Host the
// upstream gets (here one that matches host names exactly, as Go's
// ServeMux does, through reverse_proxy's header_up Host {host} behind
// tracing, whose copy of the request Caddy's placeholders read): one in
// upper case is read, and goes on, in lower case; one that readers could
// read apart (a final dot, brackets around a name, a second port) is
// refused, so a policy allowing one virtual host never lets a call reach
// another.
func TestPolicyReadsHostAsTheUpstream(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "host.rego"), []byte(hostPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := func(who string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			m, _ := upstreamtest.ReadMessage(r)
			w.Header().Set("Content-Type", "application/json")
			switch m.Method {
			case "tools/list":
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]}}`, m.ID)
			default:
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"%s for %s"}]}}`, m.ID, who, r.Host)
			}
		}
	}
	mux := http.NewServeMux()
	mux.Handle("public.example/", serve("public"))
	mux.Handle("/", serve("internal"))
	up := upstreamtest.Raw(t, mux)
	upstream := strings.TrimPrefix(up.URL, "http://") + " {\n\t\theader_up Host {host}\n\t}"
	gateway := startGateway(t, upstream, gatewayOptions{policy: "policy " + dir + "\n\t\tserver test", before: "tracing"})
	const refused = "which servers read in different ways"
	for _, tt := range []struct{ host, want string }{
		{"public.example", "public for public.example"},
		{"public.example:80", "public for public.example"},
		{"PUBLIC.Example", "public for public.example"},
		{"public.example.", refused},
		{"Public.Example..:80", refused},
		{"[public.example]:80", refused},
		{"public.example:80:80", refused},
		{"internal.example", "only the public host"},
	} {
		t.Run(tt.host, func(t *testing.T) {
			req := clienttest.NewRequest(t, http.MethodPost, gateway, http.Header{"Mcp-Protocol-Version": {"2025-06-18"}},
				strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`))
			req.Host = tt.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), tt.want) {
				t.Errorf("Host %q: HTTP %d %s; want %q", tt.host, resp.StatusCode, body, tt.want)
			}
		})
	}
}

// TestLooseTrustedProxiesWarned: a request through a trusted proxy of a
// server without trusted_proxies_strict is warned of, once (Caddy then
// reads the client's address from the left of X-Forwarded-For, which a
// client behind an appending load balancer writes: found by an
// acceptance run, which passed an IP allowlist so); strict, or trusting
// none, it is not.
func TestLooseTrustedProxiesWarned(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	const loose = "a request came through a trusted proxy of a server without trusted_proxies_strict"
	tests := []struct {
		name, servers string
		warned        bool
	}{
		{"trusted proxies, not strict", "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", true},
		{"trusted proxies, strict", "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\ttrusted_proxies_strict\n\t}", false},
		{"no trusted proxies", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			logOption, logPath := warningsLog(t)
			port := freePort(t)
			if err := loadCaddyfile(t, globalOptions(t, logOption, tt.servers)+policySite(port, "", "permissions {\n\t\t\tread_only allow\n\t\t}\n\t\tserver test", up.URL)); err != nil {
				t.Fatalf("loading: %v; want it loaded", err)
			}
			for range 2 {
				status, body := post(t, fmt.Sprintf("http://127.0.0.1:%d/", port), http.Header{"X-Forwarded-For": {"160.79.104.9"}}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
				if status != http.StatusOK {
					t.Fatalf("ping: HTTP %d %s", status, body)
				}
			}
			warned := warningsIn(t, logPath, loose)
			switch {
			case tt.warned && (len(warned) != 1 || !strings.Contains(fmt.Sprint(warned[0]["listen"]), fmt.Sprint(port))):
				t.Errorf("warned %v; want one warning naming the server's listener", warned)
			case !tt.warned && len(warned) > 0:
				t.Errorf("warned %v; want no warning", warned)
			}
		})
	}
}

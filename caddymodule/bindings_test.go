package caddymodule_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// These tests pin the bindings the gateway keeps exact: which upstream a
// tool's facts come from, and which upstream and caller a session belongs
// to.

// loadCaddyfile loads a Caddyfile and returns Caddy's error, if any; a
// config that loads is stopped when the test ends.
func loadCaddyfile(t *testing.T, caddyfile string) error {
	t.Helper()
	return loadEditedCaddyfile(t, caddyfile, nil)
}

// loadEditedCaddyfile is loadCaddyfile, with the adapted JSON changed by
// edit (when set) first.
func loadEditedCaddyfile(t *testing.T, caddyfile string, edit func(string) string) error {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v", err)
	}
	if edit != nil {
		cfg = []byte(edit(string(cfg)))
	}
	if err := caddy.Load(cfg, true); err != nil {
		return err
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return nil
}

// policySite is a site on port whose mcp_policy has the given body,
// routing to upstream, under an optional path.
func policySite(port int, path, body, upstream string) string {
	route := fmt.Sprintf(`
	mcp_policy {
		%s
	}
	reverse_proxy %s`, body, strings.TrimPrefix(upstream, "http://"))
	if path != "" {
		route = fmt.Sprintf("\n\thandle_path %s/* {%s\n\t}", path, route)
	}
	return fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1%s\n}\n", port, route)
}

// TestUpstreamsKeptApart: two upstreams behind one host name (two ports,
// or two routes of one site) list a tool of the same name, read-only on
// one and destructive on the other. What one lists never decides a call
// to the other, whether the handlers name their servers or not (two
// routes of one site must: TestUpstreamNamesRefused).
func TestUpstreamsKeptApart(t *testing.T) {
	for _, named := range []bool{true, false} {
		t.Run(fmt.Sprintf("named=%v", named), func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			readOnly := upstreamtest.New(t, upstreamtest.StatefulJSON, []*mcp.Tool{{Name: "shared", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}}, 0)
			destructive := upstreamtest.New(t, upstreamtest.StatefulJSON, []*mcp.Tool{{Name: "shared"}}, 0)
			table := func(server string) string {
				line := ""
				if named || strings.HasPrefix(server, "r") {
					line = "server " + server + "\n\t\t"
				}
				return line + `permissions {
			read_only allow
			destructive block
		}`
			}
			portA, portB, portC := freePort(t), freePort(t), freePort(t)
			startCaddy(t, globalOptions(t)+
				policySite(portA, "", table("a"), readOnly.URL)+
				policySite(portB, "", table("b"), destructive.URL)+
				fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n", portC)+
				strings.TrimPrefix(strings.TrimSuffix(policySite(0, "/ro", table("ro"), readOnly.URL), "}\n"), "\n:0 {\n\tbind 127.0.0.1")+
				strings.TrimPrefix(strings.TrimSuffix(policySite(0, "/rw", table("rw"), destructive.URL), "}\n"), "\n:0 {\n\tbind 127.0.0.1")+"}\n")
			for _, port := range []int{portA, portB, portC} {
				waitForListener(t, port)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			call := func(url string) *mcp.CallToolResult {
				t.Helper()
				session := connect(t, url, nil)
				res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "shared", Arguments: map[string]any{"text": "x"}})
				if err != nil {
					t.Fatalf("calling shared at %s: %v", url, err)
				}
				return res
			}
			for _, pair := range []struct{ name, readOnly, destructive string }{
				{"two ports", fmt.Sprintf("http://127.0.0.1:%d/", portA), fmt.Sprintf("http://127.0.0.1:%d/", portB)},
				{"two routes", fmt.Sprintf("http://127.0.0.1:%d/ro/", portC), fmt.Sprintf("http://127.0.0.1:%d/rw/", portC)},
			} {
				t.Run(pair.name, func(t *testing.T) {
					// The read-only upstream's list is learned first.
					if res := call(pair.readOnly); res.IsError {
						t.Fatalf("the read-only upstream's tool was refused: %q", resultText(res))
					}
					before := destructive.CallCount("shared")
					if res := call(pair.destructive); !res.IsError || destructive.CallCount("shared") != before {
						t.Errorf("the destructive upstream's tool of the same name ran (%q): it was decided with the other upstream's annotations", resultText(res))
					}
				})
			}
		})
	}
}

// TestUpstreamNamesRefused: handlers that could not tell their upstreams
// apart make a configuration that does not load; naming the same upstream
// in both is a declaration that they front one server, and loads.
func TestUpstreamNamesRefused(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	idp := newIdentityProvider(t, "k1")
	jwtIssuedBy := func(issuer string) string {
		return fmt.Sprintf("\n\t\tidentity jwt {\n\t\t\tjwks_url %s\n\t\t\tissuer %s\n\t\t\taudience %s\n\t\t}", idp.url, issuer, testAudience)
	}
	jwtIdentity := jwtIssuedBy(testIssuer)
	tests := []struct {
		name          string
		first, second string
		want          string // "" when the configuration loads
	}{
		{"neither named", "policy testdata/policy", "policy testdata/policy", ""},
		{"a server named as another's default", "policy testdata/policy", "policy testdata/policy\n\t\tserver :{first}", `name the server ":`},
		{"one server name, two upstreams", "policy testdata/policy\n\t\tserver t\n\t\tupstream u1", "policy testdata/policy\n\t\tserver t\n\t\tupstream u2", `name the server "t" with different upstreams`},
		{"one server name, one of them an upstream", "policy testdata/policy\n\t\tserver t", "policy testdata/policy\n\t\tserver t\n\t\tupstream u", `name the server "t" with different upstreams`},
		{"same server", "policy testdata/policy\n\t\tserver t", "policy testdata/policy\n\t\tserver t", `name the server "t"`},
		{"distinct servers", "policy testdata/policy\n\t\tserver t1", "policy testdata/policy\n\t\tserver t2", ""},
		{"server and upstream names crossed", "policy testdata/policy\n\t\tserver x\n\t\tupstream y", "policy testdata/policy\n\t\tserver y\n\t\tupstream x", "operators could not tell which one a name stands for"},
		{"a server named as another's upstream", "policy testdata/policy\n\t\tserver x\n\t\tupstream y", "policy testdata/policy\n\t\tserver y", `name the server "y"`},
		{"an upstream named as another's server", "policy testdata/policy\n\t\tserver y", "policy testdata/policy\n\t\tserver x\n\t\tupstream y", `name the server`},
		{"one upstream declared", "policy testdata/policy\n\t\tserver t\n\t\tupstream u", "policy testdata/policy\n\t\tserver t\n\t\tupstream u", ""},
		// One server name shares its sessions: the handlers must decide
		// and guard alike.
		{"one server, block_secrets in one", "policy testdata/policy\n\t\tserver t\n\t\tupstream u", "policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tblock_secrets", `decide or guard otherwise`},
		{"one server, two policies", "policy testdata/policy\n\t\tserver t\n\t\tupstream u", "policy testdata/serverpolicy\n\t\tserver t\n\t\tupstream u", `decide or guard otherwise`},
		{"one server, a tool renamed in one", "policy testdata/policy\n\t\tserver t\n\t\tupstream u", "policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\ttool_override echo say", `decide or guard otherwise`},
		{"one server, two permissions tables", "server t\n\t\tupstream u\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t}",
			"server t\n\t\tupstream u\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t\tdestructive allow\n\t\t}", `decide or guard otherwise`},
		{"one server, one table", "server t\n\t\tupstream u\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t}",
			"server t\n\t\tupstream u\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t}", ""},
		// Two spellings of one setting agree.
		{"one server, one policy spelt two ways", "policy testdata/policy\n\t\tserver t\n\t\tupstream u", "policy ./testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\teval_timeout 1s\n\t\tdecision data.mcp.decision", ""},
		{"one server, its policy followed by one alone", "policy testdata/policy\n\t\tserver t\n\t\tupstream u", "policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tdisable_watch", `decide or guard otherwise`},
		{"one upstream, two servers guarding apart", "policy testdata/policy\n\t\tserver t1\n\t\tupstream u", "policy testdata/serverpolicy\n\t\tserver t2\n\t\tupstream u\n\t\tblock_secrets", ""},
		{"one upstream, callers from two places", "policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy",
			"policy testdata/policy\n\t\tserver t\n\t\tupstream u" + jwtIdentity, `identify callers from different places`},
		{"one upstream, callers from one place", "policy testdata/policy\n\t\tserver t\n\t\tupstream u" + jwtIdentity,
			"policy testdata/policy\n\t\tserver t\n\t\tupstream u" + jwtIdentity, ""},
		// Placeholders no module knows stay as written in the issuer a
		// verifier checks, so the realms differ as the issuers do.
		{"one upstream, issuers of unknown placeholders", "policy testdata/policy\n\t\tserver t\n\t\tupstream u" + jwtIssuedBy("{mcpgate.test.issuer_a}"),
			"policy testdata/policy\n\t\tserver t\n\t\tupstream u" + jwtIssuedBy("{mcpgate.test.issuer_b}"), `identify callers from different places`},
		{"one upstream, one of them anonymous", "policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy",
			"policy testdata/policy\n\t\tserver t\n\t\tupstream u", ""},
		// Two of Caddy's authentications may each know an alice (two
		// basic_auth lists): only the operator can say they are one.
		{"one upstream, Caddy's authentication in both", "policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy",
			"policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy", `cannot tell whether their authentications know the same users`},
		{"one upstream, Caddy's authentication, one realm named in one", "policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy {\n\t\t\trealm staff\n\t\t}",
			"policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy", `identify callers from different places`},
		{"one upstream, Caddy's authentication, realms apart", "policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy {\n\t\t\trealm staff\n\t\t}",
			"policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy {\n\t\t\trealm contractors\n\t\t}", `identify callers from different places`},
		{"one upstream, Caddy's authentication, one realm named in both", "policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy {http.auth.user.id} {\n\t\t\trealm staff\n\t\t}",
			"policy testdata/policy\n\t\tserver t\n\t\tupstream u\n\t\tidentity caddy {\n\t\t\trealm staff\n\t\t}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			first := freePort(t)
			second := strings.ReplaceAll(tt.second, "{first}", strconv.Itoa(first))
			err := loadCaddyfile(t, globalOptions(t)+policySite(first, "", tt.first, up.URL)+policySite(freePort(t), "", second, up.URL))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("configuration refused: %v; want it loaded", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("configuration: %v; want it refused with %q", err, tt.want)
			}
		})
	}
}

// TestDefaultServerName: without a server line, input.server is the port
// of the handler's HTTP server (not its host address, which replicas may
// not share); it comes from the configuration, so no Host header changes
// it. A second handler without a server line in one HTTP server is
// refused: nothing about it tells its upstream apart for good.
func TestDefaultServerName(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	port := freePort(t)
	startCaddy(t, globalOptions(t)+policySite(port, "", "policy testdata/serverpolicy", up.URL))
	waitForListener(t, port)
	want := fmt.Sprintf("server is :%d", port)
	for _, host := range []string{"localhost", "127.0.0.1", "127.0.0.1:1"} {
		t.Run(host, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
			session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
				Endpoint:   fmt.Sprintf("http://127.0.0.1:%d/", port),
				HTTPClient: &http.Client{Transport: hostHeader(host)},
			}, nil)
			if err != nil {
				t.Fatalf("connecting with Host %s: %v", host, err)
			}
			defer session.Close()
			res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
			if err != nil || resultText(res) != "Blocked by policy: "+want {
				t.Errorf("refusal = %q, %v; want it to name %q", resultText(res), err, want)
			}
		})
	}

	t.Run("two in one server", func(t *testing.T) {
		other := freePort(t)
		site := fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n", other)
		for _, path := range []string{"/a", "/b"} {
			site += strings.TrimPrefix(strings.TrimSuffix(policySite(0, path, "policy testdata/serverpolicy", up.URL), "}\n"), "\n:0 {\n\tbind 127.0.0.1")
		}
		err := loadCaddyfile(t, globalOptions(t)+site+"}\n")
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("two mcp_policy handlers without `server` in the HTTP server listening on :%d", other)) {
			t.Errorf("two handlers without server in one site: %v; want the configuration refused", err)
		}
	})
}

// hostHeader is a transport that sends every request with its Host header.
type hostHeader string

// RoundTrip implements http.RoundTripper.
func (h hostHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = string(h)
	return http.DefaultTransport.RoundTrip(r)
}

// rawCall posts a tools/call in session (the id the client was given) as
// the holder of token ("" for none), and returns the status and body.
func rawCall(t *testing.T, url, session, token, text string) (int, string) {
	t.Helper()
	header := http.Header{"Mcp-Session-Id": {session}, "Mcp-Protocol-Version": {"2025-06-18"}}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	status, body := post(t, url, header, fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":%q}}}`, text))
	return status, string(body)
}

// initializeAs opens a session through the gateway as the holder of token.
func initializeAs(t *testing.T, url, token string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	resp.Body.Close()
	session := resp.Header.Get("Mcp-Session-Id")
	if session == "" {
		t.Fatalf("initialize: status %d, no session", resp.StatusCode)
	}
	return session
}

// TestSessionBindingSurvivesRestart: a session stays bound to its caller
// and upstream across a gateway restart (no state kept in the process),
// with the key from Caddy's storage or configured; keys rotate without
// ending live sessions, and a retired key ends them.
func TestSessionBindingSurvivesRestart(t *testing.T) {
	idp := newIdentityProvider(t, "k1")
	up := newUpstream(t, upstreamtest.StatefulJSON)
	alice := idp.token(t, "k1", map[string]any{"sub": "alice"})
	bob := idp.token(t, "k1", map[string]any{"sub": "bob"})
	global := globalOptions(t) // one storage folder for every start
	const k1, k2 = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=", "ZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleWZha2U="
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	start := func(keys string) {
		t.Helper()
		_ = caddy.Stop()
		extra := ""
		if keys != "" {
			extra = "\n\t\tsession_keys " + keys
		}
		startCaddy(t, global+policySite(port, "", identityBlock(idp.url, extra), up.URL))
		waitForListener(t, port)
	}

	t.Run("key from storage", func(t *testing.T) {
		start("")
		session := initializeAs(t, url, alice)
		start("")
		if status, body := rawCall(t, url, session, alice, "after restart"); status != http.StatusOK || strings.Contains(body, `"error"`) {
			t.Errorf("alice's session after a restart: %d %s; want it to go on", status, body)
		}
		if status, _ := rawCall(t, url, session, bob, "hijack"); status != http.StatusForbidden {
			t.Errorf("bob presenting alice's session after a restart: %d; want 403", status)
		}
		if status, _ := rawCall(t, url, up.LastSession(), alice, "raw id"); status != http.StatusNotFound {
			t.Errorf("the upstream's own session id, presented directly: %d; want 404 (the gateway never issued it)", status)
		}
		if up.SawBodyContaining("hijack") || up.SawBodyContaining("raw id") {
			t.Error("the upstream received a refused request")
		}
	})

	t.Run("rotation", func(t *testing.T) {
		start(k1)
		session := initializeAs(t, url, alice)
		start(k2 + " " + k1)
		if status, body := rawCall(t, url, session, alice, "rotating"); status != http.StatusOK {
			t.Errorf("a session sealed with the old key while both are listed: %d %s; want it to go on", status, body)
		}
		start(k2)
		if status, body := rawCall(t, url, session, alice, "retired"); status != http.StatusNotFound {
			t.Errorf("a session sealed with a retired key: %d %s; want 404", status, body)
		}
	})
}

// TestReloadRelistsTools: a new configuration may route a server name to
// another MCP server. Its tools are listed again before any call is
// decided: what the last configuration's upstream listed (here: the tool
// read-only) never decides a call to the new one (where it is
// destructive).
func TestReloadRelistsTools(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	readOnly := upstreamtest.New(t, upstreamtest.StatefulJSON, []*mcp.Tool{{Name: "shared", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}}, 0)
	destructive := upstreamtest.New(t, upstreamtest.StatefulJSON, []*mcp.Tool{{Name: "shared"}}, 0)
	const table = `server x
		permissions {
			read_only allow
			destructive block
		}`
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	call := func() *mcp.CallToolResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := connect(t, url, nil).CallTool(ctx, &mcp.CallToolParams{Name: "shared", Arguments: map[string]any{"text": "x"}})
		if err != nil {
			t.Fatalf("calling shared: %v", err)
		}
		return res
	}
	startCaddy(t, globalOptions(t)+policySite(port, "", table, readOnly.URL))
	waitForListener(t, port)
	if res := call(); res.IsError {
		t.Fatalf("the read-only tool was refused: %q", resultText(res))
	}
	startCaddy(t, globalOptions(t)+policySite(port, "", table, destructive.URL))
	waitForListener(t, port)
	if res := call(); !res.IsError || destructive.CallCount("shared") != 0 {
		t.Errorf("after the reload, the new upstream's destructive tool ran (%q): it was decided with the old upstream's list", resultText(res))
	}
}

// TestSessionBoundToCallerRealm: a session is sealed for its caller in
// the caller's realm, so that after a restart that changed the token
// issuer (or on a replica configured otherwise), "alice" of the new issuer
// cannot take over the session of "alice" of the old one: to her it is
// unknown (404, and her client starts a new one).
func TestSessionBoundToCallerRealm(t *testing.T) {
	oldIssuer, newIssuer := newIdentityProvider(t, "k1"), newIdentityProvider(t, "k1")
	up := newUpstream(t, upstreamtest.StatefulJSON)
	global := globalOptions(t) // one storage folder, one session key, for both starts
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	block := func(jwks, issuer string) string {
		return fmt.Sprintf("policy testdata/userpolicy\n\t\tserver test\n\t\tidentity jwt {\n\t\t\tjwks_url %s\n\t\t\tissuer %s\n\t\t\taudience %s\n\t\t}", jwks, issuer, testAudience)
	}
	startCaddy(t, global+policySite(port, "", block(oldIssuer.url, testIssuer), up.URL))
	waitForListener(t, port)
	session := initializeAs(t, url, oldIssuer.token(t, "k1", map[string]any{"sub": "alice"}))

	_ = caddy.Stop()
	const otherIssuer = "https://other-idp.example"
	startCaddy(t, global+policySite(port, "", block(newIssuer.url, otherIssuer), up.URL))
	waitForListener(t, port)
	// To "alice" of the new issuer the session is unknown (so that her
	// client starts a new one); to anyone else, another user's.
	for user, want := range map[string]int{"alice": http.StatusNotFound, "bob": http.StatusForbidden} {
		status, body := rawCall(t, url, session, newIssuer.token(t, "k1", map[string]any{"sub": user, "iss": otherIssuer}), "other realm")
		if status != want || up.SawBodyContaining("other realm") {
			t.Errorf("%s of another issuer presenting alice's session: %d %s; want %d, and nothing forwarded", user, status, body, want)
		}
	}
}

// TestReloadDecidesOpenStreams: a stream opened before a reload (the
// standalone GET stream a server sends its requests on) is decided by
// the policy running now, not the one it was opened under: after a
// reload that forbids the server to ask the client anything, a sampling
// request on a session opened before it is refused as on a new one.
func TestReloadDecidesOpenStreams(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	up := newUpstream(t, upstreamtest.StatefulSSE)
	policyDir := func(rego string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "mcp.rego"), []byte("package mcp\n\nimport rego.v1\n\n"+rego), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	allowAll := policyDir(`decision := {"action": "allow", "reason": "all"}`)
	noAsking := policyDir(`default decision := {"action": "allow", "reason": "not asked"}

decision := {"action": "block", "reason": "after the reload the server may ask the client nothing"} if input.direction == "server_to_client"`)
	global := globalOptions(t) // one session key for both configurations
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	startCaddy(t, global+policySite(port, "", "policy "+allowAll+"\n\t\tserver test", up.URL))
	waitForListener(t, port)
	handlers := &clientHandlers{action: "accept"}
	before := connect(t, url, handlers.options())
	if _, err := before.ListTools(t.Context(), nil); err != nil { // the GET stream opens meanwhile
		t.Fatal(err)
	}

	startCaddy(t, global+policySite(port, "", "policy "+noAsking+"\n\t\tserver test", up.URL))
	waitForListener(t, port)
	after := connect(t, url, handlers.options())
	if _, err := after.ListTools(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	asked := 0
	for ss := range up.Server.Sessions() {
		asked++
		//lint:ignore SA1019 sampling is deprecated (SEP-2577) but servers still send it, and the gateway must govern it.
		_, err := ss.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 10, Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "exfiltrate"}}}})
		if err == nil || !strings.Contains(err.Error(), "may ask the client nothing") {
			t.Errorf("a sampling request after the reload: %v; want it refused by the policy running now", err)
		}
	}
	if sampled, _ := handlers.seen(); asked != 2 || len(sampled) != 0 {
		t.Errorf("%d sessions asked, the client sampled %q; want two sessions, nothing sampled", asked, sampled)
	}
}

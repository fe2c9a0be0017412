package caddymodule_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule"
	mcpgateway "github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/internal/redistest"
	"github.com/mcpgate/mcpgate/internal/testwait"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// openTable allows every category of tools.
const openTable = `server test
		permissions {
			read_only allow
			write allow
			destructive allow
		}`

// logLines waits until the JSON log at path has a line for which match is
// true, and returns it decoded.
func logLine(t *testing.T, path string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	testwait.Until(t, 10*time.Second, func() string {
		entries, err := logEntries(path)
		if err != nil {
			return err.Error()
		}
		for _, entry := range entries {
			if match(entry) {
				found = entry
				return ""
			}
		}
		return "no matching line in " + path
	})
	return found
}

// logEntries returns the lines of the JSON log at path that are JSON
// objects, decoded.
func logEntries(path string) ([]map[string]any, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var entries []map[string]any
	lines := bufio.NewScanner(file)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		var entry map[string]any
		if json.Unmarshal(lines.Bytes(), &entry) == nil {
			entries = append(entries, entry)
		}
	}
	return entries, lines.Err()
}

// TestPlaceholders: after mcp_policy, the rest of the route sees what it
// learned: a route matches on {mcp.tool.name} (as a variable), a header
// carries it, and the access log has it appended.
func TestPlaceholders(t *testing.T) {
	echoes := newUpstream(t, upstreamtest.StatelessJSON)
	others := newUpstream(t, upstreamtest.StatelessJSON)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	accessLog := filepath.Join(t.TempDir(), "access.log")
	port := freePort(t)
	startCaddy(t, globalOptions(t)+fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	log {
		output file %s
		format json
	}
	log_append mcp_tool {mcp.tool.name}
	log_append mcp_action {mcp.decision.action}
	header >X-MCP-Tool {mcp.tool.name}
	header >X-MCP-Server {mcp.server}
	route {
		mcp_policy {
			%s
		}
		@echo vars mcp.tool.name echo
		reverse_proxy @echo %s
		reverse_proxy %s
	}
}
`, port, accessLog, openTable, strings.TrimPrefix(echoes.URL, "http://"), strings.TrimPrefix(others.URL, "http://")))
	waitForListener(t, port)
	gateway := fmt.Sprintf("http://127.0.0.1:%d/", port)

	send := func(method string, body io.Reader) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, gateway, body)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	call := func(tool string) *http.Response {
		t.Helper()
		return send(http.MethodPost, strings.NewReader(
			fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q,"arguments":{"text":"x"}}}`, tool)))
	}
	if resp := call("echo"); resp.Header.Get("X-MCP-Tool") != "echo" {
		t.Errorf("X-MCP-Tool = %q, want echo", resp.Header.Get("X-MCP-Tool"))
	}
	call("create_issue")
	if echoes.CallCount("echo") != 1 || others.CallCount("create_issue") != 1 || echoes.CallCount("create_issue") != 0 {
		t.Errorf("routing on {mcp.tool.name}: echo went %d/%d, create_issue %d/%d (first/second upstream); want echo to the first only",
			echoes.CallCount("echo"), others.CallCount("echo"), echoes.CallCount("create_issue"), others.CallCount("create_issue"))
	}
	entry := logLine(t, accessLog, func(e map[string]any) bool { return e["mcp_tool"] == "create_issue" })
	if entry["mcp_action"] != "allow" {
		t.Errorf("access log entry %v; want mcp_action allow beside mcp_tool", entry)
	}
	// A request without a message has the facts of its server and
	// session, and none of a message's: empty, not left as written.
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		resp := send(method, nil)
		if tool, server := resp.Header.Values("X-MCP-Tool"), resp.Header.Get("X-MCP-Server"); strings.Contains(strings.Join(tool, ""), "{") || server != "test" {
			t.Errorf("%s: X-MCP-Tool %q, X-MCP-Server %q; want no tool and server test", method, tool, server)
		}
	}
}

// TestRateLimits: per session and tool, over the limit a tools/call gets an
// isError result saying when to retry and Retry-After, another method a
// JSON-RPC error; nothing over the limit reaches the upstream.
func TestRateLimits(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: openTable + `
		rate_limit {mcp.session}/{mcp.tool.name} 2/1h
		rate_limit {mcp.server} 1/1h {
			methods tools/list
		}`})
	session := initializeSession(t, gateway)
	header := http.Header{"Mcp-Session-Id": {session}, "Mcp-Protocol-Version": {"2025-06-18"}}
	callEchoRaw := func() (int, string) {
		status, body := post(t, gateway, header, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`)
		return status, string(body)
	}
	for i := range 2 {
		if status, body := callEchoRaw(); status != http.StatusOK || strings.Contains(body, "isError") {
			t.Fatalf("call %d within the limit: %d %s", i+1, status, body)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, gateway, strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`))
	req.Header = header.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var over struct {
		Result struct {
			IsError bool `json:"isError"`
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&over)
	resp.Body.Close()
	if !over.Result.IsError || len(over.Result.Content) == 0 || !strings.Contains(over.Result.Content[0].Text, "try again in") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("the third call: %+v (Retry-After %q); want an isError result saying when to retry, and Retry-After", over, resp.Header.Get("Retry-After"))
	}
	if n := up.CallCount("echo"); n != 2 {
		t.Errorf("the upstream ran echo %d times, want 2", n)
	}
	list := `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`
	if _, body := post(t, gateway, header, list); strings.Contains(string(body), "error") {
		t.Fatalf("the first tools/list: %s", body)
	}
	if _, body := post(t, gateway, header, list); !strings.Contains(string(body), fmt.Sprint(mcpgateway.CodeRateLimited)) {
		t.Errorf("the second tools/list: %s; want a JSON-RPC error %d", body, mcpgateway.CodeRateLimited)
	}
}

// TestRateLimitKeysKeptApart: the values a rate limit's key is made of
// cannot forge its separators: "a/b" then "c" and "a" then "b/c" are two
// keys, each with its own count.
func TestRateLimitKeysKeptApart(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: openTable + `
		rate_limit {http.request.header.X-Team}/{http.request.header.X-Project} 1/1h`})
	for _, parts := range [][2]string{{"a/b", "c"}, {"a", "b/c"}, {"a%2Fb", "c"}} {
		header := http.Header{"X-Team": {parts[0]}, "X-Project": {parts[1]}}
		if status, body := post(t, gateway, header, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`); status != http.StatusOK || strings.Contains(string(body), "isError") {
			t.Errorf("team %q, project %q: %d %s; want the call allowed, on a count of its own", parts[0], parts[1], status, body)
		}
	}
}

// TestRateLimitKeysBounded: a key past 256 bytes (a header's value, as a
// client sends it) is kept as its limit's prefix and a SHA-256: what a
// count costs does not grow with what the client sends, and two long
// keys stay apart.
func TestRateLimitKeysBounded(t *testing.T) {
	const prefix = "upstream\x00limit\x00"
	long := prefix + strings.Repeat("%41", 4000)
	other := prefix + strings.Repeat("%41", 3999) + "%42"
	if got := caddymodule.BoundedKey(prefix, prefix+"alice"); got != prefix+"alice" {
		t.Errorf("a short key kept as %q; want it as it is", got)
	}
	bounded, otherBounded := caddymodule.BoundedKey(prefix, long), caddymodule.BoundedKey(prefix, other)
	if len(bounded) > 256 || !strings.HasPrefix(bounded, prefix+"sha256:") || bounded == otherBounded {
		t.Errorf("long keys kept as %q and %q; want each its limit's prefix and its own hash", bounded, otherBounded)
	}
}

// TestRateLimitCountsPerLimit: each limit keeps its counts in a store of
// its own, bounded on its own: a client that varies the key of a cheap
// limit (a ping per address) cannot push a strict limit's counts out,
// which would start them full.
func TestRateLimitCountsPerLimit(t *testing.T) {
	strict, err := caddymodule.LoadLocalLimiter("up\x00strict")
	if err != nil {
		t.Fatal(err)
	}
	defer caddymodule.ReleaseLocalLimiter("up\x00strict")
	cheap, err := caddymodule.LoadLocalLimiter("up\x00cheap")
	if err != nil {
		t.Fatal(err)
	}
	defer caddymodule.ReleaseLocalLimiter("up\x00cheap")
	again, err := caddymodule.LoadLocalLimiter("up\x00strict")
	if err != nil {
		t.Fatal(err)
	}
	defer caddymodule.ReleaseLocalLimiter("up\x00strict")
	if strict == cheap || strict != again {
		t.Error("two limits share one store of counts, or one limit has two")
	}
}

// TestRateLimitKeysNameKnownPlaceholders: a key naming a placeholder of
// mcpgate's that does not exist (a typo), or with a placeholder left
// open, does not load: replaced by nothing, or kept as written, it would
// make every caller share one count.
func TestRateLimitKeysNameKnownPlaceholders(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	const unknown, unclosed = "is no placeholder of mcpgate's", "a placeholder is not closed"
	for key, want := range map[string]string{
		"{mcp.session}/{mcp.tool.name}":                     "",
		"{http.vars.mcp.tool.name}/{http.request.header.X}": "",
		"{http.vars.client_ip}":                             "",
		`tool\{x\}/{mcp.tool.name}`:                         "",
		"{mcp.tool.nam}":                                    unknown,
		"{http.vars.mcp.user}/{mcp.tool.name}":              unknown,
		"{mcp.tool.name":                                    unclosed,
		"{mcp.user.id}/{mcp.tool.name":                      unclosed,
		"mcp.tool.name}":                                    unclosed,
		"{mcp.{mcp.tool.name}}":                             unclosed,
		`\\{mcp.user.id}`:                                   unclosed, // Caddy reads \{ as escaped, the \ before it as the key's
		`\{mcp.tool.nam\}/{mcp.session}`:                    "",       // escaped: the key's own text
		strings.Repeat("{", 200) + "{mcp.user.id}":          unclosed,
	} {
		wantErr := want != ""
		t.Setenv("XDG_DATA_HOME", t.TempDir())
		// Refused as the Caddyfile is read, or, in JSON, as it loads.
		var h caddymodule.Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_policy {\n" + openTable + "\n\trate_limit " + key + " 1/1h\n}"))
		if err == nil {
			err = loadCaddyfile(t, globalOptions(t)+policySite(freePort(t), "", openTable+"\n\t\trate_limit "+key+" 1/1h", up.URL))
		}
		if (err != nil) != wantErr || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("rate_limit %s: %v; want it refused: %v", key, err, wantErr)
		}
	}
}

// TestRateLimitUserKeyNeedsIdentity: a limit keyed by the caller
// ({mcp.user.id}, or its variable) in a handler without an identity does
// not load: the caller is always empty there, and every caller would
// share one count, which one client could use up for everyone.
func TestRateLimitUserKeyNeedsIdentity(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	const refused = "is always empty without an `identity`"
	for _, tt := range []struct {
		name, body, wantErr string
	}{
		{"by user, no identity", "rate_limit {mcp.user.id}/{mcp.tool.name} 1/1h", "{mcp.user.id} " + refused},
		{"by the user's variable, no identity", "rate_limit {http.vars.mcp.user.id} 1/1h", "{http.vars.mcp.user.id} " + refused},
		{"by user, with an identity", "identity caddy\n\t\trate_limit {mcp.user.id}/{mcp.tool.name} 1/1h", ""},
		{"by session, no identity", "rate_limit {mcp.session}/{mcp.tool.name} 1/1h", ""},
		{"by user and server, no identity", "rate_limit {mcp.server}/{http.vars.mcp.user.id}/{mcp.decision.action} 1/1h", "{http.vars.mcp.user.id} " + refused},
		{"by user and session, no identity", "rate_limit {mcp.session}/{mcp.user.id} 1/1h", ""},
		{"by user and address, no identity", "rate_limit {http.request.remote.host}/{mcp.user.id} 1/1h", ""},
		{"by user and client address, no identity", "rate_limit {http.vars.client_ip}/{mcp.user.id} 1/1h", ""},
		{"by user and a header, no identity", "rate_limit {mcp.user.id}/{http.request.header.X-Team} 1/1h", ""},
		{"by user and host, no identity", "rate_limit {mcp.user.id}/{http.request.host} 1/1h", "{mcp.user.id} " + refused},
		{"by user and path, no identity", "rate_limit {mcp.user.id}/{http.request.uri.path} 1/1h", "{mcp.user.id} " + refused},
		{"by user and year, no identity", "rate_limit {time.now.year}/{mcp.user.id} 1/1h", "{mcp.user.id} " + refused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			err := loadCaddyfile(t, globalOptions(t)+policySite(freePort(t), "", openTable+"\n\t\t"+tt.body, up.URL))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("loading: %v; want an error containing %q (none if empty)", err, tt.wantErr)
			}
		})
	}
}

// TestRateLimitKeysFromVariables: a key written with the variables the
// gateway sets ({http.vars.mcp.tool.name}) counts as one written with its
// placeholders ({mcp.tool.name}): each tool on a count of its own, not
// one count shared by every call because the variables were not yet set.
func TestRateLimitKeysFromVariables(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: openTable + `
		rate_limit {http.vars.mcp.server}/{http.vars.mcp.tool.name} 1/1h`})
	for _, tool := range []string{"echo", "create_issue"} {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"text":"x","title":"x"}}}`
		if status, reply := post(t, gateway, nil, body); status != http.StatusOK || strings.Contains(string(reply), "Rate limit") {
			t.Errorf("the first call of %s: %d %s; want it allowed, on a count of its own", tool, status, reply)
		}
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`
	if _, reply := post(t, gateway, nil, body); !strings.Contains(string(reply), "Rate limit") {
		t.Errorf("the second call of echo: %s; want it refused", reply)
	}
}

// TestRateLimitsCountApart: limits over one key template and rate that
// count other methods keep counts of their own: one limit's messages never
// use up another's, nor does a message count twice against one count; a
// limit given twice is refused.
func TestRateLimitsCountApart(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
	refused := func(body []byte) bool {
		return strings.Contains(string(body), "Rate limit") || strings.Contains(string(body), fmt.Sprint(mcpgateway.CodeRateLimited))
	}
	t.Run("other methods", func(t *testing.T) {
		gateway := startGateway(t, up.URL, gatewayOptions{policy: openTable + `
		rate_limit {mcp.server} 2/1h {
			methods tools/list
		}
		rate_limit {mcp.server} 2/1h`})
		for i := range 2 {
			if _, body := post(t, gateway, nil, list); refused(body) {
				t.Fatalf("tools/list %d: %s", i+1, body)
			}
		}
		if _, body := post(t, gateway, nil, call); refused(body) {
			t.Errorf("the first tools/call, after two lists: %s; want it allowed (the lists count against their own limit)", body)
		}
	})
	t.Run("overlapping methods", func(t *testing.T) {
		gateway := startGateway(t, up.URL, gatewayOptions{policy: openTable + `
		rate_limit {mcp.server} 4/1h {
			methods tools/call tools/list
		}
		rate_limit {mcp.server} 4/1h`})
		for i := range 4 {
			if _, body := post(t, gateway, nil, call); refused(body) {
				t.Fatalf("tools/call %d of 4: %s; want it allowed, counted once against each limit", i+1, body)
			}
		}
		if _, body := post(t, gateway, nil, call); !refused(body) {
			t.Errorf("the fifth tools/call: %s; want it refused", body)
		}
	})
	t.Run("refused", func(t *testing.T) {
		for _, tt := range []struct{ limit, want string }{
			{"rate_limit {mcp.server} 4/1h {\n\t\t\tactions block\n\t\t}", `unknown action "block"`},
			{"rate_limit {mcp.server} 4/1h {\n\t\t\tactions\n\t\t}", "wrong argument count"},
			{"rate_limit {mcp.server} 4/1h {\n\t\t\tdecisions allow\n\t\t}", `unrecognized subdirective "decisions"`},
			{"rate_limit {mcp.server} 4/1h burst 0", "invalid burst"},
			{"rate_limit {mcp.server} 4/1h burst 5abc", `invalid burst "5abc"`},
			{"rate_limit {mcp.server} 4/1h burst 0x10", `invalid burst "0x10"`},
			{"rate_limit {mcp.server} 4/1h {\n\t\t\tmethods tools/cal\n\t\t}", `method "tools/cal" is not a request MCP defines`},
			{"rate_limit {mcp.server} 4/1h {\n\t\t\tmethods tools/list Tools/call\n\t\t}", `method "Tools/call" is not a request MCP defines`},
			{"rate_limit {mcp.server} 4/1h {\n\t\t\tmethods notifications/cancelled\n\t\t}", `method "notifications/cancelled" is not a request MCP defines`},
		} {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(globalOptions(t)+policySite(freePort(t), "", openTable+"\n\t\t"+tt.limit, up.URL)), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: %v; want it refused with %q", tt.limit, err, tt.want)
			}
		}
	})
	t.Run("given twice", func(t *testing.T) {
		t.Setenv("XDG_DATA_HOME", t.TempDir())
		err := loadCaddyfile(t, globalOptions(t)+policySite(freePort(t), "", openTable+`
		rate_limit {mcp.server} 4/1h {
			methods tools/list tools/call
		}
		rate_limit {mcp.server} 4/1h {
			methods tools/call tools/list tools/call
		}`, up.URL))
		if err == nil || !strings.Contains(err.Error(), "given twice") {
			t.Errorf("%v; want the second limit refused as given twice", err)
		}
	})
}

// TestRateLimitsSharedByReplicas: with the approval store in Redis, two
// replicas share one count.
func TestRateLimitsSharedByReplicas(t *testing.T) {
	redisAddr := redistest.Start(t)
	up := newUpstream(t, upstreamtest.StatelessJSON)
	approver := newApprover(t)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	portA, portB := freePort(t), freePort(t)
	site := func(port int, instance string) string {
		return approvalSiteWith(port, openTable+"\n\t\trate_limit shared/{mcp.tool.name} 3/1h", up, approver.URL,
			"http://127.0.0.1:9/approvals", "store redis "+redisAddr, "instance "+instance)
	}
	startCaddy(t, globalOptions(t)+site(portA, "a")+site(portB, "b"))
	waitForListener(t, portA)
	waitForListener(t, portB)
	ran := 0
	for i := range 6 {
		port := []int{portA, portB}[i%2]
		_, body := post(t, fmt.Sprintf("http://127.0.0.1:%d/mcp", port), http.Header{"Mcp-Protocol-Version": {"2025-06-18"}},
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`)
		if !strings.Contains(string(body), "Rate limit") {
			ran++
		}
	}
	if ran != 3 || up.CallCount("echo") != 3 {
		t.Errorf("%d of 6 calls over two replicas passed (upstream ran %d); want 3, the shared limit", ran, up.CallCount("echo"))
	}
}

// TestAuditTrail: the audit logger (mcpgate.audit), routed to a file of
// its own, gets one record per message with who, what, the decision,
// the policy revision and the outcome, the arguments digested unless
// asked for, and one per approval settled.
func TestAuditTrail(t *testing.T) {
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	global := []string{fmt.Sprintf("log audit {\n\t\toutput file %s\n\t\tformat json\n\t\tinclude mcpgate.audit\n\t}", auditLog)}
	g, up, session, ctx := approvalClient(t, approvalSetup{global: global, policy: testPolicy + "\n\t\taudit", hold: "5s"})
	if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "secret words"}}); err != nil {
		t.Fatal(err)
	}
	_, _ = session.CallTool(ctx, &mcp.CallToolParams{Name: "delete_issue", Arguments: map[string]any{"text": "x"}})
	done := callAsync(ctx, session, createIssue("audited"))
	e := g.approver.waitFor(t, "approval.requested", 1)
	if status := g.approver.decide(t, e.CallbackURL, "approve", "fine"); status != http.StatusOK {
		t.Fatalf("approve: %d", status)
	}
	awaitResult(t, done)
	_, _ = post(t, g.URL, nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"dup"}}`)

	record := func(outcome, tool string) map[string]any {
		t.Helper()
		return logLine(t, auditLog, func(r map[string]any) bool { return r["outcome"] == outcome && (tool == "" || r["tool"] == tool) })
	}
	forwarded := record("forwarded", "echo")
	if forwarded["logger"] != "mcpgate.audit" || forwarded["action"] != "allow" || forwarded["arguments_sha256"] == nil ||
		forwarded["arguments"] != nil || !strings.HasPrefix(fmt.Sprint(forwarded["policy_revision"]), "sha256:") || forwarded["server"] != "test" {
		t.Errorf("forwarded record %v; want the logger, the decision, the policy revision and an arguments digest (no arguments)", forwarded)
	}
	if refused := record("refused", "delete_issue"); refused["action"] != "block" || refused["reason"] == "" {
		t.Errorf("refused record %v; want the block and its reason", refused)
	}
	if approved := record("approved", "create_issue"); approved["approval"] != e.ID || approved["approver"] != "webhook" {
		t.Errorf("approved record %v; want the approval and its approver", approved)
	}
	if settled := logLine(t, auditLog, func(r map[string]any) bool { return r["msg"] == "approval settled" }); settled["outcome"] != "approved" || settled["approval"] != e.ID {
		t.Errorf("approval record %v; want the approval settled as approved", settled)
	}
	if rejected := record("rejected", ""); !strings.Contains(fmt.Sprint(rejected["refusal"]), "duplicate") {
		t.Errorf("rejected record %v; want the hostile request's refusal", rejected)
	}
	if up.CallCount("delete_issue") != 0 {
		t.Error("the refused call ran")
	}
}

// TestAuditTrailOfLaterRefusals: a request refused once its body was read
// (here, an Mcp-Name header naming another tool than the body's) has a
// record naming its message, and a call a rate limit refused after the
// policy allowed it has a record with the policy's decision and revision,
// the limit's refusal beside them.
func TestAuditTrailOfLaterRefusals(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	auditLog := filepath.Join(t.TempDir(), "audit.log")
	global := []string{fmt.Sprintf("log audit {\n\t\toutput file %s\n\t\tformat json\n\t\tinclude mcpgate.audit\n\t}", auditLog)}
	gateway := startGateway(t, up.URL, gatewayOptions{global: global, policy: openTable + "\n\t\taudit\n\t\trate_limit {mcp.server} 1/1h"})
	header := http.Header{"Mcp-Protocol-Version": {"2025-06-18"}, "Mcp-Name": {"echo"}, "Mcp-Method": {"tools/call"}}
	if status, body := post(t, gateway, header, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"delete_issue","arguments":{"text":"x"}}}`); status != http.StatusBadRequest {
		t.Fatalf("a call whose Mcp-Name names another tool: %d %s; want 400", status, body)
	}
	rejected := logLine(t, auditLog, func(r map[string]any) bool { return r["outcome"] == "rejected" })
	if rejected["kind"] != "request" || rejected["method"] != "tools/call" || rejected["id"] != "7" || rejected["tool"] != "delete_issue" ||
		!strings.Contains(fmt.Sprint(rejected["refusal"]), "Mcp-Name") {
		t.Errorf("rejected record %v; want the message read (kind, method, id 7, tool delete_issue) and the refusal", rejected)
	}
	for range 2 {
		post(t, gateway, http.Header{"Mcp-Protocol-Version": {"2025-06-18"}}, callEcho)
	}
	forwarded := logLine(t, auditLog, func(r map[string]any) bool { return r["outcome"] == "forwarded" })
	limited := logLine(t, auditLog, func(r map[string]any) bool { return r["outcome"] == "rate_limited" })
	if limited["action"] != "allow" || limited["reason"] != forwarded["reason"] || limited["policy_revision"] != forwarded["policy_revision"] ||
		!strings.Contains(fmt.Sprint(limited["refusal"]), "Rate limit") {
		t.Errorf("rate_limited record %v; want the policy's decision (allow, %q, revision %q) and the limit's refusal",
			limited, forwarded["reason"], forwarded["policy_revision"])
	}
	if up.CallCount("delete_issue") != 0 || up.CallCount("echo") != 1 {
		t.Errorf("the upstream ran delete_issue %d and echo %d times; want 0 and 1", up.CallCount("delete_issue"), up.CallCount("echo"))
	}
}

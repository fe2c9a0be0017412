//go:build soak

// Package soak runs mcpgate under mixed traffic for a long while and checks
// that what it holds comes back to what it held before: tool calls and
// lists, calls held for approval and then approved or denied, sessions
// opened and closed, and policy reloads, through Caddy with mcp_policy in
// front of an MCP server in a process of its own. It also measures the
// memory an idle session and a held approval cost. It is a test behind the
// soak build tag, so that `go test ./...` (and CI) leaves it out:
//
//	go test -tags soak -run TestSoak -timeout 30m -v ./bench/soak -soak.duration=10m
package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	_ "github.com/mcpgate/mcpgate/caddymodule"
	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/childtest"
	"github.com/mcpgate/mcpgate/internal/testport"
)

// duration is how long the mixed traffic runs.
var duration = flag.Duration("soak.duration", 10*time.Minute, "how long the mixed traffic runs")

// The soak's clients, and how many idle sessions and held calls it
// measures the memory of.
const (
	clients      = 16
	idleSessions = 1000
	heldCalls    = 500
)

// The secrets that sign webhooks and decisions.
const (
	webhookSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	decisionSecret = "whsec_ZGVjaXNpb25zIGFyZSBzaWduZWQgd2l0aCB0aGlzIGtleQ=="
)

// upstreamEnv, when set, makes the test binary serve the soak's upstream
// instead of running its tests.
const upstreamEnv = "MCPGATE_SOAK_UPSTREAM"

// TestMain runs the tests, or, in the process startUpstream starts, the
// upstream.
func TestMain(m *testing.M) {
	childtest.Main(m, upstreamEnv, serveUpstream)
}

// TestSoak runs the mixed traffic for -soak.duration between two
// measurements of the gateway's heap and goroutines, after measuring the
// memory of idle sessions and held calls.
func TestSoak(t *testing.T) {
	s := start(t)
	s.warmUp(t)
	base := measure()
	t.Logf("baseline: %s", base)

	s.measureIdleSessions(t)
	s.measureHeldCalls(t)

	t.Logf("mixed traffic for %s from %d clients", *duration, clients)
	counts := s.mixedTraffic(t, *duration)
	t.Logf("done: %s", counts)

	// Let held calls, keep-alive connections and the approvals' retention
	// settle as far as they do, then measure again.
	s.client.CloseIdleConnections()
	after := settle(base)
	t.Logf("after: %s", after)
	t.Logf("change: heap %+.1f MiB, goroutines %+d", float64(int64(after.heap)-int64(base.heap))/(1<<20), after.goroutines-base.goroutines)
	if after.goroutines > base.goroutines+10 {
		var stacks strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Errorf("goroutines: %d after the soak, %d before:\n%s", after.goroutines, base.goroutines, stacks.String())
	}
	// Approvals are remembered for an hour after they are settled
	// (approval.Retention), so the heap may hold the soak's; anything
	// beyond that is a leak.
	if allowed := base.heap + uint64(counts.held.Load())*4096 + 16<<20; after.heap > allowed {
		t.Errorf("heap: %d bytes after the soak, %d before; more than the %d allowed for the approvals remembered", after.heap, base.heap, allowed)
	}
}

// soak is the running gateway and what the soak's clients need.
type soak struct {
	url       string
	callbacks string
	policy    string
	client    *http.Client
	decision  approval.Secret
	// decide is what the approver does with an approval request.
	decide atomic.Pointer[func(id string)]
	calls  atomic.Int64
}

// onApproval sets what the approver does with approval requests.
func (s *soak) onApproval(decide func(id string)) {
	s.decide.Store(&decide)
}

// start runs the upstream and a Caddy with the gateway, its approvals'
// callbacks and an approver that answers every approval request.
func start(t *testing.T) *soak {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	s := &soak{client: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 4 * clients},
		Timeout:   time.Minute,
	}}
	var err error
	if s.decision, err = approval.ParseSecret(decisionSecret); err != nil {
		t.Fatal(err)
	}
	s.onApproval(func(string) {})
	hooks, err := approval.ParseSecret(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	approver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := hooks.Verify(r.Header, body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var e approval.Event
		if err := json.Unmarshal(body, &e); err == nil && e.Type == approval.EventRequested {
			go (*s.decide.Load())(e.ID)
		}
	}))
	t.Cleanup(approver.Close)

	s.policy = t.TempDir()
	writePolicy(t, s.policy, 0)
	gatewayPort, callbackPort := testport.Free(t), testport.Free(t)
	s.url = fmt.Sprintf("http://127.0.0.1:%d/mcp", gatewayPort)
	s.callbacks = fmt.Sprintf("http://127.0.0.1:%d/approvals", callbackPort)
	caddytest.Start(t, caddytest.GlobalOptions(t)+fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	handle /approvals/* {
		mcp_approvals
	}
}

:%d {
	bind 127.0.0.1
	mcp_policy {
		policy %s
		server soak
		approval {
			webhook %s
			webhook_secret %s
			decision_secret %s
			callback_url %s
			hold 30s
			keepalive 15s
			timeout 1m
		}
	}
	reverse_proxy %s
}
`, callbackPort, gatewayPort, s.policy, approver.URL, webhookSecret, decisionSecret, s.callbacks, startUpstream(t)))
	caddytest.WaitForListener(t, gatewayPort)
	caddytest.WaitForListener(t, callbackPort)
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}

// writePolicy writes the soak's policy: echo runs, create_issue needs
// approval, anything else is blocked. generation changes the reasons, so
// that each write is a new policy.
func writePolicy(t *testing.T, dir string, generation int) {
	t.Helper()
	files := map[string]string{
		"policy.rego": `package mcp

import rego.v1

default decision := {"action": "block", "reason": "no rule allows this"}

decision := {"action": "allow", "reason": "not a tool call"} if input.method != "tools/call"

decision := data.soak.tools[input.tool.name] if input.method == "tools/call"
`,
		"data.json": fmt.Sprintf(`{"soak": {"tools": {
	"echo": {"action": "allow", "reason": "echo runs (policy %d)"},
	"create_issue": {"action": "needs_approval", "reason": "issues are reviewed (policy %d)"}
}}}`, generation, generation),
	}
	for name, content := range files {
		// Written aside and renamed, so that a reload never reads half a
		// file.
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// warmUp runs the mixed traffic for a while, so that pools (connections
// to the upstream and to the approver), caches and the tool list are in
// place before the baseline.
func (s *soak) warmUp(t *testing.T) {
	t.Helper()
	s.onApproval(func(id string) { s.answer(t, id, []string{"approve", "deny"}[rand.IntN(2)]) })
	s.mixedTraffic(t, 10*time.Second)
	s.client.CloseIdleConnections()
}

// measureIdleSessions opens sessions, measures what the process holds
// per session, and closes them.
func (s *soak) measureIdleSessions(t *testing.T) {
	t.Helper()
	before := measure()
	sessions := make([]string, idleSessions)
	for i := range sessions {
		var err error
		if sessions[i], err = s.open(); err != nil {
			t.Fatal(err)
		}
	}
	s.client.CloseIdleConnections()
	after := measure()
	t.Logf("%d idle sessions: %.2f KiB heap and %.2f goroutines each (the gateway and the test's client, one process; the upstream's own session state is in its own process)",
		idleSessions, float64(int64(after.heap)-int64(before.heap))/idleSessions/1024, float64(after.goroutines-before.goroutines)/idleSessions)
	for _, session := range sessions {
		if err := s.close(session); err != nil {
			t.Fatal(err)
		}
	}
}

// measureHeldCalls holds calls for approval, each on its own connection,
// measures what the process holds per held call, and denies them. The
// calls come from as many sessions as a caller's bound on pending
// approvals asks (approval.MaxPendingPerCaller a session).
func (s *soak) measureHeldCalls(t *testing.T) {
	t.Helper()
	held := make(chan string, heldCalls)
	s.onApproval(func(id string) { held <- id })
	sessions := make([]string, (heldCalls+approval.MaxPendingPerCaller-1)/approval.MaxPendingPerCaller)
	for i := range sessions {
		session, err := s.open()
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = session
	}
	s.client.CloseIdleConnections()
	before := measure()
	host := strings.TrimPrefix(strings.TrimSuffix(s.url, "/mcp"), "http://")
	conns := make([]net.Conn, heldCalls)
	for i := range conns {
		conns[i] = s.holdOn(t, host, sessions[i/approval.MaxPendingPerCaller], i)
	}
	ids := make([]string, 0, heldCalls)
	for range heldCalls {
		select {
		case id := <-held:
			ids = append(ids, id)
		case <-time.After(time.Minute):
			t.Fatalf("%d of %d calls held", len(ids), heldCalls)
		}
	}
	after := measure()
	t.Logf("%d held calls: %.2f KiB heap and %.2f goroutines each (the gateway and the test's raw connections, one process)",
		heldCalls, float64(int64(after.heap)-int64(before.heap))/heldCalls/1024, float64(after.goroutines-before.goroutines)/heldCalls)
	s.onApproval(func(id string) { s.answer(t, id, []string{"approve", "deny"}[rand.IntN(2)]) })
	for _, id := range ids {
		s.answer(t, id, "deny")
	}
	for i, conn := range conns {
		if err := conn.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("held call %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if !bytes.Contains(body, []byte("Denied")) {
			t.Fatalf("held call %d answered %s, want a denial", i, body)
		}
	}
	for _, session := range sessions {
		if err := s.close(session); err != nil {
			t.Fatal(err)
		}
	}
}

// trafficCounts are what the mixed traffic did.
type trafficCounts struct {
	calls, lists, held, sessions, reloads atomic.Int64
}

// String sums the counts up.
func (c *trafficCounts) String() string {
	return fmt.Sprintf("%d calls, %d lists, %d calls held and approved or denied, %d sessions opened and closed, %d policy reloads",
		c.calls.Load(), c.lists.Load(), c.held.Load(), c.sessions.Load(), c.reloads.Load())
}

// mixedTraffic runs clients that each open a session, make calls and lists
// and calls that are held (and approved or denied at random by the
// approver), and close it, over and over, while the policy is rewritten
// every few seconds.
func (s *soak) mixedTraffic(t *testing.T, d time.Duration) *trafficCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var counts trafficCounts
	var wg sync.WaitGroup
	wg.Go(func() {
		ticker := time.NewTicker(5 * time.Second)
		defer ticker.Stop()
		for generation := 1; ; generation++ {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				writePolicy(t, s.policy, generation)
				counts.reloads.Add(1)
			}
		}
	})
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := s.session(&counts); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return &counts
}

// session opens a session, makes calls and lists and calls that are held,
// and closes it.
func (s *soak) session(counts *trafficCounts) error {
	session, err := s.open()
	if err != nil {
		return err
	}
	counts.sessions.Add(1)
	for range 1 + rand.IntN(20) {
		switch n := rand.IntN(20); {
		case n == 0:
			err = s.call(session, "create_issue", false)
			counts.held.Add(1)
		case n < 4:
			err = s.list(session)
			counts.lists.Add(1)
		default:
			err = s.call(session, "echo", true)
			counts.calls.Add(1)
		}
		if err != nil {
			return err
		}
	}
	return s.close(session)
}

// post sends one JSON-RPC message and returns the response and its body.
func (s *soak) post(session, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, s.url, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: %w", body, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer to %s: %w", body, err)
	}
	return resp, raw, nil
}

// open opens a session and returns its id.
func (s *soak) open() (string, error) {
	resp, body, err := s.post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"soak","version":"1"}}}`)
	if err != nil {
		return "", err
	}
	session := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || session == "" {
		return "", fmt.Errorf("initialize: status %d, session %q, body %s", resp.StatusCode, session, body)
	}
	resp, body, err = s.post(session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if err == nil && resp.StatusCode != http.StatusAccepted {
		err = fmt.Errorf("notifications/initialized: status %d, body %s", resp.StatusCode, body)
	}
	return session, err
}

// close ends a session.
func (s *soak) close(session string) error {
	req, err := http.NewRequest(http.MethodDelete, s.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("DELETE: %w", err)
	}
	resp.Body.Close()
	return nil
}

// call calls a tool; an echo must run, a held call must run (approved) or
// be denied.
func (s *soak) call(session, tool string, wantRun bool) error {
	n := s.calls.Add(1)
	resp, body, err := s.post(session, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"text":"call %d"}}}`, n, tool, n))
	if err != nil {
		return err
	}
	ran := bytes.Contains(body, []byte(tool+":call"))
	if resp.StatusCode != http.StatusOK || wantRun && !ran || !ran && !bytes.Contains(body, []byte("Denied")) {
		return fmt.Errorf("calling %s: status %d, body %s", tool, resp.StatusCode, body)
	}
	return nil
}

// list lists the tools.
func (s *soak) list(session string) error {
	resp, body, err := s.post(session, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if err == nil && (resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"echo"`))) {
		err = fmt.Errorf("tools/list: status %d, body %s", resp.StatusCode, body)
	}
	return err
}

// holdOn sends call i of create_issue on a connection of its own and
// leaves the answer unread.
func (s *soak) holdOn(t *testing.T, host, session string, i int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	// Each with an id of its own: ids are unique in a session (MCP), and
	// the gateway refuses one still awaiting its answer.
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"held %d"}}}`, i+1, i)
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
		"MCP-Protocol-Version: 2025-06-18\r\nMcp-Session-Id: %s\r\nContent-Length: %d\r\n\r\n%s", host, session, len(body), body)
	return conn
}

// answer sends the approver's signed decision on an approval.
func (s *soak) answer(t *testing.T, id, decision string) {
	body, err := json.Marshal(map[string]string{"id": id, "decision": decision, "approver": "soak", "reason": "soak"})
	if err != nil {
		t.Error(err)
		return
	}
	req, err := http.NewRequest(http.MethodPost, s.callbacks+"/"+id, bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	s.decision.SetHeaders(req.Header, fmt.Sprintf("msg_%016x", rand.Uint64()), time.Now(), body)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Errorf("deciding %s: %v", id, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("deciding %s: status %d", id, resp.StatusCode)
	}
}

// usage is what the process holds: heap in use after a collection, and
// goroutines.
type usage struct {
	heap       uint64
	goroutines int
}

// String reads the usage out.
func (u usage) String() string {
	return fmt.Sprintf("heap in use %.1f MiB, %d goroutines", float64(u.heap)/(1<<20), u.goroutines)
}

// measure collects garbage and measures.
func measure() usage {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return usage{heap: m.HeapInuse, goroutines: runtime.NumGoroutine()}
}

// settle measures until the goroutines are back to the baseline's, or a
// minute has passed (held calls end, connections close, the approval
// service's sweeps run).
func settle(base usage) usage {
	deadline := time.Now().Add(time.Minute)
	for {
		u := measure()
		if u.goroutines <= base.goroutines || time.Now().After(deadline) {
			return u
		}
		time.Sleep(time.Second)
	}
}

// startUpstream runs the upstream in a process of its own (this test
// binary, see TestMain), so that its memory is not the gateway's, and
// returns its address.
func startUpstream(t *testing.T) string {
	t.Helper()
	return childtest.Start(t, upstreamEnv).Line
}

// serveUpstream serves a go-sdk MCP server with sessions, answering in
// JSON, with echo (read-only) and create_issue (a write), on a free
// loopback port; writes its address on standard output, and serves until
// standard input closes.
func serveUpstream() {
	server := mcp.NewServer(&mcp.Implementation{Name: "soak-upstream", Version: "1"}, nil)
	type input struct {
		Text string `json:"text"`
	}
	for _, tool := range []*mcp.Tool{
		{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		{Name: "create_issue", Annotations: &mcp.ToolAnnotations{DestructiveHint: new(false)}},
	} {
		mcp.AddTool(server, tool, func(_ context.Context, _ *mcp.CallToolRequest, in input) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: tool.Name + ":" + in.Text}}}, nil, nil
		})
	}
	childtest.ServeHTTP("soak upstream", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{JSONResponse: true}))
}

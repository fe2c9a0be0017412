package stdio_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/stdio"
	"github.com/mcpgate/mcpgate/internal/stdiotest"
)

// stateless is a request of MCP 2026-07-28, without a session: its _meta
// carries the revision and the client's capabilities.
func stateless(id int, method, params string) string {
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"progressToken":"t` +
		strconv.Itoa(id) + `"}`
	if params != "" {
		meta += "," + params
	}
	return `{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"` + method + `","params":{` + meta + `}}`
}

// resultOf decodes the result of a JSON-RPC response.
func resultOf(t *testing.T, body string, into any) {
	t.Helper()
	var response struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &response); err != nil || response.Result == nil {
		t.Fatalf("not a JSON-RPC result: %s (%v)", body, err)
	}
	if err := json.Unmarshal(response.Result, into); err != nil {
		t.Fatalf("reading the result %s: %v", response.Result, err)
	}
}

// toolText returns the text of a tools/call result.
func toolText(t *testing.T, body string) string {
	t.Helper()
	var result struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	resultOf(t, body, &result)
	if len(result.Content) != 1 {
		t.Fatalf("the result %s has %d contents, want 1", body, len(result.Content))
	}
	return result.Content[0].Text
}

// TestStatelessPool serves stateless requests with one pooled process:
// server/discover from the process's own answer to initialize, calls on
// the warm process, a 503 while it is busy, and a new process after a
// client left mid-call.
func TestStatelessPool(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{StatelessPool: 1, InitTimeout: 500 * time.Millisecond}, nil)
	version := []string{"Mcp-Protocol-Version", "2026-07-28"}

	status, _, body := post(t, url, stateless(1, "server/discover", ""), version...)
	var discovered struct {
		SupportedVersions []string        `json:"supportedVersions"`
		Capabilities      map[string]any  `json:"capabilities"`
		Meta              map[string]any  `json:"_meta"`
		Instructions      json.RawMessage `json:"instructions"`
	}
	resultOf(t, body, &discovered)
	info, _ := discovered.Meta["io.modelcontextprotocol/serverInfo"].(map[string]any)
	if status != http.StatusOK || len(discovered.SupportedVersions) == 0 || discovered.SupportedVersions[0] != "2026-07-28" ||
		discovered.Capabilities["tools"] == nil || info["name"] != "stdiotest" {
		t.Errorf("server/discover: %d %s, want the stateless revision first, the server's capabilities and its info", status, body)
	}

	status, header, body := post(t, url, stateless(2, "tools/call", `"name":"echo","arguments":{"text":"x"}`), version...)
	if status != http.StatusOK || header.Get("Content-Type") != "application/json" || toolText(t, body) != "echo:x" {
		t.Errorf("echo: %d %s %s, want a JSON answer echo:x", status, header.Get("Content-Type"), body)
	}
	_, _, first := post(t, url, stateless(3, "tools/call", `"name":"pid"`), version...)
	_, _, second := post(t, url, stateless(4, "tools/call", `"name":"pid"`), version...)
	pid, _ := strconv.Atoi(toolText(t, first))
	if toolText(t, second) != toolText(t, first) {
		t.Errorf("two calls ran in processes %s and %s, want the warm one reused", first, second)
	}

	// Hold the only process with a call that blocks until its client
	// leaves.
	ctx, leave := context.WithCancel(t.Context())
	defer leave()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(stateless(5, "tools/call", `"name":"block"`)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("calling block: %v", err)
	}
	defer resp.Body.Close()
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("block answered %q %q (%v), want its progress on an event stream", resp.Header.Get("Content-Type"), line, err)
	}

	status, header, body = post(t, url, stateless(6, "tools/call", `"name":"echo"`), version...)
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") == "" || !strings.Contains(body, "stateless_pool") {
		t.Errorf("a call while the pool is busy: %d (Retry-After %q) %s, want 503 with Retry-After", status, header.Get("Retry-After"), body)
	}

	leave()
	stdiotest.WaitGone(t, pid)
	_, _, body = post(t, url, stateless(7, "tools/call", `"name":"pid"`), version...)
	if fresh := toolText(t, body); fresh == strconv.Itoa(pid) {
		t.Errorf("after its client left mid-call, the process %d served again; want it replaced", pid)
	}
}

// TestStatelessPoolKeepsClientsApart: what a pooled process sends about a
// stateless client's request after answering it (progress on that
// request's token, as work outliving its answer does) never reaches the
// next client the process serves, even one whose request has the same id
// and progress token.
func TestStatelessPoolKeepsClientsApart(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{StatelessPool: 1, InitTimeout: 5 * time.Second}, nil)
	version := []string{"Mcp-Protocol-Version", "2026-07-28"}
	if status, _, body := post(t, url, stateless(1, "tools/call", `"name":"linger","arguments":{"text":"A","steps":10}`), version...); status != http.StatusOK || toolText(t, body) != "lingering" {
		t.Fatalf("client A: %d %s", status, body)
	}
	// The same id, and so the same progress token: SDK clients count
	// both from 0, each on its own.
	status, _, body := post(t, url, stateless(1, "tools/call", `"name":"wait","arguments":{"steps":50}`), version...)
	if status != http.StatusOK || !strings.Contains(body, "waited") {
		t.Fatalf("client B: %d %s", status, body)
	}
	if strings.Contains(body, "late:A") {
		t.Errorf("client B's reply carries what the process sent about client A's request:\n%s", body)
	}
}

// TestStatelessPoolDropsRepeatedAnswers: a pooled process that answers a
// request twice (or late, after its client was answered) never gives the
// next client, whose request has the same id, the earlier client's
// answer in place of its own.
func TestStatelessPoolDropsRepeatedAnswers(t *testing.T) {
	url := testServer(t, stdiotest.ModeRepeat, stdio.Config{StatelessPool: 1, InitTimeout: 5 * time.Second}, nil)
	version := []string{"Mcp-Protocol-Version", "2026-07-28"}
	if status, _, body := post(t, url, stateless(1, "tools/call", `"name":"echo","arguments":{"text":"A"}`), version...); status != http.StatusOK || toolText(t, body) != "echo:A" {
		t.Fatalf("client A: %d %s, want echo:A", status, body)
	}
	// The process writes its answer to A again just before B's, under
	// the id it was given for A's request.
	status, _, body := post(t, url, stateless(1, "tools/call", `"name":"echo","arguments":{"text":"B"}`), version...)
	if status != http.StatusOK || toolText(t, body) != "echo:B" {
		t.Errorf("client B: %d %s, want its own answer echo:B, with its id", status, body)
	}
	if !strings.Contains(body, `"id":1`) {
		t.Errorf("client B's answer %s does not carry its id 1", body)
	}
}

// TestStatelessPoolKeepsStderrToTheLog: a pooled process that dies while
// serving a stateless client is reported to that client without the last
// line it wrote to stderr, which may be about the client it served before.
func TestStatelessPoolKeepsStderrToTheLog(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{StatelessPool: 1, InitTimeout: 5 * time.Second}, nil)
	version := []string{"Mcp-Protocol-Version", "2026-07-28"}
	// Client A: the server writes something of A's request to stderr.
	if status, _, body := post(t, url, stateless(1, "tools/call", `"name":"shout","arguments":{"text":"A-api-key=sk-live-123 ","steps":1}`), version...); status != http.StatusOK {
		t.Fatalf("client A: %d %s", status, body)
	}
	_, _, body := post(t, url, stateless(2, "tools/call", `"name":"pid"`), version...)
	pid, err := strconv.Atoi(toolText(t, body))
	if err != nil {
		t.Fatalf("the pid: %s", body)
	}
	// Client B's call is in progress, or about to be, when the process
	// dies (killed by the kernel for its memory, say).
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}()
	status, _, body := post(t, url, stateless(1, "tools/call", `"name":"wait","arguments":{"steps":300}`), version...)
	if strings.Contains(body, "sk-live-123") || !strings.Contains(body, "the MCP server exited") {
		t.Errorf("client B: %d %s; want told the server exited, without what it wrote to stderr for client A", status, body)
	}
}

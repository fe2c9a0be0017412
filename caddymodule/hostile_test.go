package caddymodule_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// post sends one raw POST to the gateway and returns the status and body.
func post(t *testing.T, url string, header http.Header, body string) (int, []byte) {
	t.Helper()
	return clienttest.Post(t, url, header, strings.NewReader(body))
}

// initializeSession opens a session through the gateway with a raw
// initialize and returns the session id the client is given.
func initializeSession(t *testing.T, gateway string) string {
	t.Helper()
	return initializeDeclaring(t, gateway, "2025-06-18", `{}`)
}

// initializeDeclaring is initializeSession under revision, the client
// declaring capabilities (a JSON object).
func initializeDeclaring(t *testing.T, gateway, revision, capabilities string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gateway, strings.NewReader(
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+revision+`","capabilities":`+capabilities+`,"clientInfo":{"name":"test","version":"1"}}}`))
	if err != nil {
		t.Fatalf("building initialize: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	session := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || session == "" {
		t.Fatalf("initialize: status %d, session %q; want 200 with a session", resp.StatusCode, session)
	}
	return session
}

const callEcho = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}}`

// TestHostileInputNeverForwarded sends every encoding trick that could make
// the gateway and the upstream read one message two ways; each must be
// refused with a clear JSON-RPC error, and the upstream must see nothing.
func TestHostileInputNeverForwarded(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: "policy testdata/policy\n\t\tmax_body 2KB"})

	deep := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":` +
		strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}}`
	v0618 := http.Header{mcphttp.HeaderProtocolVersion: {"2025-06-18"}}
	v0728 := func(method, name string) http.Header {
		return http.Header{mcphttp.HeaderProtocolVersion: {"2026-07-28"}, mcphttp.HeaderMethod: {method}, mcphttp.HeaderName: {name}}
	}
	tests := []struct {
		name       string
		header     http.Header
		body       string
		wantStatus int
		wantCode   int
		wantText   string
	}{
		{"duplicate method", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping","params":{"name":"echo"}}`, 400, mcpmsg.CodeInvalidRequest, "duplicate"},
		{"duplicate tool name", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_issue"}}`, 400, mcpmsg.CodeInvalidRequest, "duplicate"},
		{"duplicate deep in arguments", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":[{"b":{"c":1,"c":2}}]}}}`, 400, mcpmsg.CodeInvalidRequest, "duplicate"},
		{"case variant of method", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","Method":"ping","params":{"name":"echo"}}`, 400, mcpmsg.CodeInvalidRequest, "Method"},
		{"case variant instead of method", nil, `{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"echo"}}`, 400, mcpmsg.CodeInvalidRequest, "METHOD"},
		{"case variant of params", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"Params":{"name":"delete_issue"}}`, 400, mcpmsg.CodeInvalidRequest, "Params"},
		{"id with a fraction", nil, `{"jsonrpc":"2.0","id":1.0,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}}`, 400, mcpmsg.CodeInvalidRequest, "JSON readers may read differently"},
		{"id beyond 2^53", nil, `{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}}`, 400, mcpmsg.CodeInvalidRequest, "JSON readers may read differently"},
		{"cancelled request id with an exponent", nil, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1e0}}`, 400, mcpmsg.CodeInvalidRequest, "requestId"},
		{"argument names an upstream may merge", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a","Text":"b"}}}`, 400, mcpmsg.CodeInvalidParams, "may read them as one"},
		{"case variant of tool name", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"delete_issue"}}`, 400, mcpmsg.CodeInvalidRequest, "NAME"},
		{"invalid UTF-8", nil, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\xff\"}}", 400, mcpmsg.CodeParseError, "UTF-8"},
		{"lone high surrogate", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo\ud800"}}`, 400, mcpmsg.CodeParseError, ""},
		{"lone low surrogate", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"t":"\udc00"}}}`, 400, mcpmsg.CodeParseError, ""},
		{"params array", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["echo"]}`, 400, mcpmsg.CodeInvalidRequest, "params"},
		{"params string", nil, `{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}`, 400, mcpmsg.CodeInvalidRequest, "params"},
		{"params null", nil, `{"jsonrpc":"2.0","id":1,"method":"ping","params":null}`, 400, mcpmsg.CodeInvalidRequest, "params"},
		{"nesting too deep", nil, deep, 400, mcpmsg.CodeInvalidRequest, "deep"},
		{"body over max_body", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("a", 3000) + `"}}}`, 413, mcpmsg.CodeInvalidRequest, "max_body"},
		{"second message after the first", nil, callEcho + `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_issue"}}`, 400, mcpmsg.CodeParseError, ""},
		{"trailing garbage", nil, callEcho + ` x`, 400, mcpmsg.CodeParseError, ""},
		{"not JSON", nil, `tools/call delete_issue`, 400, mcpmsg.CodeParseError, ""},
		{"empty body", nil, ``, 400, mcpmsg.CodeParseError, ""},
		{"content type text/plain", http.Header{"Content-Type": {"text/plain"}}, callEcho, 400, mcpmsg.CodeInvalidRequest, "content type"},
		{"content type missing", http.Header{"Content-Type": {""}}, callEcho, 400, mcpmsg.CodeInvalidRequest, "content type"},
		{"charset other than UTF-8", http.Header{"Content-Type": {"application/json; charset=utf-16"}}, callEcho, 400, mcpmsg.CodeInvalidRequest, "charset"},
		{"gzip encoding", http.Header{"Content-Encoding": {"gzip"}}, callEcho, 400, mcpmsg.CodeInvalidRequest, "encoding"},
		{"jsonrpc 1.0", nil, `{"jsonrpc":"1.0","id":1,"method":"ping"}`, 400, mcpmsg.CodeInvalidRequest, "jsonrpc"},
		{"null id on a request", nil, `{"jsonrpc":"2.0","id":null,"method":"ping"}`, 400, mcpmsg.CodeInvalidRequest, "id"},
		{"tool name not a string", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["delete_issue"]}}`, 400, mcpmsg.CodeInvalidRequest, "name"},
		{"batch under 2025-06-18", v0618, `[` + callEcho + `]`, 400, mcpmsg.CodeInvalidRequest, "batch"},
		{"batch under 2025-11-25", http.Header{mcphttp.HeaderProtocolVersion: {"2025-11-25"}}, `[` + callEcho + `]`, 400, mcpmsg.CodeInvalidRequest, "batch"},
		{"unsupported protocol version", http.Header{mcphttp.HeaderProtocolVersion: {"1999-01-01"}}, callEcho, 400, mcpmsg.CodeInvalidRequest, "unsupported"},
		{"Mcp-Method disagrees with body", v0728("ping", "echo"), callEcho, 400, mcphttp.CodeHeaderMismatch, "Mcp-Method"},
		{"Mcp-Name disagrees with body", v0728("tools/call", "echo"), strings.Replace(callEcho, `"echo"`, `"delete_issue"`, 1), 400, mcphttp.CodeHeaderMismatch, "Mcp-Name"},
		{"Mcp-Name missing under 2026-07-28", v0728("tools/call", ""), callEcho, 400, mcphttp.CodeHeaderMismatch, "Mcp-Name"},
		{"Mcp-Method missing under 2026-07-28", v0728("", "echo"), callEcho, 400, mcphttp.CodeHeaderMismatch, "Mcp-Method"},
		{"Mcp-Name disagrees under an older revision", http.Header{mcphttp.HeaderName: {"echo"}}, strings.Replace(callEcho, `"echo"`, `"delete_issue"`, 1), 400, mcphttp.CodeHeaderMismatch, "Mcp-Name"},
		{"Mcp-Method given twice", http.Header{mcphttp.HeaderProtocolVersion: {"2026-07-28"}, mcphttp.HeaderMethod: {"tools/call", "ping"}, mcphttp.HeaderName: {"echo"}}, callEcho, 400, mcphttp.CodeHeaderMismatch, "given 2 times"},
		{"foreign Origin", http.Header{"Origin": {"http://evil.example"}}, callEcho, 403, mcpmsg.CodeInvalidRequest, "origin"},
		{"rebinding Origin with a loopback port", http.Header{"Origin": {"http://attacker.example:8080"}}, callEcho, 403, mcpmsg.CodeInvalidRequest, "origin"},
		{"escaped name of a blocked tool", nil, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"delete\u005fissue"}}`, 200, 0, "deleting issues is not allowed here"},
		{"escaped case trick", nil, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","n\u0041me":"delete_issue"}}`, 400, mcpmsg.CodeInvalidRequest, "nAme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.ReceivedFromClients())
			status, body := post(t, gateway, tt.header, tt.body)
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %s", status, tt.wantStatus, body)
			}
			var resp jsonRPCError
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatalf("response is not JSON-RPC: %v; body %s", err, body)
			}
			switch {
			case tt.wantCode == 0:
				if resp.Result == nil || !strings.Contains(string(resp.Result), tt.wantText) || !strings.Contains(string(resp.Result), `"isError":true`) {
					t.Errorf("want an isError tool result with %q, got %s", tt.wantText, body)
				}
			case resp.Error == nil:
				t.Errorf("want JSON-RPC error %d, got %s", tt.wantCode, body)
			case resp.Error.Code != tt.wantCode || !strings.Contains(strings.ToLower(resp.Error.Message), strings.ToLower(tt.wantText)):
				t.Errorf("error = %d %q, want %d containing %q", resp.Error.Code, resp.Error.Message, tt.wantCode, tt.wantText)
			}
			if got := up.ReceivedFromClients()[before:]; len(got) != 0 {
				t.Errorf("upstream received %d requests, want none; first body: %s", len(got), got[0].Body)
			}
		})
	}

	t.Run("a clean call still runs", func(t *testing.T) {
		status, body := post(t, gateway, nil, callEcho)
		if status != 200 || !strings.Contains(string(body), "echo:a") {
			t.Errorf("clean call: status %d, body %s; want 200 with echo:a", status, body)
		}
	})
}

// sseMessages returns the data of each event in an SSE body, or the body
// itself when it is plain JSON.
func sseMessages(t *testing.T, body []byte) []json.RawMessage {
	t.Helper()
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && (trimmed[0] == '[' || trimmed[0] == '{') {
		var batch []json.RawMessage
		if trimmed[0] == '{' {
			return []json.RawMessage{trimmed}
		}
		if err := json.Unmarshal(trimmed, &batch); err != nil {
			t.Fatalf("reply is not a JSON array: %v; %s", err, body)
		}
		return batch
	}
	var out []json.RawMessage
	scanner := bufio.NewScanner(bytes.NewReader(body))
	for scanner.Scan() {
		if data, ok := strings.CutPrefix(scanner.Text(), "data: "); ok {
			out = append(out, json.RawMessage(data))
		}
	}
	return out
}

// TestBatch20250326 checks that in a 2025-03-26 batch every element is
// decided, refused elements never reach the upstream, allowed ones run,
// and the client gets one reply holding every answer.
func TestBatch20250326(t *testing.T) {
	v0326 := http.Header{mcphttp.HeaderProtocolVersion: {"2025-03-26"}}
	call := func(id, tool string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"text":"b` + id + `"}}}`
	}
	tests := []struct {
		name    string
		mode    upstreamtest.Mode
		body    string
		wantIDs map[string]string // id -> text the answer must hold
		wantUp  bool              // whether anything reaches the upstream
	}{
		{"mixed, JSON reply", upstreamtest.StatelessJSON,
			`[` + call("1", "echo") + `,` + call("2", "delete_issue") + `,` + call("3", "echo") + `]`,
			map[string]string{"1": "echo:b1", "2": "deleting issues is not allowed here", "3": "echo:b3"}, true},
		{"mixed, SSE reply", upstreamtest.StatelessSSE,
			`[` + call("1", "delete_issue") + `,` + call("2", "echo") + `]`,
			map[string]string{"1": "deleting issues is not allowed here", "2": "echo:b2"}, true},
		{"all refused", upstreamtest.StatelessJSON,
			`[` + call("1", "delete_issue") + `,` + call("2", "create_issue") + `]`,
			map[string]string{"1": "deleting issues", "2": "needs approval"}, false},
		{"refused request beside an allowed notification", upstreamtest.StatelessJSON,
			`[` + call("1", "delete_issue") + `,{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
			map[string]string{"1": "deleting issues"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, tt.mode)
			gateway := startGateway(t, up.URL, gatewayOptions{})
			status, body := post(t, gateway, v0326, tt.body)
			if status != 200 {
				t.Fatalf("status = %d, want 200; body %s", status, body)
			}
			answers := map[string]string{}
			for _, msg := range sseMessages(t, body) {
				var m struct {
					ID json.RawMessage `json:"id"`
				}
				if err := json.Unmarshal(msg, &m); err != nil {
					t.Fatalf("answer is not JSON: %v; %s", err, msg)
				}
				answers[string(m.ID)] = string(msg)
			}
			for id, want := range tt.wantIDs {
				if !strings.Contains(answers[id], want) {
					t.Errorf("answer for id %s = %s, want it to hold %q (whole reply %s)", id, answers[id], want, body)
				}
			}
			if len(answers) != len(tt.wantIDs) {
				t.Errorf("reply holds %d answers, want %d: %s", len(answers), len(tt.wantIDs), body)
			}
			for _, refused := range []string{"delete_issue", "create_issue"} {
				if up.SawBodyContaining(refused) {
					t.Errorf("upstream received the refused %s", refused)
				}
			}
			if got := len(up.ReceivedFromClients()) > 0; got != tt.wantUp {
				t.Errorf("upstream received something: %v, want %v", got, tt.wantUp)
			}
		})
	}
}

// TestBodiesOnlyOnPost checks that a body sent with a method other than
// POST, which the gateway does not decide, never reaches the upstream.
func TestBodiesOnlyOnPost(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{})
	for _, method := range []string{http.MethodGet, http.MethodDelete, http.MethodOptions} {
		t.Run(method, func(t *testing.T) {
			before := len(up.Received())
			req, _ := http.NewRequest(method, gateway, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_issue"}}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s with a body: status %d, want 400", method, resp.StatusCode)
			}
			if len(up.Received()) != before {
				t.Errorf("%s with a body reached the upstream", method)
			}
		})
	}
}

// TestTrailersNeverForwarded: header fields a client sends after the body
// (trailers) never reach the upstream, which might merge them into the
// request's headers (uvicorn with httptools does): an Mcp-Session-Id,
// Authorization or Mcp-Method there would be one the gateway never read.
func TestTrailersNeverForwarded(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Trailer.Clone())
		if declared := r.Header.Values("Trailer"); len(declared) > 0 {
			seen = append(seen, http.Header{"Trailer": declared})
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	gateway := startGateway(t, up.URL, gatewayOptions{})
	req, _ := http.NewRequest(http.MethodPost, gateway, io.NopCloser(strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)))
	req.ContentLength = -1 // chunked, which trailers need
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Trailer = http.Header{"Mcp-Session-Id": {"the-upstreams-own-id"}, "Authorization": {"Bearer stolen"}, "Mcp-Method": {"tools/call"}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the ping: status %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range seen {
		for name := range h {
			t.Errorf("the upstream received the trailer (or its declaration) %s: %v", name, h[name])
		}
	}
}

// TestMaxValues: a body holding more JSON values than max_values is
// refused before it is decoded whole, and reaches nothing; one within it
// passes.
func TestMaxValues(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: "policy testdata/policy\n\t\tserver test\n\t\tmax_values 12"})
	h := http.Header{"Mcp-Protocol-Version": {"2025-06-18"}}
	within := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}` // 9 values
	past := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x","more":[1,2,3,4]}}}`
	if status, body := post(t, gateway, h, within); status != http.StatusOK || strings.Contains(string(body), "error") {
		t.Errorf("within max_values: HTTP %d %s", status, body)
	}
	status, body := post(t, gateway, h, past)
	if status != http.StatusBadRequest || !strings.Contains(string(body), "more than 12 JSON values") {
		t.Errorf("past max_values: HTTP %d %s; want 400 naming the limit", status, body)
	}
	if n := up.CallCount("echo"); n != 1 {
		t.Errorf("the upstream ran echo %d times, want once", n)
	}
}

// TestReplyValuesBounded: a reply may hold 16 times max_values JSON
// values: one within passes to a real client, one past it is cut, and the
// client gets an error naming why in place of its answer, not a stream
// that ends without one.
func TestReplyValuesBounded(t *testing.T) {
	u := upstreamtest.Unstarted("big", nil, defaultTools)
	mcp.AddTool(u.Server, &mcp.Tool{Name: "rows", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, _ *mcp.CallToolRequest, in struct{ N int }) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "rows"}}, StructuredContent: map[string]any{"rows": make([]int, in.N)}}, nil, nil
		})
	up := u.Start(t, upstreamtest.StatefulSSE.Handler(u.Server))
	gateway := startGateway(t, up.URL, gatewayOptions{policy: "server test\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t}\n\t\tmax_values 100"})
	session := connect(t, gateway, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "rows", Arguments: map[string]any{"N": 1000}}); err != nil || res.IsError {
		t.Errorf("a result of 1,000 values, within 16 x 100: %v, %v", res, err)
	}
	_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "rows", Arguments: map[string]any{"N": 2000}})
	if err == nil || !strings.Contains(err.Error(), "the gateway cut the upstream's reply before its answer") {
		t.Errorf("a result of 2,000 values, past 16 x 100: %v; want an error saying the gateway cut the reply", err)
	}
}

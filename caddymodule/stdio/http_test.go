package stdio_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/stdio"
	"github.com/mcpgate/mcpgate/internal/stdiotest"
	"github.com/mcpgate/mcpgate/internal/testwait"
)

// post sends a JSON-RPC body as an MCP client does, with extra headers
// (name, value pairs), and returns the status and the body.
func post(t *testing.T, url, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	resp, err := postRequest(t.Context(), t, url, body, headers...)
	if err != nil {
		t.Fatalf("posting %s: %v", body, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(answer)
}

// postRequest posts body as an MCP client does, with extra headers (name,
// value pairs), within ctx, and returns the response unread.
func postRequest(ctx context.Context, t *testing.T, url, body string, headers ...string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return http.DefaultClient.Do(req)
}

// initializedSession opens a 2025-06-18 session with raw posts, as a
// client does (initialize, then notifications/initialized), and returns
// the headers (name, value pairs) of a request in it.
func initializedSession(t *testing.T, url string) []string {
	t.Helper()
	return initializedSessionAt(t, url, "2025-06-18")
}

// initializedSessionAt is initializedSession under the given revision.
func initializedSessionAt(t *testing.T, url, version string) []string {
	t.Helper()
	status, header, body := post(t, url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	session := header.Get("Mcp-Session-Id")
	if status != http.StatusOK || session == "" {
		t.Fatalf("initialize: %d %s", status, body)
	}
	in := []string{"Mcp-Session-Id", session, "Mcp-Protocol-Version", version}
	post(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, in...)
	return in
}

// jsonrpcError is the error member of a JSON-RPC answer.
type jsonrpcError struct {
	ID    any `json:"id"`
	Error *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// TestRefusals checks what the gateway answers itself, before any
// process starts or reaches a session.
func TestRefusals(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	tests := []struct {
		name    string
		method  string
		body    string
		headers []string
		status  int
		code    int
	}{
		{"no session", http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil, http.StatusBadRequest, -32600},
		{"unknown session", http.MethodPost, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, []string{"Mcp-Session-Id", "nope"}, http.StatusNotFound, -32001},
		{"GET without a session", http.MethodGet, "", nil, http.StatusBadRequest, -32600},
		{"DELETE of an unknown session", http.MethodDelete, "", []string{"Mcp-Session-Id", "nope"}, http.StatusNotFound, -32001},
		{"PUT", http.MethodPut, "", nil, http.StatusMethodNotAllowed, -32600},
		{"not JSON", http.MethodPost, `{"jsonrpc":`, nil, http.StatusBadRequest, -32700},
		{"an empty batch", http.MethodPost, `[]`, nil, http.StatusBadRequest, -32600},
		{"a fractional id", http.MethodPost, `{"jsonrpc":"2.0","id":1.5,"method":"initialize","params":{}}`, nil, http.StatusBadRequest, -32600},
		{"an id in exponent form", http.MethodPost, `{"jsonrpc":"2.0","id":1e3,"method":"initialize","params":{}}`, nil, http.StatusBadRequest, -32600},
		{"an id past 2^53", http.MethodPost, `{"jsonrpc":"2.0","id":9007199254740993,"method":"initialize","params":{}}`, nil, http.StatusBadRequest, -32600},
		{"a duplicate member", http.MethodPost, `{"jsonrpc":"2.0","id":1,"id":2,"method":"initialize","params":{}}`, nil, http.StatusBadRequest, -32600},
		{"a case variant of a member", http.MethodPost, `{"jsonrpc":"2.0","id":9,"Method":"tools/call","params":{"name":"pid"}}`, nil, http.StatusBadRequest, -32600},
		{"a response with neither result nor error", http.MethodPost, `{"jsonrpc":"2.0","id":9}`, nil, http.StatusBadRequest, -32600},
		{"an id of minus zero", http.MethodPost, `{"jsonrpc":"2.0","id":-0,"method":"initialize","params":{}}`, nil, http.StatusBadRequest, -32600},
		{"not JSON-RPC 2.0", http.MethodPost, `{"jsonrpc":"1.0","id":1,"method":"initialize","params":{}}`, nil, http.StatusBadRequest, -32600},
		{"stateless, with sessions only", http.MethodPost,
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			[]string{"Mcp-Protocol-Version", "2026-07-28"}, http.StatusBadRequest, -32022},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, url, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			for i := 0; i+1 < len(tt.headers); i += 2 {
				req.Header.Set(tt.headers[i], tt.headers[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var answer jsonrpcError
			if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || answer.Error == nil {
				t.Fatalf("%d with no JSON-RPC error (%v)", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.status || answer.Error.Code != tt.code {
				t.Errorf("%d with code %d (%s), want %d with code %d", resp.StatusCode, answer.Error.Code, answer.Error.Message, tt.status, tt.code)
			}
		})
	}
}

// TestSessionsOnlyNamesTheirRevisions: without a stateless pool, a
// stateless request is told which revisions the sessions speak, so that a
// client can fall back (the go-sdk client does: TestSessionLifecycle).
func TestSessionsOnlyNamesTheirRevisions(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	_, _, body := post(t, url, `{"jsonrpc":"2.0","id":"d","method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
		"Mcp-Protocol-Version", "2026-07-28")
	var answer jsonrpcError
	if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.Error == nil {
		t.Fatalf("server/discover answered %s", body)
	}
	var data struct {
		Supported []string `json:"supported"`
		Requested string   `json:"requested"`
	}
	if err := json.Unmarshal(answer.Error.Data, &data); err != nil || data.Requested != "2026-07-28" || len(data.Supported) == 0 || data.Supported[0] != "2025-11-25" {
		t.Errorf("the error's data is %s, want the session revisions, newest first, and the one requested", answer.Error.Data)
	}
}

// TestCancelledCallAnsweredAsStream: a POST whose only request the client
// cancels, before the server said anything, ends as an empty event stream
// (Streamable HTTP answers a POST holding requests with JSON or a
// stream), or with the server's answer if it gives one, never an empty
// 200 without a content type.
func TestCancelledCallAnsweredAsStream(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	in := initializedSession(t, url)
	type answer struct {
		status int
		header http.Header
		body   string
	}
	blocked := make(chan answer, 1)
	go func() {
		status, header, body := post(t, url, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"block","arguments":{}}}`, in...)
		blocked <- answer{status, header, body}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Until the call is in progress (a cancel before it is ignored).
		post(t, url, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}`, in...)
		select {
		case a := <-blocked:
			// The server may still answer the cancelled request (go-sdk's
			// sometimes does, with the handler's "context canceled"):
			// then the POST carries that answer.
			var response struct {
				ID json.RawMessage `json:"id"`
			}
			answeredInJSON := a.header.Get("Content-Type") == "application/json" && json.Unmarshal([]byte(a.body), &response) == nil && string(response.ID) == "7"
			if a.status != http.StatusOK || a.header.Get("Content-Type") != "text/event-stream" && !answeredInJSON {
				t.Errorf("the cancelled call's POST: %d, Content-Type %q, body %q; want 200 and an event stream, or the server's answer", a.status, a.header.Get("Content-Type"), a.body)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the cancelled call's POST never ended")
		}
	}
}

// TestLateAnswerNotTakenForAReusedID: the server knows a session's
// requests by ids of the gateway's, so that a client may reuse the id of
// a request it left (the TypeScript SDK's client, resuming a session,
// counts from 0 again) and never gets the left request's late answer for
// its own (it did, until a review; then such reuse was refused, which
// broke the SDK's resuming: found by an interoperability run).
func TestLateAnswerNotTakenForAReusedID(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	in := initializedSession(t, url)
	// The first call, left once the server reported progress on it (so
	// that it is in progress there), answers 1 s later.
	ctx, leave := context.WithCancel(t.Context())
	resp, _ := callInProgress(ctx, t, url, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"wait","arguments":{"steps":100},"_meta":{"progressToken":"p7"}}}`, in...)
	leave()
	resp.Body.Close()

	// Reused (once the gateway has seen the POST go) by a call that waits
	// until cancelled: in the 2 s it waits, the left call's answer comes,
	// and must not be taken for its own.
	reused := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"block","arguments":{}}}`
	var status int
	var body string
	testwait.Until(t, 2*time.Second, func() string {
		waitCtx, stop := context.WithTimeout(t.Context(), 2*time.Second)
		defer stop()
		if status, body = postWithin(waitCtx, t, url, reused, in...); strings.Contains(body, "already in progress") {
			return "the left call is still in progress: " + body
		}
		return ""
	})
	if strings.Contains(body, "waited") {
		t.Fatalf("the call reusing id 7 got the left call's answer: %d %s", status, body)
	}
	// A call cancelled by the id the client gave it, once the server is at
	// work on it (it reported progress): the server is told the id it
	// knows the call by, and the call ends.
	blocked, events := callInProgress(t.Context(), t, url, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"block","arguments":{},"_meta":{"progressToken":"p9"}}}`, in...)
	defer blocked.Body.Close()
	post(t, url, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}}`, in...)
	if _, err := io.ReadAll(events); err != nil {
		t.Errorf("the cancelled call's POST: %v; want it ended", err)
	}
	testwait.Until(t, 5*time.Second, func() string {
		if _, _, body := post(t, url, `{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"cancellations","arguments":{}}}`, in...); !strings.Contains(body, `"text":"1"`) {
			return "the server counted no cancellation: " + body
		}
		return ""
	})
}

// postWithin posts body as post does, within ctx: a reply still open when
// ctx ends is read as far as it came.
func postWithin(ctx context.Context, t *testing.T, url, body string, headers ...string) (int, string) {
	t.Helper()
	resp, err := postRequest(ctx, t, url, body, headers...)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// TestMaxSessionsPerCaller: with max_sessions_per_caller, a caller past
// its share of the session processes is refused (503, as past
// max_sessions), while another caller still starts one; a session that
// ends gives its caller's place back.
func TestMaxSessionsPerCaller(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{MaxSessions: 3, MaxSessionsPerCaller: 1}, nil)
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	status, header, body := post(t, url, initialize, "X-Test-Caller", "alice")
	if status != http.StatusOK || header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("alice's first session: %d %s", status, body)
	}
	if status, header, body := post(t, url, initialize, "X-Test-Caller", "alice"); status != http.StatusServiceUnavailable ||
		header.Get("Retry-After") == "" || !strings.Contains(body, "max_sessions_per_caller") {
		t.Errorf("alice's second session: %d %v %s; want 503 for her share", status, header, body)
	}
	if status, _, body := post(t, url, initialize, "X-Test-Caller", "bob"); status != http.StatusOK {
		t.Errorf("bob's session: %d %s; want it started", status, body)
	}
	if status, err := deleteSession(t.Context(), url, header.Get("Mcp-Session-Id")); err != nil || status != http.StatusNoContent {
		t.Fatalf("DELETE of alice's first session: %d %v", status, err)
	}
	testwait.Until(t, 10*time.Second, func() string {
		status, _, body := post(t, url, initialize, "X-Test-Caller", "alice")
		if status != http.StatusOK {
			return fmt.Sprintf("alice's session once her first ended: %d %s", status, body)
		}
		return ""
	})
}

// TestReusedProgressTokenGetsNoLateProgress: the server gets progress
// tokens of the gateway's in a session too, so that the progress it
// reports late on a request no longer awaited never reaches a request
// the client gave the same token (it did: found by a review).
func TestReusedProgressTokenGetsNoLateProgress(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	in := initializedSession(t, url)
	// Answered at once, then reporting progress 100 ms later.
	if status, _, body := post(t, url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"linger","arguments":{"text":"A","steps":10},"_meta":{"progressToken":"p"}}}`, in...); status != http.StatusOK || !strings.Contains(body, "lingering") {
		t.Fatalf("linger: %d %s", status, body)
	}
	// Waiting 1 s, with the same token: its stream carries its own
	// progress, and none of linger's.
	status, _, body := post(t, url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"wait","arguments":{"steps":100},"_meta":{"progressToken":"p"}}}`, in...)
	switch {
	case status != http.StatusOK || !strings.Contains(body, "waited"):
		t.Errorf("wait: %d %s; want its answer", status, body)
	case strings.Contains(body, "late:A"):
		t.Errorf("wait's stream carries linger's late progress: %s", body)
	case !strings.Contains(body, `"progressToken":"p"`):
		t.Errorf("wait's stream carries no progress on its own token: %s", body)
	}
}

// deleteSession ends a session as a client does, within ctx, and returns
// the status it was answered with.
func deleteSession(ctx context.Context, url, session string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Mcp-Session-Id", session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestProgressAfterAnswerOnTheGETStream: progress a server reports after
// its answer (on a task its answer started, say) reaches the client on
// its GET stream, with the client's own token, and on no request's reply.
func TestProgressAfterAnswerOnTheGETStream(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	in := initializedSession(t, url)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(in); i += 2 {
		req.Header.Set(in[i], in[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if status, _, body := post(t, url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"linger","arguments":{"text":"A","steps":10},"_meta":{"progressToken":"p"}}}`, in...); status != http.StatusOK || !strings.Contains(body, "lingering") {
		t.Fatalf("linger: %d %s", status, body)
	}
	events := bufio.NewReader(resp.Body)
	for {
		line, err := events.ReadString('\n')
		if err != nil {
			t.Fatalf("the GET stream ended before linger's late progress: %v", err)
		}
		if strings.Contains(line, "late:A") {
			if !strings.Contains(line, `"progressToken":"p"`) {
				t.Errorf("late progress with another token than the client's: %s", line)
			}
			return
		}
	}
}

// TestBatchCancelBeforeReuse: in a 2025-03-26 batch, a cancellation of a
// left request, placed before a request that takes its id again, cancels
// the left request, not the new one (it cancelled the new one, whose
// answer then reached no one: found by a review).
func TestBatchCancelBeforeReuse(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	in := initializedSessionAt(t, url, "2025-03-26")
	// A blocking call, left once the server is at work on it.
	ctx, leave := context.WithCancel(t.Context())
	resp, _ := callInProgress(ctx, t, url, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"block","arguments":{},"_meta":{"progressToken":"p7"}}}`, in...)
	leave()
	resp.Body.Close()
	testwait.Until(t, 5*time.Second, func() string {
		status, _, body := post(t, url, `[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}},`+
			`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"new"}}}]`, in...)
		switch {
		case strings.Contains(body, "already in progress"):
			return "the left call is still in progress: " + body
		case status != http.StatusOK || !strings.Contains(body, "echo:new"):
			t.Fatalf("the batch: %d %s; want the new call's answer", status, body)
		}
		return ""
	})
	testwait.Until(t, 5*time.Second, func() string {
		if _, _, body := post(t, url, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"cancellations","arguments":{}}}`, in...); !strings.Contains(body, `"text":"1"`) {
			return "the left call was not cancelled: " + body
		}
		return ""
	})
}

// callInProgress posts call (a tools/call asking for progress) within
// ctx, and returns its reply and the reply's event stream once the server
// reported progress on it: the call is in progress there.
func callInProgress(ctx context.Context, t *testing.T, url, call string, headers ...string) (*http.Response, *bufio.Reader) {
	t.Helper()
	resp, err := postRequest(ctx, t, url, call, headers...)
	if err != nil {
		t.Fatalf("posting %s: %v", call, err)
	}
	events := bufio.NewReader(resp.Body)
	line, err := events.ReadString('\n')
	for err == nil && !strings.Contains(line, "notifications/progress") {
		line, err = events.ReadString('\n')
	}
	if err != nil {
		resp.Body.Close()
		t.Fatalf("the call reported no progress: %v", err)
	}
	return resp, events
}

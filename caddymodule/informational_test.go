package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// earlyHintsUpstream is an MCP server that sends 103 Early Hints, naming
// a session id of its own, before every reply but a GET's (refused): the
// initialize's reply names the session RAW-UPSTREAM-ID, as a DELETE's
// does; a batch's holds an empty result for each request in it.
func earlyHintsUpstream(t *testing.T) *upstreamtest.Upstream {
	return upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.Header().Set("Mcp-Session-Id", "RAW-IN-103")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Del("Mcp-Session-Id")
		if r.Method == http.MethodDelete {
			// A reply naming the session it ends.
			w.Header().Set("Mcp-Session-Id", "RAW-UPSTREAM-ID")
			w.WriteHeader(http.StatusOK)
			return
		}
		var messages []upstreamtest.Message
		if bytes.HasPrefix(body, []byte("[")) {
			_ = json.Unmarshal(body, &messages)
		} else {
			var m upstreamtest.Message
			_ = json.Unmarshal(body, &m)
			messages = []upstreamtest.Message{m}
		}
		var answers []string
		for _, m := range messages {
			switch {
			case m.Method == "initialize":
				w.Header().Set("Mcp-Session-Id", "RAW-UPSTREAM-ID")
				answers = append(answers, fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-03-26","capabilities":{"tools":{}},"serverInfo":{"name":"hints","version":"1"}}}`, m.ID))
			case m.Method == "tools/list":
				answers = append(answers, fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]}}`, m.ID))
			case len(m.ID) > 0:
				answers = append(answers, fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{}}`, m.ID))
			}
		}
		if len(answers) == 0 {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if len(messages) > 1 {
			fmt.Fprintf(w, "[%s]", strings.Join(answers, ","))
			return
		}
		fmt.Fprint(w, answers[0])
	}))
}

// TestInformationalReplies: an upstream's 1xx replies (103 Early Hints)
// are not relayed, and are never taken for the final reply: the session
// id of the final reply is sealed, a batch's refused elements are still
// answered by the gateway. The client's Expect: 100-continue, which the
// gateway's own server answers, is not forwarded (the upstream would
// answer 100 Continue in turn); nor are headers named with underscores,
// which servers behind CGI read as the dashed ones.
func TestInformationalReplies(t *testing.T) {
	up := earlyHintsUpstream(t)
	gateway := startGateway(t, up.URL, gatewayOptions{})
	var informational atomic.Int32
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		informational.Add(1)
		return nil
	}}
	send := func(method string, header http.Header, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, gateway, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for name, values := range header {
			req.Header[name] = values
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		reply, _ := io.ReadAll(resp.Body)
		return resp, string(reply)
	}

	resp, _ := send(http.MethodPost, nil, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}`)
	session := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(session, "mcpgate1.") {
		t.Fatalf("initialize: HTTP %d, session %q; want 200 and the upstream's session sealed", resp.StatusCode, session)
	}
	if n := informational.Load(); n != 0 {
		t.Errorf("the client got %d informational replies; want none relayed", n)
	}

	// A batch of 2025-03-26: the call of a tool the server does not offer
	// is answered by the gateway, the ping by the upstream, after its 103.
	withSession := http.Header{"Mcp-Session-Id": {session}, "Mcp-Protocol-Version": {"2025-03-26"}}
	resp, reply := send(http.MethodPost, withSession, `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"not_offered","arguments":{}}},{"jsonrpc":"2.0","id":2,"method":"ping"}]`)
	var answers []struct {
		ID     json.RawMessage `json:"id"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(reply), &answers); resp.StatusCode != http.StatusOK || err != nil || len(answers) != 2 {
		t.Errorf("batch: HTTP %d, %s; want both elements answered, the refusal by the gateway", resp.StatusCode, reply)
	}
	if !up.SawBodyContaining(`"ping"`) || up.SawBodyContaining("not_offered") {
		t.Error("the upstream did not get the ping alone")
	}

	// Expect and underscored names do not go on.
	header := withSession.Clone()
	header.Set("Expect", "100-continue")
	header["Mcp_Session_Id"] = []string{"RAW-UPSTREAM-ID"}
	header["X_Team"] = []string{"admins"}
	if resp, reply := send(http.MethodPost, header, `{"jsonrpc":"2.0","id":3,"method":"ping"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("ping: HTTP %d %s", resp.StatusCode, reply)
	}
	received := up.Received()
	last := received[len(received)-1]
	if !strings.Contains(string(last.Body), `"id":3`) {
		t.Fatalf("the upstream's last request is %s; want the ping", last.Body)
	}
	for name := range last.Header {
		if strings.ContainsRune(name, '_') || strings.EqualFold(name, "Expect") {
			t.Errorf("the upstream got the header %s: %q", name, last.Header[name])
		}
	}
	if got := last.Header.Get("Mcp-Session-Id"); got != "RAW-UPSTREAM-ID" {
		t.Errorf("the upstream got session %q; want its own, unsealed", got)
	}

	// A GET naming two revisions is refused, as a POST is.
	header = withSession.Clone()
	header.Add("Mcp-Protocol-Version", "2025-06-18")
	if resp, reply := send(http.MethodGet, header, ""); resp.StatusCode != http.StatusBadRequest || !strings.Contains(reply, "header given 2 times") {
		t.Errorf("a GET with two revisions: HTTP %d %s; want 400", resp.StatusCode, reply)
	}

	// A DELETE's reply is not watched, but its session id is sealed all
	// the same after a 103 (which does reach the client: nothing in it
	// is read).
	header = withSession.Clone()
	if resp, _ := send(http.MethodDelete, header, ""); resp.Header.Get("Mcp-Session-Id") == "RAW-UPSTREAM-ID" {
		t.Errorf("DELETE: the client got the upstream's own session id")
	}
}

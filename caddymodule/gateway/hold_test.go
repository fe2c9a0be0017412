package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
)

// postQuietly posts body in session as clients do, and returns the
// reply's body; it reports failures rather than stop the test, for the
// goroutines other than the test's.
func postQuietly(url string, session http.Header, body string) (string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header = session.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return string(raw), err
}

// TestCancelComingWithApproval: a held call that finds its approval
// approved and its client's notifications/cancelled both there (woken by
// both at once, its wait took the decision) is answered as cancelled and
// never runs: the cancel wins, as it does while the call waits.
func TestCancelComingWithApproval(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	gw := startGateway(t, up.URL, gatewayOptions{approvals: true, holdFor: time.Minute})
	session := initialize(t, gw.URL, nil)
	header := http.Header{mcphttp.HeaderSessionID: {session}, mcphttp.HeaderProtocolVersion: {"2025-06-18"}}
	postRaw := func(body string) (string, error) { return postQuietly(gw.URL, header, body) }

	// When the held call sees the approval, its client cancels it.
	cancelErr := make(chan error, 1)
	restore := gateway.SetTestHookGoAhead(func() {
		_, err := postRaw(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"held-1","reason":"stop"}}`)
		cancelErr <- err
	})
	defer restore()

	answer := make(chan string, 1)
	go func() {
		body, err := postRaw(`{"jsonrpc":"2.0","id":"held-1","method":"tools/call","params":{"name":"create_issue","arguments":{"text":"cancel me"}}}`)
		if err != nil {
			body = "error: " + err.Error()
		}
		answer <- body
	}()
	ctx := context.Background()
	var pending *approval.Approval
	for deadline := time.Now().Add(10 * time.Second); pending == nil; {
		list, err := gw.approvals.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range list {
			if a.State == approval.Pending {
				pending = a
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the call was not held for approval")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := gw.approvals.Decide(ctx, pending.ID, true, approval.Decider{ID: "admin", Principals: []string{"admin"}}, ""); err != nil {
		t.Fatalf("approving: %v", err)
	}
	select {
	case body := <-answer:
		if !strings.Contains(body, "cancelled") {
			t.Errorf("the held call answered %s; want it cancelled", body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the held call did not end")
	}
	if err := <-cancelErr; err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	if n := up.CallCount("create_issue"); n != 0 {
		t.Errorf("the upstream ran the cancelled call (%d times)", n)
	}
}

// TestCancelComingWithConfirmation: a call held on its caller's answer
// that finds the accept and its client's notifications/cancelled both
// there is answered as cancelled and never runs.
func TestCancelComingWithConfirmation(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow",
		"write":     map[string]any{"action": "needs_approval", "approvers": []any{"caller"}},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.MaxBody = 64 << 10
	gw := serveGateway(t, cfg, up.URL)
	r := post(t, gw.URL, nil, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"1"}}}`)
	session := http.Header{mcphttp.HeaderSessionID: {r.header.Get(mcphttp.HeaderSessionID)}, mcphttp.HeaderProtocolVersion: {"2025-06-18"}}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := clienttest.NewRequest(t, http.MethodPost, gw.URL, session,
		strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"cancel me"}}}`))
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := clienttest.EventData(resp)
	var asked struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	first := <-events
	if err := json.Unmarshal([]byte(first), &asked); err != nil || asked.Method != "elicitation/create" {
		t.Fatalf("the caller was not asked: HTTP %d, first event %q (%v)", resp.StatusCode, first, err)
	}

	// When the held call takes the accept, its client cancels it.
	cancelErr := make(chan error, 1)
	restore := gateway.SetTestHookGoAhead(func() {
		_, err := postQuietly(gw.URL, session, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"reason":"stop"}}`)
		cancelErr <- err
	})
	defer restore()
	if _, err := postQuietly(gw.URL, session, `{"jsonrpc":"2.0","id":`+string(asked.ID)+`,"result":{"action":"accept","content":{}}}`); err != nil {
		t.Fatal(err)
	}
	var last string
	for event := range events {
		last = event
	}
	if !strings.Contains(last, "You cancelled this call") {
		t.Errorf("the held call was answered %s; want it cancelled", last)
	}
	if err := <-cancelErr; err != nil {
		t.Fatalf("cancelling: %v", err)
	}
	if n := up.CallCount("create_issue"); n != 0 {
		t.Errorf("the upstream ran the cancelled call (%d times)", n)
	}
}

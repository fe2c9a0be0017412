package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/tooloverride"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/redistest"
	"github.com/mcpgate/mcpgate/internal/testwait"
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

// TestCancelRacingApproval: a client that cancels its held call, or goes
// away, just as a reviewer approves it (the decision stored, the held
// call not yet woken by it: with Redis, its notice comes a moment later)
// leaves no approval to run the call later: it is used up, and the same
// call made again asks anew. Each race is run many times, over Redis and
// in memory.
func TestCancelRacingApproval(t *testing.T) {
	redisAddr := redistest.Start(t)
	for _, store := range []string{"memory", "redis"} {
		for _, how := range []string{"cancel", "disconnect"} {
			t.Run(store+" "+how, func(t *testing.T) {
				t.Parallel()
				opts := gatewayOptions{approvals: true, holdFor: time.Minute}
				if store == "redis" {
					opts.redis = redisAddr
				}
				up := newUpstream(t, upstreamtest.StatefulJSON)
				gw := startGateway(t, up.URL, opts)
				header := sessionHeader(t, gw.URL)
				ctx := context.Background()
				admin := approval.Decider{ID: "admin", Principals: []string{"admin"}}
				for i := range 15 {
					// Calls of the subtests running beside, over the same
					// Redis, are told apart by their text.
					text := fmt.Sprintf("%s %s race %d", store, how, i)
					call := fmt.Sprintf(`{"jsonrpc":"2.0","id":"held-%d","method":"tools/call","params":{"name":"create_issue","arguments":{"text":%q}}}`, i, text)
					reqCtx, hangUp := context.WithCancel(ctx)
					req := clienttest.NewRequest(t, http.MethodPost, gw.URL, header, strings.NewReader(call)).WithContext(reqCtx)
					ended := make(chan struct{})
					go func() {
						defer close(ended)
						if resp, err := http.DefaultClient.Do(req); err == nil {
							_, _ = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
					}()
					held := pendingWith(t, gw.approvals, text)
					var wg sync.WaitGroup
					wg.Go(func() { _, _ = gw.approvals.Decide(ctx, held.ID, true, admin, "") })
					wg.Go(func() {
						if how == "disconnect" {
							hangUp()
							return
						}
						_, _ = postQuietly(gw.URL, header, fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"held-%d"}}`, i))
					})
					wg.Wait()
					<-ended
					hangUp()
					testwait.Until(t, 5*time.Second, func() string {
						if a, err := gw.approvals.Get(ctx, held.ID); err != nil || a.State == approval.Pending || a.State == approval.Approved && !a.Delivered {
							return fmt.Sprintf("race %d: the approval is %+v (%v), want it cancelled or used up", i, a, err)
						}
						return ""
					})
					// Made again, the call is held anew (and let go of
					// after a moment), or runs at once on the approval
					// left.
					again := strings.Replace(call, fmt.Sprintf(`"held-%d"`, i), fmt.Sprintf(`"again-%d"`, i), 1)
					againCtx, stop := context.WithTimeout(ctx, 200*time.Millisecond)
					if resp, err := http.DefaultClient.Do(clienttest.NewRequest(t, http.MethodPost, gw.URL, header, strings.NewReader(again)).WithContext(againCtx)); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					stop()
					if up.SawBodyContaining(fmt.Sprintf(`"again-%d"`, i)) {
						t.Fatalf("race %d: the same call made again ran on the approval its cancelled call left", i)
					}
				}
			})
		}
	}
}

// TestCancelEndsEveryHeldCallOfItsID: on a stateless upstream a caller
// may have two calls of one id held at once (two windows of one client,
// each counting from 1); a cancel of that id cannot tell which it meant,
// and ends both, rather than leave the cancelled call to run once
// approved.
func TestCancelEndsEveryHeldCallOfItsID(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	gw := startGateway(t, up.URL, gatewayOptions{approvals: true, holdFor: time.Minute, userHeader: "X-User"})
	header := http.Header{"X-User": {"alice"}, mcphttp.HeaderProtocolVersion: {"2025-06-18"}}
	answers := make(chan string, 2)
	var held []*approval.Approval
	for _, window := range []string{"window one", "window two"} {
		go func() {
			body, _ := postQuietly(gw.URL, header, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":%q}}}`, window))
			answers <- body
		}()
		held = append(held, pendingWith(t, gw.approvals, window))
	}
	if _, err := postQuietly(gw.URL, header, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`); err != nil {
		t.Fatal(err)
	}
	for range held {
		if body := <-answers; !strings.Contains(body, "the client cancelled the call") {
			t.Errorf("a held call of id 1 answered %.200s; want it cancelled", body)
		}
	}
	for _, a := range held {
		if got, err := gw.approvals.Get(context.Background(), a.ID); err != nil || got.State != approval.Cancelled {
			t.Errorf("approval %s: %+v (%v); want it cancelled", a.ID, got, err)
		}
	}
	if n := up.CallCount("create_issue"); n != 0 {
		t.Errorf("the upstream ran create_issue %d times; want never", n)
	}
}

// pendingWith waits for the pending approval of a call whose arguments
// hold text.
func pendingWith(t *testing.T, service *approval.Service, text string) *approval.Approval {
	t.Helper()
	var held *approval.Approval
	testwait.Until(t, 10*time.Second, func() string {
		list, err := service.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range list {
			if a.State == approval.Pending && strings.Contains(string(a.Arguments), text) {
				held = a
				return ""
			}
		}
		return "the call with " + text + " was not held for approval"
	})
	return held
}

// TestCancelComingWithApproval: a held call that finds its approval
// approved and its client's notifications/cancelled both there (woken by
// both at once, its wait took the decision; or the cancel came while the
// approval was used up) is answered as cancelled and never runs: the
// cancel wins, as it does while the call waits. The approval is used up:
// the same call made again asks anew, rather than run on it.
func TestCancelComingWithApproval(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	gw := startGateway(t, up.URL, gatewayOptions{approvals: true, holdFor: time.Minute})
	header := sessionHeader(t, gw.URL)
	postRaw := func(body string) (string, error) { return postQuietly(gw.URL, header, body) }
	const call = `{"jsonrpc":"2.0","id":"held-1","method":"tools/call","params":{"name":"create_issue","arguments":{"text":"cancel me"}}}`
	ctx := context.Background()
	hold := func() (<-chan string, *approval.Approval) {
		t.Helper()
		answer := make(chan string, 1)
		go func() {
			body, err := postRaw(call)
			if err != nil {
				body = "error: " + err.Error()
			}
			answer <- body
		}()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			list, err := gw.approvals.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range list {
				if a.State == approval.Pending {
					return answer, a
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the call was not held for approval")
			}
		}
	}
	decide := func(a *approval.Approval, approve bool) {
		t.Helper()
		if _, err := gw.approvals.Decide(ctx, a.ID, approve, approval.Decider{ID: "admin", Principals: []string{"admin"}}, "no"); err != nil {
			t.Fatalf("deciding %s: %v", a.ID, err)
		}
	}
	answered := func(answer <-chan string) string {
		t.Helper()
		select {
		case body := <-answer:
			return body
		case <-time.After(20 * time.Second):
			t.Fatal("the held call did not end")
			return ""
		}
	}

	// When the held call may go ahead, its client cancels it (once).
	cancelErr := make(chan error, 1)
	var once sync.Once
	restore := gateway.SetTestHookGoAhead(func() {
		once.Do(func() {
			_, err := postRaw(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"held-1","reason":"stop"}}`)
			cancelErr <- err
		})
	})
	answer, first := hold()
	decide(first, true)
	if body := answered(answer); !strings.Contains(body, "the client cancelled the call before it ran") {
		t.Errorf("the held call answered %s; want it cancelled", body)
	}
	restore()
	if err := <-cancelErr; err != nil {
		t.Fatalf("cancelling: %v", err)
	}

	// The same call again is held on an approval of its own.
	answer, second := hold()
	if second.ID == first.ID {
		t.Fatalf("the same call again waits on approval %s, used up by the cancelled call", first.ID)
	}
	decide(second, false)
	if body := answered(answer); !strings.Contains(body, "Denied") {
		t.Errorf("the call made again answered %s; want the denial of its own approval", body)
	}
	if n := up.CallCount("create_issue"); n != 0 {
		t.Errorf("the upstream ran the cancelled call (%d times)", n)
	}
}

// TestCancelComingWithConfirmation: a call held on its caller's answer
// that finds the accept and its client's notifications/cancelled both
// there is answered as cancelled and never runs.
func TestCancelComingWithConfirmation(t *testing.T) {
	up, gw, session, events, askedID := askCaller(t, "cancel me")

	// When the held call takes the accept, its client cancels it.
	cancelErr := make(chan error, 1)
	restore := gateway.SetTestHookGoAhead(func() {
		_, err := postQuietly(gw.URL, session, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"reason":"stop"}}`)
		cancelErr <- err
	})
	defer restore()
	if _, err := postQuietly(gw.URL, session, `{"jsonrpc":"2.0","id":`+string(askedID)+`,"result":{"action":"accept","content":{}}}`); err != nil {
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

// TestHeldToolChanged checks that a call held for approval runs only the
// tool definition it was decided on: when the upstream redefines the tool
// while the call waits, the approval answers nothing (the call does not
// run), and the new definition, once accepted, needs an approval of its
// own.
func TestHeldToolChanged(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	gw := startGateway(t, up.URL, gatewayOptions{approvals: true, holdFor: time.Minute})
	header := sessionHeader(t, gw.URL)
	ctx := context.Background()
	first, answer := holdCreateIssue(t, gw, header)
	before, _ := gw.catalog.Lookup(testUpstream, "create_issue")
	if first.ToolHash != before.Hash {
		t.Fatalf("the approval names definition %q, want the one decided on, %q", first.ToolHash, before.Hash)
	}

	// The upstream redefines the tool; a client's list shows it, which
	// makes the catalog's list stale (a client's list never changes a
	// current one), and the next call has the gateway fetch it anew.
	up.AddTool(&mcp.Tool{Name: "create_issue", Description: "now deletes the repository", Annotations: &mcp.ToolAnnotations{DestructiveHint: new(false)}})
	if _, err := connect(t, gw.URL, nil, mcphttp.Version20251125).ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !gw.catalog.Stale(testUpstream) {
		t.Fatal("a client's list showing another definition left the catalog's list current")
	}
	if body, err := postQuietly(gw.URL, header, callBody("9", "echo", "x")); err != nil || !strings.Contains(body, "echo:x") {
		t.Fatalf("a call to echo: %s (%v)", body, err)
	}
	after, _ := gw.catalog.Lookup(testUpstream, "create_issue")
	if after.Hash == before.Hash {
		t.Fatal("the catalog did not learn the new definition")
	}
	decideAs := approval.Decider{ID: "admin", Principals: []string{"admin"}}
	if _, err := gw.approvals.Decide(ctx, first.ID, true, decideAs, ""); err != nil {
		t.Fatal(err)
	}
	if body := <-answer; !strings.Contains(body, "changed while the call waited") {
		t.Errorf("the held call, approved after its tool changed, was answered %s; want it refused as changed", body)
	}
	if n := up.CallCount("create_issue"); n != 0 {
		t.Fatalf("the upstream ran create_issue %d times on an approval given for its old definition", n)
	}

	// Accepted, the new definition is held for an approval of its own.
	if _, err := gw.catalog.Accept(ctx, testUpstream, "create_issue", after.Hash); err != nil {
		t.Fatal(err)
	}
	second, answer := holdCreateIssue(t, gw, header)
	if second.ID == first.ID || second.ToolHash != after.Hash {
		t.Fatalf("the call to the new definition was held on approval %s for %q, want a new approval for %q", second.ID, second.ToolHash, after.Hash)
	}
	if _, err := gw.approvals.Decide(ctx, second.ID, true, decideAs, ""); err != nil {
		t.Fatal(err)
	}
	if body := <-answer; !strings.Contains(body, "create_issue:x") {
		t.Errorf("the call to the accepted new definition, approved, was answered %s; want it run", body)
	}
}

// TestHeldCallAcrossReload: a reload that points the upstream name at
// another MCP server leaves the old configuration's held call to run on
// its own server once approved (its definition there unchanged), and the
// new configuration's calls decided on the new server's list only: the
// held call reads its own upstream's list without recording it in the
// catalog, whose list is the new configuration's to learn.
func TestHeldCallAcrossReload(t *testing.T) {
	a := newUpstream(t, upstreamtest.StatefulJSON)
	// B: the same names, but its echo is destructive (no annotations).
	b := upstreamtest.New(t, upstreamtest.StatelessJSON, []*mcp.Tool{
		{Name: "echo"}, {Name: "create_issue", Annotations: &mcp.ToolAnnotations{DestructiveHint: new(false)}},
	}, 0)
	old := startGateway(t, a.URL, gatewayOptions{approvals: true, holdFor: time.Minute})
	header := sessionHeader(t, old.URL)
	ctx := context.Background()
	pending, answer := holdCreateIssue(t, old, header)

	// The reload: the new configuration resets the list and fronts B under
	// the same upstream name, sharing the catalog.
	old.catalog.Reset(testUpstream, 1)
	engine, err := policy.New(ctx, policy.Options{Modules: policies.Library(), Data: permissionsTable()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "unused.json"))
	cfg.MaxBody, cfg.Catalog, cfg.Epoch = 64<<10, old.catalog, 1
	renewed := serveGateway(t, cfg, b.URL)

	if _, err := old.approvals.Decide(ctx, pending.ID, true, approval.Decider{ID: "admin", Principals: []string{"admin"}}, ""); err != nil {
		t.Fatal(err)
	}
	if body := <-answer; !strings.Contains(body, "create_issue:x") || a.CallCount("create_issue") != 1 {
		t.Errorf("the held call, approved after the reload: %s (ran %d times on its server); want it run once", body, a.CallCount("create_issue"))
	}
	if r := post(t, renewed.URL, nil, callBody("1", "echo", "wipe")); strings.Contains(string(r.body), "echo:wipe") || b.CallCount("echo") != 0 {
		t.Errorf("the new configuration's echo, destructive on its server: %s; want it decided on that server's list (blocked)", r.body)
	}
}

// holdCreateIssue posts create_issue("x") through gw, in the session of
// header, and waits until it is held: it returns the pending approval and
// the channel the call's answer comes on.
func holdCreateIssue(t *testing.T, gw *testGateway, header http.Header) (*approval.Approval, <-chan string) {
	t.Helper()
	return holdCreateIssueWith(t, gw, header, "x")
}

// holdCreateIssueWith is holdCreateIssue with text as the call's text.
func holdCreateIssueWith(t *testing.T, gw *testGateway, header http.Header, text string) (*approval.Approval, <-chan string) {
	t.Helper()
	answer := make(chan string, 1)
	go func() {
		body, err := postQuietly(gw.URL, header, callBody(`"held"`, "create_issue", text))
		if err != nil {
			body = "error: " + err.Error()
		}
		answer <- body
	}()
	var pending *approval.Approval
	testwait.Until(t, 10*time.Second, func() string {
		list, _ := gw.approvals.List(context.Background())
		for _, a := range list {
			if a.State == approval.Pending {
				pending = a
				return ""
			}
		}
		return "the call was never held"
	})
	return pending, answer
}

// TestHeldCallKeepsItsID: while a call is held for approval, its id is in
// flight in its session: another request with that id is refused, never
// forwarded (its answer, or the held call's once approved, could be taken
// for the other's); once the held call ends, the id is free again.
func TestHeldCallKeepsItsID(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	gw := startGateway(t, up.URL, gatewayOptions{approvals: true, holdFor: time.Minute})
	header := sessionHeader(t, gw.URL)
	ctx := context.Background()
	answer := make(chan string, 1)
	go func() {
		body, err := postQuietly(gw.URL, header, `{"jsonrpc":"2.0","id":"held-2","method":"tools/call","params":{"name":"create_issue","arguments":{"text":"hold me"}}}`)
		if err != nil {
			body = "error: " + err.Error()
		}
		answer <- body
	}()
	var held *approval.Approval
	for deadline := time.Now().Add(10 * time.Second); held == nil; time.Sleep(10 * time.Millisecond) {
		list, err := gw.approvals.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range list {
			if a.State == approval.Pending {
				held = a
			}
		}
		if held == nil && time.Now().After(deadline) {
			t.Fatal("the call was not held for approval")
		}
	}

	const ping = `{"jsonrpc":"2.0","id":"held-2","method":"ping"}`
	if body, err := postQuietly(gw.URL, header, ping); err != nil || !strings.Contains(body, "still awaiting its answer") {
		t.Errorf("a ping with the held call's id: %s (%v); want it refused", body, err)
	}
	if up.SawBodyContaining(`"id":"held-2","method":"ping"`) {
		t.Error("the ping with the held call's id reached the upstream")
	}
	if _, err := gw.approvals.Decide(ctx, held.ID, false, approval.Decider{ID: "admin", Principals: []string{"admin"}}, "no"); err != nil {
		t.Fatalf("denying: %v", err)
	}
	select {
	case body := <-answer:
		if !strings.Contains(body, "Denied") {
			t.Errorf("the held call answered %s; want its denial", body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the held call did not end")
	}
	if body, err := postQuietly(gw.URL, header, ping); err != nil || strings.Contains(body, "awaiting") {
		t.Errorf("a ping with the id once the held call ended: %s (%v); want it forwarded", body, err)
	}
}

// TestHeldCallDecidedAgain: a call held for approval while the policy in
// force changes (a reload with another permissions table) is decided
// again once approved: it runs when the policy now allows it or holds it
// for the same reviewers, and is refused, its approval used up, when the
// policy now blocks it or names other approvers, or when no gateway
// serves its server any more, or when the configuration running then no
// longer offers its tool under the name it was called by (renamed, or
// the name given to another tool). While the call's own configuration
// runs, its own gateway decides, whatever another of the server's says.
func TestHeldCallDecidedAgain(t *testing.T) {
	table := func(createIssue any) map[string]any {
		data := permissionsTable()
		if createIssue != nil {
			permissions := data["mcp"].(map[string]any)["permissions"].(map[string]any)
			permissions["tools"] = map[string]any{"peek": "block", "create_issue": createIssue}
		}
		return data
	}
	approvers := func(names ...any) map[string]any {
		return map[string]any{"action": "needs_approval", "approvers": names}
	}
	tests := []struct {
		name string
		// held is the table's create_issue entry when the call is held
		// (nil: the write category's needs_approval).
		held any
		// running are the create_issue entries of the gateways serving
		// the server once the call is held (each a new one), after the
		// call's own when own is set.
		own     bool
		running []any
		// overrides are the running gateways' tool overrides.
		overrides map[string]tooloverride.Override
		wantRun   bool
	}{
		{"unchanged", nil, false, []any{nil}, nil, true},
		{"now allowed", nil, false, []any{"allow"}, nil, true},
		{"now blocked", nil, false, []any{"block"}, nil, false},
		{"now for other approvers", nil, false, []any{approvers("group:leads")}, nil, false},
		{"no longer served", nil, false, nil, nil, false},
		{"its configuration running, beside another of the server's that blocks it", nil, true, []any{"block"}, nil, true},
		{"for the caller, who cannot be asked: unchanged", approvers("caller"), false, []any{approvers("caller")}, nil, true},
		{"for the caller and leads: unchanged", approvers("caller", "group:leads"), false, []any{approvers("caller", "group:leads")}, nil, true},
		{"for the caller and leads: now for leads alone", approvers("caller", "group:leads"), false, []any{approvers("group:leads")}, nil, true},
		{"for the caller and leads: now for the caller alone", approvers("caller", "group:leads"), false, []any{approvers("caller")}, nil, false},
		// Called as create_issue, which the configuration now offers
		// under another name, or gives to another tool.
		{"now renamed", nil, false, []any{nil}, map[string]tooloverride.Override{"create_issue": {Name: "open_issue"}}, false},
		{"its name now another tool's", nil, false, []any{nil}, map[string]tooloverride.Override{"create_issue": {Name: "open_issue"}, "echo": {Name: "create_issue"}}, false},
		{"now described otherwise", nil, false, []any{nil}, map[string]tooloverride.Override{"create_issue": {Description: "Opens an issue."}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, upstreamtest.StatefulJSON)
			ctx := context.Background()
			var running atomic.Pointer[[]*gateway.Gateway]
			engine, err := policy.New(ctx, policy.Options{Modules: policies.Library(), Data: table(tt.held)})
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
			cfg.MaxBody = 64 << 10
			cfg.Approvals = &gateway.Approvals{Service: newApprovalService(t, ""), Hold: time.Minute, Keepalive: time.Second}
			cfg.Running = func() []*gateway.Gateway { return *running.Load() }
			old := serveGateway(t, cfg, up.URL)
			running.Store(&[]*gateway.Gateway{old.gateway})
			header := sessionHeader(t, old.URL)
			pending, answer := holdCreateIssue(t, old, header)

			var now []*gateway.Gateway
			if tt.own {
				now = append(now, old.gateway)
			}
			for _, entry := range tt.running {
				engine, err := policy.New(ctx, policy.Options{Modules: policies.Library(), Data: table(entry)})
				if err != nil {
					t.Fatal(err)
				}
				renewed := cfg
				renewed.Engine, renewed.Running = engine, nil
				if renewed.ToolOverrides, err = tooloverride.New(tt.overrides); err != nil {
					t.Fatal(err)
				}
				now = append(now, newGateway(t, renewed))
			}
			running.Store(&now)
			lead := approval.Decider{ID: "lead", Principals: []string{"admin", "group:leads"}}
			if _, err := old.approvals.Decide(ctx, pending.ID, true, lead, ""); err != nil {
				t.Fatal(err)
			}
			body := <-answer
			if ran := up.CallCount("create_issue") == 1; ran != tt.wantRun || !ran && !strings.Contains(body, "did not run") ||
				strings.Contains(tt.name, "other approvers") && !strings.Contains(body, "holds it for other approvers") {
				t.Errorf("the held call, approved: %s (ran: %v); want it run: %v", body, ran, tt.wantRun)
			}
		})
	}
}

// TestApprovedCallStreamBounded: the reply to an approved call that goes
// to a client that reads nothing is cut once a write has waited
// streamWriteTimeout, as the POST's reply or in the held call's own
// progress stream (whose writer let no deadline through).
func TestApprovedCallStreamBounded(t *testing.T) {
	t.Cleanup(gateway.SetStreamWriteTimeout(500 * time.Millisecond))
	big := strings.Repeat("a", 1<<20)
	up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		m, _ := upstreamtest.ReadMessage(r)
		if m.Method == "tools/list" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"create_issue","inputSchema":{"type":"object"},"annotations":{"destructiveHint":false}}]}}`, m.ID)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for range 8 {
			if _, err := fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"%s\"}}\n\n", big); err != nil {
				return
			}
		}
		fmt.Fprintf(w, `data: {"jsonrpc":"2.0","id":%s,"result":{"content":[]}}`+"\n\n", m.ID)
	}))
	for _, tt := range []struct{ name, meta string }{
		{"as the POST's reply", ""},
		{"in the held call's progress stream", `,"_meta":{"progressToken":"p"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := libraryConfig(t)
			service := newApprovalService(t, "")
			cfg.Approvals = &gateway.Approvals{Service: service, Hold: time.Minute, Keepalive: time.Second}
			g := newGateway(t, cfg)
			next := proxyTo(t, up.URL)
			served := make(chan struct{})
			srv := slowLinkServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && r.Header.Get("X-Test") == "held" {
					defer close(served) // also when the handler unwinds (a cut stream aborts)
				}
				if err := g.Serve(w, r, next); err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
				}
			}))
			conn, err := slowLinkDialer().Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"x"}` + tt.meta + `}}`
			fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: gw.example\r\nX-Test: held\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
				"MCP-Protocol-Version: 2025-06-18\r\nContent-Length: %d\r\n\r\n%s", len(call), call)
			var pending *approval.Approval
			testwait.Until(t, 10*time.Second, func() string {
				list, _ := service.List(context.Background())
				for _, a := range list {
					if a.State == approval.Pending {
						pending = a
						return ""
					}
				}
				return "the call was never held"
			})
			if tt.meta != "" {
				if _, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := service.Decide(context.Background(), pending.ID, true, approval.Decider{ID: "admin", Principals: []string{"admin"}}, ""); err != nil {
				t.Fatal(err)
			}
			select {
			case <-served:
			case <-time.After(10 * time.Second):
				t.Fatal("10 s after the approval, the reply to a client that reads nothing is still being written (its writes have 500 ms each)")
			}
		})
	}
}

// stallToolsList is a next handler that holds the gateway's own
// tools/list fetch until release is closed, having closed fetching: the
// window in which a call is being decided.
type stallToolsList struct {
	next     gateway.Next
	fetching chan struct{}
	release  chan struct{}
	once     sync.Once
}

func (s *stallToolsList) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if bytes.Contains(body, []byte(`"mcpgate-tools-list-`)) {
		s.once.Do(func() { close(s.fetching) })
		<-s.release
	}
	return s.next.ServeHTTP(w, r)
}

// serveStalled serves g in front of upstream, with its own tools/list
// fetches held by a stallToolsList, and returns its MCP endpoint.
func serveStalled(t *testing.T, g *gateway.Gateway, upstream string) (string, *stallToolsList) {
	t.Helper()
	stall := &stallToolsList{next: proxyTo(t, upstream), fetching: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Serve(w, r, stall); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp", stall
}

// TestCancelWhileDecided: a call its client cancels while the gateway is
// still deciding it (here, while it fetches the upstream's tool list) does
// not run, whether it is then allowed, or held and approved: the
// cancellation went on to the upstream before the call, which would
// otherwise run it.
func TestCancelWhileDecided(t *testing.T) {
	for _, tt := range []struct {
		name, tool string
		approve    bool
	}{
		{name: "allowed", tool: "echo"},
		{name: "held and approved", tool: "create_issue", approve: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, upstreamtest.StatefulJSON)
			cfg := libraryConfig(t)
			cfg.Approvals = &gateway.Approvals{Service: newApprovalService(t, ""), Hold: 10 * time.Second, Keepalive: time.Second}
			url, stall := serveStalled(t, newGateway(t, cfg), up.URL)
			header := sessionHeader(t, url)
			post(t, url, header, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)

			answered := make(chan string, 1)
			go func() {
				body, err := postQuietly(url, header, `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"`+tt.tool+`","arguments":{"text":"cancel me"}}}`)
				if err != nil {
					body = err.Error()
				}
				answered <- body
			}()
			<-stall.fetching
			post(t, url, header, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1","reason":"user pressed stop"}}`)
			close(stall.release)

			// A reviewer approves the call if it is held (it may end as
			// cancelled first).
			var body string
			testwait.Until(t, 10*time.Second, func() string {
				select {
				case body = <-answered:
					return ""
				default:
				}
				if !tt.approve {
					return "no answer to the call"
				}
				list, err := cfg.Approvals.Service.List(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range list {
					if a.State == approval.Pending {
						admin := approval.Decider{ID: "admin", Principals: []string{"admin"}}
						if _, err := cfg.Approvals.Service.Decide(context.Background(), a.ID, true, admin, ""); err != nil {
							t.Fatal(err)
						}
					}
				}
				return "no answer to the call"
			})
			if up.SawBodyContaining("cancel me") {
				t.Fatalf("the call its client cancelled ran; the client got %s", body)
			}
			if !strings.Contains(body, "cancelled") {
				t.Errorf("the client got %s; want it told the call was cancelled", body)
			}
		})
	}
}

// TestAnonymousCancelStopsNoOtherCall: on a stateless upstream, the
// anonymous callers share one key for their calls' ids; one caller's
// notifications/cancelled naming an id does not stop another's allowed
// call of that id while the gateway decides it, nor its call held for
// approval (which its own client cancels by going away).
func TestAnonymousCancelStopsNoOtherCall(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	url, stall := serveStalled(t, newGateway(t, libraryConfig(t)), up.URL)
	header := http.Header{mcphttp.HeaderProtocolVersion: {mcphttp.Version20250618}}
	answered := make(chan string, 1)
	go func() {
		body, err := postQuietly(url, header, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"mine"}}}`)
		if err != nil {
			body = err.Error()
		}
		answered <- body
	}()
	<-stall.fetching
	post(t, url, header, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"someone else's"}}`)
	close(stall.release)
	if body := <-answered; !strings.Contains(body, "echo:mine") {
		t.Errorf("the call got %s; want it run (another caller's cancel named its id)", body)
	}
}

func TestAnonymousCancelStopsNoOtherHeldCall(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	gw := startGateway(t, up.URL, gatewayOptions{approvals: true, holdFor: time.Minute})
	header := http.Header{mcphttp.HeaderProtocolVersion: {"2025-06-18"}}
	answer := make(chan string, 1)
	go func() {
		body, _ := postQuietly(gw.URL, header, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"victim's"}}}`)
		answer <- body
	}()
	held := pendingWith(t, gw.approvals, "victim's")
	if _, err := postQuietly(gw.URL, header, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"someone else's"}}`); err != nil {
		t.Fatal(err)
	}
	admin := approval.Decider{ID: "admin", Principals: []string{"admin"}}
	if _, err := gw.approvals.Decide(context.Background(), held.ID, true, admin, ""); err != nil {
		t.Fatalf("approving the victim's call: %v", err)
	}
	if body := <-answer; !strings.Contains(body, "create_issue:victim's") {
		t.Errorf("the victim's held call answered %.200s; want it run once approved (another caller's cancel named its id)", body)
	}
}

// TestReplacedConfigurationLearnsNothing: once a reload's configuration
// starts, a call the one it replaced still decides (it took it before) is
// decided on its own upstream's list, fetched and recorded nowhere: the
// new configuration's calls are decided on the list of its own upstream
// of that name, never on one the old configuration fetched after it
// started.
func TestReplacedConfigurationLearnsNothing(t *testing.T) {
	a := newUpstream(t, upstreamtest.StatefulJSON)
	// B: the same names, but its echo is destructive (no annotations).
	b := upstreamtest.New(t, upstreamtest.StatelessJSON, []*mcp.Tool{{Name: "echo"}}, 0)
	old := startGateway(t, a.URL, gatewayOptions{})
	header := sessionHeader(t, old.URL)
	if r := post(t, old.URL, header, callBody("1", "echo", "before")); !strings.Contains(string(r.body), "echo:before") {
		t.Fatalf("the old configuration's call: %s; want it run", r.body)
	}

	old.catalog.Reset(testUpstream, 1) // the new configuration starts
	if r := post(t, old.URL, header, callBody("2", "echo", "x")); !strings.Contains(string(r.body), "echo:x") {
		t.Fatalf("the old configuration's call: %s; want it decided on its own upstream's list, and run", r.body)
	}
	if !old.catalog.Stale(testUpstream) {
		t.Error("the list the old configuration fetched became the catalog's current one")
	}

	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: permissionsTable()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "unused.json"))
	cfg.MaxBody, cfg.Catalog, cfg.Epoch = 64<<10, old.catalog, 1
	renewed := serveGateway(t, cfg, b.URL)
	if r := post(t, renewed.URL, nil, callBody("1", "echo", "wipe")); strings.Contains(string(r.body), "echo:wipe") || b.CallCount("echo") != 0 {
		t.Errorf("the new configuration's echo, destructive on its server: %s; want it decided on that server's list (blocked)", r.body)
	}
}

// TestConfirmationInBatchRefused: the caller's answer to the gateway's
// own question, sent in a batch (2025-03-26), is refused saying to send
// it alone (it was refused as answering nothing relayed, which it does);
// sent alone then, it is taken.
func TestConfirmationInBatchRefused(t *testing.T) {
	up, gw, session, events, askedID := askCaller(t, "confirm me")
	answer := `{"jsonrpc":"2.0","id":` + string(askedID) + `,"result":{"action":"accept","content":{}}}`
	batched := http.Header{mcphttp.HeaderSessionID: session[mcphttp.HeaderSessionID], mcphttp.HeaderProtocolVersion: {"2025-03-26"}}
	if r := post(t, gw.URL, batched, "["+answer+"]"); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "send it alone, not in a batch") {
		t.Errorf("the confirmation in a batch: HTTP %d %s; want 400 saying to send it alone", r.status, r.body)
	}
	if r := post(t, gw.URL, session, answer); r.status != http.StatusAccepted {
		t.Errorf("the confirmation alone: HTTP %d %s; want 202", r.status, r.body)
	}
	var last string
	for event := range events {
		last = event
	}
	if n := up.CallCount("create_issue"); n != 1 || !strings.Contains(last, "create_issue:confirm me") {
		t.Errorf("the confirmed call: %s (ran %d times); want it run once", last, n)
	}
}

// askCaller has a raw client (2025-06-18, elicitation declared) call
// create_issue with text through a gateway whose policy asks the caller
// to confirm, and returns, once the caller was asked, the upstream, the
// gateway, the session's headers, the call's events still to come, and
// the id of the gateway's question.
func askCaller(t *testing.T, text string) (up *upstreamtest.Upstream, gw *testGateway, session http.Header, events <-chan string, askedID json.RawMessage) {
	t.Helper()
	up = newUpstream(t, upstreamtest.StatefulSSE)
	gw = serveGateway(t, callerConfirmsConfig(t), up.URL)
	r := post(t, gw.URL, nil, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"1"}}}`)
	session = http.Header{mcphttp.HeaderSessionID: {r.header.Get(mcphttp.HeaderSessionID)}, mcphttp.HeaderProtocolVersion: {"2025-06-18"}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	status, events := clienttest.PostEvents(t, ctx, gw.URL, session,
		`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"`+text+`"}}}`)
	var asked struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	first := <-events
	if err := json.Unmarshal([]byte(first), &asked); err != nil || asked.Method != "elicitation/create" {
		t.Fatalf("the caller was not asked: HTTP %d, first event %q (%v)", status, first, err)
	}
	return up, gw, session, events, asked.ID
}

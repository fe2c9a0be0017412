package caddymodule_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approval/approvaltest"
	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/redistest"
	"github.com/mcpgate/mcpgate/internal/testwait"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// testClient bounds every request of these tests, so that a gateway that
// stalls fails a test instead of hanging it.
var testClient = &http.Client{Timeout: 20 * time.Second}

// testWebhookSecret signs webhooks in these tests.
const testWebhookSecret = approvaltest.WebhookSecret

// testDecisionSecret signs decision callbacks in these tests.
const testDecisionSecret = approvaltest.DecisionSecret

// approver is a webhook receiver on 127.0.0.1 that checks every
// webhook's signature, as a real approval service would, and sends signed
// decisions.
type approver struct {
	URL string
	// webhookSecret verifies webhooks; secret signs decisions.
	webhookSecret, secret approval.Secret
	// keepEvents is off in the scale test, whose memory figure must not
	// count the receiver's copies.
	keepEvents bool

	mu       sync.Mutex
	events   []approval.Event
	ids      []string
	counts   map[string]int
	arrived  chan struct{}
	unsigned atomic.Int32
}

func newApprover(t testing.TB) *approver {
	t.Helper()
	a := &approver{
		webhookSecret: approvaltest.MustSecret(t, testWebhookSecret),
		secret:        approvaltest.MustSecret(t, testDecisionSecret),
		keepEvents:    true,
		counts:        make(map[string]int),
		arrived:       make(chan struct{}, 1),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if _, err := a.webhookSecret.Verify(r.Header, body, time.Now()); err != nil {
			a.unsigned.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var e approval.Event
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.counts[e.Type]++
		if e.Type == approval.EventRequested {
			a.ids = append(a.ids, e.ID)
		}
		if a.keepEvents {
			a.events = append(a.events, e)
		}
		a.mu.Unlock()
		select {
		case a.arrived <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	a.URL = srv.URL + "/hook"
	return a
}

// count returns how many webhooks of the type arrived.
func (a *approver) count(eventType string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts[eventType]
}

// waitFor waits until n webhooks of the type arrived, and returns the
// last one (when events are kept).
func (a *approver) waitFor(t testing.TB, eventType string, n int) approval.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for a.count(eventType) < n {
		select {
		case <-a.arrived:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("waited for %d %s webhooks, got %d", n, eventType, a.count(eventType))
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.events) - 1; i >= 0; i-- {
		if a.events[i].Type == eventType {
			return a.events[i]
		}
	}
	return approval.Event{}
}

// callback POSTs a decision to url, signed by sign (nil: unsigned), and
// returns the status.
func callback(t testing.TB, url string, body any, sign func(http.Header, []byte)) int {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	var header http.Header
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		// A connection of its own: a config reload closes the old server's
		// idle connections in the background, and a POST on one of them fails
		// with EOF (not retried: POST is not idempotent), which is not what
		// the callback tests are about.
		req.Close = true
		if header == nil && sign != nil {
			sign(req.Header, raw)
			header = req.Header.Clone()
		} else if header != nil {
			req.Header = header.Clone()
		}
		resp, err := testClient.Do(req)
		if (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) && attempt < 3 {
			// A configuration that failed once started (Caddy cancels
			// it without stopping its servers), or the server a reload
			// replaces, may close a connection it accepted before
			// reading it (EOF, or a reset when the request was already
			// on its way): the same signed request again, on a new one
			// (a callback delivered twice is answered alike).
			continue
		}
		if err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
}

// signNow signs as the approver would, with a fresh webhook-id.
func (a *approver) signNow(h http.Header, body []byte) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	a.secret.SetHeaders(h, "msg_"+hex.EncodeToString(id[:]), time.Now(), body)
}

// decide sends a signed decision for the approval at callbackURL (whose
// last segment is its id) and returns the status.
func (a *approver) decide(t testing.TB, callbackURL, decision, reason string) int {
	t.Helper()
	body := map[string]string{"id": path.Base(callbackURL), "decision": decision, "approver": "alice", "reason": reason}
	return callback(t, callbackURL, body, a.signNow)
}

// approvalSetup shapes the gateway of an approval test.
type approvalSetup struct {
	// policy replaces the mcp_policy block's policy lines; default: the
	// test policy.
	policy                   string
	timeout, keepalive, hold string
	// store is the store line ("store redis <addr>"); default memory.
	store string
	// inbox is the inbox URL of the approval block, if any.
	inbox string
	// approvals is the mcp_approvals block's body.
	approvals string
	// global adds global options (an admin endpoint).
	global []string
}

// approvalGateway is a running gateway that holds calls for approval.
type approvalGateway struct {
	URL       string
	Callbacks string
	approver  *approver
	caddyfile string
}

// startApprovalGateway runs, in one Caddy, a gateway in front of up whose
// approvals go to a fresh approver, and a separate site serving the
// callbacks (mcp_approvals).
func startApprovalGateway(t testing.TB, up *upstreamtest.Upstream, s approvalSetup) *approvalGateway {
	t.Helper()
	g := &approvalGateway{approver: newApprover(t)}
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	gatewayPort, callbackPort := freePort(t), freePort(t)
	g.URL = fmt.Sprintf("http://127.0.0.1:%d/mcp", gatewayPort)
	g.Callbacks = fmt.Sprintf("http://127.0.0.1:%d/approvals", callbackPort)
	g.caddyfile = globalOptions(t, s.global...) + fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	handle /approvals/* {
		mcp_approvals {
			%s
		}
	}
	handle /metrics {
		metrics
	}
}
`, callbackPort, s.approvals) + approvalSiteWith(gatewayPort, or(s.policy, testPolicy), up, g.approver.URL, g.Callbacks,
		"timeout "+or(s.timeout, "10s"), "keepalive "+or(s.keepalive, "100ms"), "hold "+or(s.hold, "10s"), s.store, inboxLine(s.inbox))
	startCaddy(t, g.caddyfile)
	waitForListener(t, gatewayPort)
	waitForListener(t, callbackPort)
	return g
}

// testPolicy is the policy lines of the approval tests' gateways.
const testPolicy = "policy testdata/policy"

// approvalSite is a gateway site on port in front of up, whose approvals
// go to webhook and come back at callbacks, with more approval lines.
func approvalSite(port int, up *upstreamtest.Upstream, webhook, callbacks string, lines ...string) string {
	return approvalSiteWith(port, testPolicy, up, webhook, callbacks, lines...)
}

// approvalSiteWith is approvalSite with other policy lines.
func approvalSiteWith(port int, policy string, up *upstreamtest.Upstream, webhook, callbacks string, lines ...string) string {
	if !strings.Contains(policy, "server ") {
		policy += "\n\t\tserver test"
	}
	return fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_policy {
		%s
		upstream test
		approval {
			webhook %s
			webhook_secret %s
			decision_secret %s
			callback_url %s
			%s
		}
	}
	reverse_proxy %s
}
`, port, policy, webhook, testWebhookSecret, testDecisionSecret, callbacks, strings.Join(lines, "\n\t\t\t"), strings.TrimPrefix(up.URL, "http://"))
}

// inboxLine is the approval block's inbox_url line for url, if any.
func inboxLine(url string) string {
	if url == "" {
		return ""
	}
	return "inbox_url " + url
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// callResult is what a held call came back with.
type callResult struct {
	res *mcp.CallToolResult
	err error
}

// callAsync calls create_issue (which needs approval in the test policy)
// in the background.
func callAsync(ctx context.Context, session *mcp.ClientSession, params *mcp.CallToolParams) <-chan callResult {
	done := make(chan callResult, 1)
	go func() {
		res, err := session.CallTool(ctx, params)
		done <- callResult{res, err}
	}()
	return done
}

func createIssue(title string) *mcp.CallToolParams {
	return &mcp.CallToolParams{Name: "create_issue", Arguments: map[string]any{"text": title}}
}

// awaitResult waits for a held call's result.
func awaitResult(t testing.TB, done <-chan callResult) *mcp.CallToolResult {
	t.Helper()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("held call failed: %v", r.err)
		}
		return r.res
	case <-time.After(20 * time.Second):
		t.Fatal("held call never returned")
		return nil
	}
}

// holdCall starts a gateway with the setup in front of a stateful SSE
// upstream, and has a client make one create_issue call with text, which
// the gateway holds. It returns the approval.requested webhook and where
// the call's result will come.
func holdCall(t *testing.T, setup approvalSetup, text string) (*approvalGateway, *upstreamtest.Upstream, approval.Event, <-chan callResult) {
	t.Helper()
	g, up, session, ctx := approvalClient(t, setup)
	done := callAsync(ctx, session, createIssue(text))
	return g, up, g.approver.waitFor(t, approval.EventRequested, 1), done
}

// approvalClient starts a gateway with the setup in front of a stateful
// SSE upstream, and connects a client; calls get the returned context.
func approvalClient(t *testing.T, setup approvalSetup) (*approvalGateway, *upstreamtest.Upstream, *mcp.ClientSession, context.Context) {
	t.Helper()
	up := newUpstream(t, upstreamtest.StatefulSSE)
	g := startApprovalGateway(t, up, setup)
	session := connect(t, g.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return g, up, session, ctx
}

// TestApprovalApprovedOrDenied holds a call until a signed decision comes:
// approved, it runs and its result reaches the client; denied, the reason
// reaches the client and the upstream never sees the call.
func TestApprovalApprovedOrDenied(t *testing.T) {
	for _, mode := range []upstreamtest.Mode{upstreamtest.StatefulSSE, upstreamtest.StatelessJSON} {
		t.Run(mode.Name, func(t *testing.T) {
			up := newUpstream(t, mode)
			g := startApprovalGateway(t, up, approvalSetup{})
			session := connect(t, g.URL, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			done := callAsync(ctx, session, createIssue("approve me"))
			e := g.approver.waitFor(t, approval.EventRequested, 1)
			if e.Server != "test" || e.Tool.Name != "create_issue" || string(e.Tool.Arguments) != `{"text":"approve me"}` ||
				e.Reason != "creating issues needs a human" || e.CallbackURL != g.Callbacks+"/"+e.ID ||
				e.Session != up.LastSession() || (e.Session != "" && e.Session == session.ID()) || e.RequestedAt.IsZero() || !e.ExpiresAt.After(e.RequestedAt) {
				t.Errorf("approval.requested webhook = %+v; want the call, the policy's reason, the upstream's session (not the client's sealed one) and a callback URL", e)
			}
			if up.CallCount("create_issue") != 0 {
				t.Fatal("the upstream ran the call before any decision")
			}
			if status := g.approver.decide(t, e.CallbackURL, "approve", "looks fine"); status != http.StatusOK {
				t.Fatalf("approve callback: status %d, want 200", status)
			}
			res := awaitResult(t, done)
			if res.IsError || resultText(res) != "create_issue:approve me" {
				t.Errorf("approved call: isError %v, %q; want the upstream's result", res.IsError, resultText(res))
			}
			if n := up.CallCount("create_issue"); n != 1 {
				t.Errorf("upstream ran the approved call %d times, want 1", n)
			}

			done = callAsync(ctx, session, createIssue("deny me"))
			e = g.approver.waitFor(t, approval.EventRequested, 2)
			if status := g.approver.decide(t, e.CallbackURL, "deny", "not on a Friday"); status != http.StatusOK {
				t.Fatalf("deny callback: status %d, want 200", status)
			}
			res = awaitResult(t, done)
			if !res.IsError || !strings.Contains(resultText(res), "Denied by webhook: not on a Friday") {
				t.Errorf("denied call: isError %v, %q; want a refusal with the approver's reason", res.IsError, resultText(res))
			}
			if up.SawBodyContaining("deny me") {
				t.Error("the upstream saw the denied call")
			}
		})
	}
}

// TestApprovalTimeout: no decision within the timeout refuses the call,
// announces approval.expired, and a late approve changes nothing.
func TestApprovalTimeout(t *testing.T) {
	g, up, session, ctx := approvalClient(t, approvalSetup{timeout: "500ms"})

	res := awaitResult(t, callAsync(ctx, session, createIssue("too slow")))
	if !res.IsError || !strings.Contains(resultText(res), "No decision on approval") {
		t.Errorf("timed-out call: isError %v, %q; want a refusal saying no decision came", res.IsError, resultText(res))
	}
	e := g.approver.waitFor(t, approval.EventExpired, 1)
	if status := g.approver.decide(t, e.CallbackURL, "approve", ""); status != http.StatusConflict {
		t.Errorf("approving an expired approval: status %d, want 409", status)
	}
	if up.SawBodyContaining("too slow") {
		t.Error("the upstream saw the refused call")
	}
}

// TestApprovalCallbacksRefused sends callbacks that must change nothing:
// unsigned, signed with another key (the webhook secret included), stale,
// for an unknown id, with a body that is not a decision for the approval
// it was sent to, another decision under a used webhook-id, and a second
// decision after the first.
func TestApprovalCallbacksRefused(t *testing.T) {
	g, up, e, done := holdCall(t, approvalSetup{}, "guarded")

	forger := approvaltest.MustSecret(t, "whsec_"+strings.Repeat("A", 43)+"=")
	const unknown = "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	approve := map[string]string{"id": e.ID, "decision": "approve", "approver": "mallory"}
	tests := []struct {
		name string
		url  string
		body any
		sign func(http.Header, []byte)
		want int
	}{
		{"unsigned", e.CallbackURL, approve, nil, http.StatusUnauthorized},
		{"another key", e.CallbackURL, approve, func(h http.Header, b []byte) { forger.SetHeaders(h, "msg_forged", time.Now(), b) }, http.StatusUnauthorized},
		{"the webhook secret", e.CallbackURL, approve, func(h http.Header, b []byte) {
			g.approver.webhookSecret.SetHeaders(h, "msg_webhook", time.Now(), b)
		}, http.StatusUnauthorized},
		{"stale", e.CallbackURL, approve, func(h http.Header, b []byte) {
			g.approver.secret.SetHeaders(h, "msg_stale", time.Now().Add(-6*time.Minute), b)
		}, http.StatusUnauthorized},
		{"signature of another body", e.CallbackURL, approve, func(h http.Header, _ []byte) {
			g.approver.secret.SetHeaders(h, "msg_other", time.Now(), []byte(`{"decision":"deny"}`))
		}, http.StatusUnauthorized},
		{"unknown id", g.Callbacks + "/" + unknown, map[string]string{"id": unknown, "decision": "approve"}, g.approver.signNow, http.StatusNotFound},
		{"decision for another approval", e.CallbackURL, map[string]string{"id": unknown, "decision": "approve"}, g.approver.signNow, http.StatusBadRequest},
		{"no id", e.CallbackURL, map[string]string{"decision": "approve"}, g.approver.signNow, http.StatusBadRequest},
		{"member Decision", e.CallbackURL, map[string]string{"id": e.ID, "Decision": "approve"}, g.approver.signNow, http.StatusBadRequest},
		{"duplicate decision", e.CallbackURL, json.RawMessage(`{"id":"` + e.ID + `","decision":"deny","decision":"approve"}`), g.approver.signNow, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status := callback(t, tt.url, tt.body, tt.sign); status != tt.want {
				t.Errorf("status %d, want %d", status, tt.want)
			}
		})
	}
	resp, err := testClient.Get(g.Callbacks + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET on mcp_approvals without an inbox: %d, want 404", resp.StatusCode)
	}
	select {
	case r := <-done:
		t.Fatalf("a refused callback released the call: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}

	// A valid decision, then the very same message again, then another
	// decision: only the first counts.
	raw, _ := json.Marshal(map[string]string{"id": e.ID, "decision": "deny", "approver": "alice", "reason": "first"})
	header := make(http.Header)
	g.approver.signNow(header, raw)
	replay := func(h http.Header, _ []byte) {
		for name, values := range header {
			h[name] = values
		}
	}
	if status := callback(t, e.CallbackURL, json.RawMessage(raw), replay); status != http.StatusOK {
		t.Fatalf("first valid decision: status %d, want 200", status)
	}
	// A sender retrying a delivered message is told it was delivered
	// (Standard Webhooks senders retry until they see a 2xx); it decides
	// nothing again.
	if status := callback(t, e.CallbackURL, json.RawMessage(raw), replay); status != http.StatusOK {
		t.Errorf("the same message again: status %d, want 200", status)
	}
	// Another decision under a webhook-id used before is refused.
	other, _ := json.Marshal(map[string]string{"id": e.ID, "decision": "approve", "approver": "alice"})
	reuse := func(h http.Header, b []byte) {
		g.approver.secret.SetHeaders(h, header.Get("webhook-id"), time.Now(), b)
	}
	if status := callback(t, e.CallbackURL, json.RawMessage(other), reuse); status != http.StatusConflict {
		t.Errorf("another decision under a used webhook-id: status %d, want 409", status)
	}
	if status := g.approver.decide(t, e.CallbackURL, "approve", "second"); status != http.StatusConflict {
		t.Errorf("second decision: status %d, want 409", status)
	}
	res := awaitResult(t, done)
	if !res.IsError || !strings.Contains(resultText(res), "first") {
		t.Errorf("call after deny then approve: isError %v, %q; want the first decision (deny)", res.IsError, resultText(res))
	}
	if up.SawBodyContaining("guarded") {
		t.Error("the upstream saw the call")
	}
}

// TestApprovalProgressWhileHeld: a client that sent a progress token sees
// progress every keepalive while the call is held, then the upstream's
// result in the same stream, whether the upstream answers with an event
// stream or with JSON.
func TestApprovalProgressWhileHeld(t *testing.T) {
	for _, mode := range []upstreamtest.Mode{upstreamtest.StatefulSSE, upstreamtest.StatefulJSON} {
		t.Run(mode.Name, func(t *testing.T) {
			up := newUpstream(t, mode)
			g := startApprovalGateway(t, up, approvalSetup{keepalive: "100ms"})
			var progress atomic.Int32
			session := connect(t, g.URL, &mcp.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
					if strings.HasPrefix(req.Params.Message, "Waiting for approval apr_") {
						progress.Add(1)
					}
				},
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			params := createIssue("with progress")
			params.SetProgressToken("tok-1")
			done := callAsync(ctx, session, params)
			e := g.approver.waitFor(t, approval.EventRequested, 1)
			testwait.Until(t, 10*time.Second, func() string {
				if n := progress.Load(); n < 3 {
					return fmt.Sprintf("the client saw %d progress notifications while held, want 3 or more", n)
				}
				return ""
			})
			if status := g.approver.decide(t, e.CallbackURL, "approve", ""); status != http.StatusOK {
				t.Fatalf("approve: status %d", status)
			}
			res := awaitResult(t, done)
			if res.IsError || resultText(res) != "create_issue:with progress" {
				t.Errorf("approved call: isError %v, %q; want the upstream's result after the progress", res.IsError, resultText(res))
			}
		})
	}
}

// pendingID matches the approval id in a pending answer.
var pendingID = regexp.MustCompile(`Approval pending \(id (apr_[a-z2-7]{26})\)`)

// TestApprovalPendingThenRetry: a call not decided within hold comes back
// as pending, with the approval's id; the same call made again once it is
// approved runs once, without a new webhook; a third identical call needs
// a new approval.
func TestApprovalPendingThenRetry(t *testing.T) {
	g, up, session, ctx := approvalClient(t, approvalSetup{hold: "300ms"})
	call := func() *mcp.CallToolResult { return awaitResult(t, callAsync(ctx, session, createIssue("later"))) }

	res := call()
	match := pendingID.FindStringSubmatch(resultText(res))
	if !res.IsError || match == nil || !strings.Contains(resultText(res), "same call") {
		t.Fatalf("first call: isError %v, %q; want a pending answer with the approval id", res.IsError, resultText(res))
	}
	id := match[1]
	if res := call(); !strings.Contains(resultText(res), id) {
		t.Errorf("the same call while pending: %q; want it to wait on %s again", resultText(res), id)
	}
	if n := g.approver.count(approval.EventRequested); n != 1 {
		t.Errorf("%d approval webhooks for one call asked twice, want 1", n)
	}
	if status := g.approver.decide(t, g.Callbacks+"/"+id, "approve", ""); status != http.StatusOK {
		t.Fatalf("approve: status %d", status)
	}
	if res := call(); res.IsError || resultText(res) != "create_issue:later" {
		t.Errorf("the same call after approval: isError %v, %q; want it to run", res.IsError, resultText(res))
	}
	if n := g.approver.count(approval.EventRequested); n != 1 {
		t.Errorf("running the approved call sent a new webhook (%d in all)", n)
	}
	res = call()
	if match := pendingID.FindStringSubmatch(resultText(res)); match == nil || match[1] == id {
		t.Errorf("a third identical call: %q; want a new pending approval (the first is used up)", resultText(res))
	}
	if n := up.CallCount("create_issue"); n != 1 {
		t.Errorf("upstream ran create_issue %d times, want exactly once", n)
	}
}

// TestApprovalSurvivesReconnect: many clients open a new session for
// every attempt. An anonymous caller's pending answer carries a token
// (in its text and _meta) and the inbox link; the same call made in a new
// session with the token runs once approved, and neither the call
// without it nor another call with it runs on the approval.
func TestApprovalSurvivesReconnect(t *testing.T) {
	g, up, first, ctx := approvalClient(t, approvalSetup{hold: "300ms", inbox: "http://127.0.0.1:9/approvals/"})
	res := awaitResult(t, callAsync(ctx, first, createIssue("reconnect")))
	var meta struct {
		Approval struct {
			ID, Token, Inbox string
		} `json:"io.mcpgate/approval"`
	}
	raw, _ := json.Marshal(res.Meta)
	if err := json.Unmarshal(raw, &meta); err != nil || meta.Approval.Token == "" || !strings.Contains(resultText(res), meta.Approval.Token) ||
		meta.Approval.Inbox != "http://127.0.0.1:9/approvals/?approval="+meta.Approval.ID || !strings.Contains(resultText(res), meta.Approval.Inbox) {
		t.Fatalf("pending answer %q with _meta %s; want the approval's token and inbox link in both", resultText(res), raw)
	}
	if status := g.approver.decide(t, g.Callbacks+"/"+meta.Approval.ID, "approve", ""); status != http.StatusOK {
		t.Fatalf("approve: status %d", status)
	}
	second := connect(t, g.URL, nil)
	withToken := func(text string) *mcp.CallToolParams {
		return &mcp.CallToolParams{Name: "create_issue", Arguments: map[string]any{"text": text, "mcpgate_approval": meta.Approval.Token}}
	}
	if res := awaitResult(t, callAsync(ctx, second, withToken("other text"))); !res.IsError || up.CallCount("create_issue") != 0 {
		t.Errorf("another call with the token: %q; want it held on an approval of its own, not run", resultText(res))
	}
	if res := awaitResult(t, callAsync(ctx, second, createIssue("reconnect"))); !res.IsError || up.CallCount("create_issue") != 0 {
		t.Errorf("the same call in a new session without the token: %q; want it held anew, not run", resultText(res))
	}
	if res := awaitResult(t, callAsync(ctx, second, withToken("reconnect"))); res.IsError || resultText(res) != "create_issue:reconnect" {
		t.Errorf("the same call in a new session with the token: %q; want it run", resultText(res))
	}
	if up.SawBodyContaining("mcpgate_approval") {
		t.Error("the upstream saw the approval token")
	}
	forged := &mcp.CallToolParams{Name: "create_issue", Arguments: map[string]any{"text": "reconnect", "mcpgate_approval": "mcpgate1.forged"}}
	if _, err := second.CallTool(ctx, forged); err == nil {
		t.Error("a forged approval token was accepted")
	}
	if n := up.CallCount("create_issue"); n != 1 {
		t.Errorf("upstream ran create_issue %d times, want once", n)
	}
}

// postMCP POSTs one JSON-RPC message to the gateway.
func postMCP(ctx context.Context, url, session, body string) (*http.Response, error) {
	req, err := mcpRequest(ctx, http.MethodPost, url, session, body)
	if err != nil {
		return nil, err
	}
	return testClient.Do(req)
}

// mcpRequest returns a request to the gateway at url as a Streamable HTTP
// client makes it: with method, in session (none when it is empty),
// carrying body, one JSON-RPC message (nothing when it is empty).
func mcpRequest(ctx context.Context, method, url, session, body string) (*http.Request, error) {
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, reader)
	if err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	return req, nil
}

// postAsync POSTs one JSON-RPC message in the background, and returns
// where the answer's body (or the error) will come.
func postAsync(ctx context.Context, url, session, body string) <-chan string {
	answer := make(chan string, 1)
	go func() {
		resp, err := postMCP(ctx, url, session, body)
		if err != nil {
			answer <- err.Error()
			return
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer <- string(raw)
	}()
	return answer
}

// rawSession opens an MCP session by hand and returns its id.
func rawSession(t *testing.T, url string) string {
	t.Helper()
	resp, err := postMCP(context.Background(), url, "",
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	session := resp.Header.Get("Mcp-Session-Id")
	if session == "" {
		t.Fatalf("initialize gave no session (status %d)", resp.StatusCode)
	}
	resp, err = postMCP(context.Background(), url, session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return session
}

// TestApprovalCancelled: a client that cancels a held call (by
// notifications/cancelled, or by going away) cancels its approval, which
// is announced; a later approve gets 409, and the call never runs.
func TestApprovalCancelled(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	g := startApprovalGateway(t, up, approvalSetup{})
	call := `{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"name":"create_issue","arguments":{"text":"%s"}}}`

	t.Run("notifications/cancelled", func(t *testing.T) {
		session := rawSession(t, g.URL)
		answer := postAsync(context.Background(), g.URL, session, fmt.Sprintf(call, "cancel me"))
		e := g.approver.waitFor(t, approval.EventRequested, 1)
		// Another session's cancel for the same request id is not ours:
		// once it was taken (its POST answered), the approval is still
		// pending, so the reviewer's decision is accepted.
		resp, err := postMCP(context.Background(), g.URL, rawSession(t, g.URL),
			`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"call-7"}}`)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if status := g.approver.decide(t, e.CallbackURL, "deny", "not this one"); status != http.StatusOK {
			t.Fatalf("deciding after another session's cancel: status %d, want 200 (the approval still pending)", status)
		}
		if body := <-answer; !strings.Contains(body, "not this one") {
			t.Fatalf("the held call answered %s; want the denial (another session's cancel did not cancel it)", body)
		}

		answer = postAsync(context.Background(), g.URL, session, fmt.Sprintf(call, "cancel me too"))
		e = g.approver.waitFor(t, approval.EventRequested, 2)
		resp, err = postMCP(context.Background(), g.URL, session,
			`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"call-7","reason":"user pressed stop"}}`)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		select {
		case body := <-answer:
			if !strings.Contains(body, "cancelled") {
				t.Errorf("held call after cancel answered %s", body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the held call did not end on notifications/cancelled")
		}
		g.approver.waitFor(t, approval.EventCancelled, 1)
		if status := g.approver.decide(t, e.CallbackURL, "approve", ""); status != http.StatusConflict {
			t.Errorf("approve after cancel: status %d, want 409", status)
		}
	})

	t.Run("client disconnect", func(t *testing.T) {
		session := rawSession(t, g.URL)
		ctx, hangUp := context.WithCancel(context.Background())
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			if resp, err := postMCP(ctx, g.URL, session, fmt.Sprintf(call, "hang up")); err == nil {
				resp.Body.Close()
			}
		}()
		e := g.approver.waitFor(t, approval.EventRequested, 3)
		hangUp()
		<-ended
		g.approver.waitFor(t, approval.EventCancelled, 2)
		if status := g.approver.decide(t, e.CallbackURL, "approve", ""); status != http.StatusConflict {
			t.Errorf("approve after the client went away: status %d, want 409", status)
		}
	})

	// Every held call has ended by now: what the upstream saw is final.
	if n := up.CallCount("create_issue"); n != 0 || up.SawBodyContaining("create_issue") {
		t.Errorf("the upstream ran a cancelled call (%d times)", n)
	}
}

// TestApprovalInBatchRefused: a batch element that needs approval is
// refused with a reason that says why (batches cannot be held).
func TestApprovalInBatchRefused(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	g := startApprovalGateway(t, up, approvalSetup{})
	req, err := http.NewRequest(http.MethodPost, g.URL, strings.NewReader(
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"b"}}}]`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "sent alone over Streamable HTTP (not in a batch") || !strings.Contains(string(body), `"isError":true`) {
		t.Errorf("batched call that needs approval answered %s", body)
	}
	if n := g.approver.count(approval.EventRequested); n != 0 {
		t.Errorf("a batched call asked for approval (%d webhooks)", n)
	}
}

// TestApprovalSurvivesReload: a pending approval outlives a config reload
// (the memory store lives in a service shared across configs): approved
// after the reload, the same call runs.
func TestApprovalSurvivesReload(t *testing.T) {
	g, _, session, ctx := approvalClient(t, approvalSetup{hold: "300ms"})
	res := awaitResult(t, callAsync(ctx, session, createIssue("across reload")))
	match := pendingID.FindStringSubmatch(resultText(res))
	if match == nil {
		t.Fatalf("want a pending answer, got %q", resultText(res))
	}

	startCaddy(t, strings.Replace(g.caddyfile, "hold 300ms", "hold 400ms", 1))

	if status := g.approver.decide(t, g.Callbacks+"/"+match[1], "approve", ""); status != http.StatusOK {
		t.Fatalf("approve after reload: status %d, want 200 (the approval was lost?)", status)
	}
	res = awaitResult(t, callAsync(ctx, session, createIssue("across reload")))
	if res.IsError || resultText(res) != "create_issue:across reload" {
		t.Errorf("the approved call after a reload: isError %v, %q; want it to run", res.IsError, resultText(res))
	}
}

// startReplicas runs, in one Caddy with the global options, two gateway
// sites that replica makes over the Redis at redisAddr, on portA and
// portB, and a site on callbackPort taking callbacks. The two name the
// Redis differently (host:port, and a redis:// URL), so that each has an
// approval service of its own, as separate processes would, over one
// Redis and one approval instance, as replicas are.
func startReplicas(t *testing.T, global string, replica func(port int, redis string) string, redisAddr string, portA, portB, callbackPort int) {
	t.Helper()
	startCaddy(t, global+replica(portA, redisAddr)+replica(portB, "redis://"+redisAddr)+fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	handle /approvals/* {
		mcp_approvals
	}
}
`, callbackPort))
	waitForListener(t, portA)
	waitForListener(t, callbackPort)
}

// TestApprovalAcrossReplicas runs two gateways over one Redis, as two
// replicas: one Caddy config with two gateway sites, each with an approval
// service of its own (see startReplicas), and a callback site. A call
// held on one is released by a decision taken by whichever service the
// callback finds, and the same call on the other replica waits on the
// same approval.
func TestApprovalAcrossReplicas(t *testing.T) {
	redisAddr := redistest.Start(t)
	up := newUpstream(t, upstreamtest.StatelessSSE)
	approver := newApprover(t)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	portA, portB, callbackPort := freePort(t), freePort(t), freePort(t)
	callbacks := fmt.Sprintf("http://127.0.0.1:%d/approvals", callbackPort)
	replica := func(port int, redis string) string {
		return approvalSite(port, up, approver.URL, callbacks, "hold 3s", "store redis "+redis)
	}
	startReplicas(t, globalOptions(t), replica, redisAddr, portA, portB, callbackPort)

	urlA := fmt.Sprintf("http://127.0.0.1:%d/mcp", portA)
	urlB := fmt.Sprintf("http://127.0.0.1:%d/mcp", portB)
	// Stateless sessions, so the same call can be asked on either replica.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"replicated"}}}`
	heldOnA := postAsync(ctx, urlA, "", call)
	e := approver.waitFor(t, approval.EventRequested, 1)
	// The same call on the other replica waits on the same approval: its
	// first progress notification names the approval it waits on.
	withProgress := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"replicated"},"_meta":{"progressToken":"b"}}}`
	heldOnB := make(chan string, 1)
	respB, err := postMCP(ctx, urlB, "", withProgress)
	if err != nil {
		t.Fatal(err)
	}
	eventsB := clienttest.EventData(respB)
	if first := <-eventsB; !strings.Contains(first, "notifications/progress") || !strings.Contains(first, e.ID) {
		t.Fatalf("the same call on the second replica first heard %s; want it to wait on %s", first, e.ID)
	}
	go func() {
		defer respB.Body.Close()
		var all []string
		for event := range eventsB {
			all = append(all, event)
		}
		heldOnB <- strings.Join(all, "\n")
	}()
	if status := approver.decide(t, e.CallbackURL, "approve", ""); status != http.StatusOK {
		t.Fatalf("approve through replica b's callbacks: status %d", status)
	}
	var ran, refused int
	for _, held := range []<-chan string{heldOnA, heldOnB} {
		select {
		case body := <-held:
			switch {
			case strings.Contains(body, "create_issue:replicated"):
				ran++
			case strings.Contains(body, "Approval pending"):
				refused++
			default:
				t.Errorf("a held call answered %s", body)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a held call was not released by the decision taken on the other replica")
		}
	}
	// One approval runs one call; the other identical call asked anew
	// (and, with no decision within hold, came back pending).
	if ran != 1 || up.CallCount("create_issue") != 1 {
		t.Errorf("%d held calls ran (upstream ran %d), want exactly 1", ran, up.CallCount("create_issue"))
	}

	// With the approval store in Redis, the replicas keep their tool pins
	// there too, so an accepted definition is accepted everywhere.
	pins := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer pins.Close()
	keys, err := pins.Keys(ctx, "mcpgate:pins:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("pin keys in Redis = %v (%v), want one server's", keys, err)
	}
	if hash, err := pins.HGet(ctx, keys[0], "create_issue").Result(); err != nil || len(hash) != 64 {
		t.Errorf("pin of create_issue in Redis = %q (%v), want a SHA-256", hash, err)
	}
}

// TestApprovalAdminAPI lists held calls and decides them through Caddy's
// admin API (what `mcpgate approvals` uses), and reads the approval
// metrics.
func TestApprovalAdminAPI(t *testing.T) {
	adminOption, _, adminClient := caddytest.AdminSocket(t)
	const admin = "http://admin"
	g, _, e, done := holdCall(t, approvalSetup{global: []string{adminOption}}, "via admin")

	status, body := adminRequest(t, adminClient, http.MethodGet, admin+"/mcpgate/approvals", nil)
	var listed []approval.Approval
	if err := json.Unmarshal(body, &listed); status != http.StatusOK || err != nil || len(listed) != 1 ||
		listed[0].ID != e.ID || listed[0].State != approval.Pending || string(listed[0].Arguments) != `{"text":"via admin"}` {
		t.Fatalf("GET /mcpgate/approvals: %d %s (%v); want the one pending call", status, body, err)
	}
	metrics := func() string {
		resp, err := testClient.Get(strings.TrimSuffix(g.Callbacks, "/approvals") + "/metrics")
		if err != nil {
			t.Fatalf("reading metrics: %v", err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return string(raw)
	}
	if m := metrics(); !strings.Contains(m, `mcpgate_pending_approvals{instance="default"} 1`) {
		t.Errorf("metrics lack one pending approval:\n%s", grepLines(m, "mcpgate_"))
	}

	tests := []struct {
		name, path string
		want       int
	}{
		{"unknown id", "/mcpgate/approvals/apr_aaaaaaaaaaaaaaaaaaaaaaaaaa/approve", http.StatusNotFound},
		{"unknown verb", "/mcpgate/approvals/" + e.ID + "/maybe", http.StatusNotFound},
		{"deny", "/mcpgate/approvals/" + e.ID + "/deny", http.StatusOK},
		{"second decision", "/mcpgate/approvals/" + e.ID + "/approve", http.StatusConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := adminRequest(t, adminClient, http.MethodPost, admin+tt.path, map[string]string{"approver": "ops", "reason": "use the staging tracker"})
			if status != tt.want {
				t.Errorf("POST %s: %d %s, want %d", tt.path, status, body, tt.want)
			}
		})
	}
	res := awaitResult(t, done)
	if !res.IsError || !strings.Contains(resultText(res), "Denied by admin: use the staging tracker") {
		t.Errorf("denied through the admin API, the call answered %q", resultText(res))
	}
	testwait.Until(t, 5*time.Second, func() string {
		m := metrics()
		for _, want := range []string{
			`mcpgate_pending_approvals{instance="default"} 0`,
			`mcpgate_approval_wait_seconds_count{instance="default",outcome="denied"} 1`,
		} {
			if !strings.Contains(m, want) {
				return "metrics lack " + want + ":\n" + grepLines(m, "mcpgate_")
			}
		}
		return ""
	})
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestApprovalConfig adapts the approval Caddyfile syntax to JSON, and
// checks that configurations that can never work are refused when Caddy
// loads them.
func TestApprovalConfig(t *testing.T) {
	t.Setenv("MCP_WEBHOOK_SECRET", testWebhookSecret)
	site := func(approvalBlock string) string {
		return `
http://gw.example.com {
	handle /approvals/* {
		mcp_approvals {
			instance main
		}
	}
	handle {
		mcp_policy {
			policy testdata/policy
			approval {
				` + approvalBlock + `
			}
		}
		reverse_proxy 127.0.0.1:9000
	}
}
`
	}
	full := site(`webhook https://approver.internal/hook https://backup.internal/hook
				webhook {env.SLACK_WEBHOOK_URL} {
					template ../examples/webhooks/slack.json.tmpl
					content_type "application/json; charset=utf-8"
				}
				inbox_url https://gw.example.com/approvals/
				webhook_secret {env.MCP_WEBHOOK_SECRET} {env.MCP_WEBHOOK_SECRET_OLD}
				decision_secret {env.MCP_DECISION_SECRET}
				decision_secret {env.MCP_DECISION_SECRET_OLD}
				callback_url https://gw.example.com/approvals
				timeout 10m
				keepalive 15s
				hold 50s
				store redis 127.0.0.1:6379
				instance main`)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(full), nil)
	if err != nil {
		t.Fatalf("adapting the approval Caddyfile: %v", err)
	}
	for _, want := range []string{
		`"approval":{"callback_url":"https://gw.example.com/approvals",` +
			`"decision_secrets":["{env.MCP_DECISION_SECRET}","{env.MCP_DECISION_SECRET_OLD}"],` +
			`"hold":50000000000,"inbox_url":"https://gw.example.com/approvals/","instance":"main","keepalive":15000000000,` +
			`"redis":"127.0.0.1:6379","store":"redis","timeout":600000000000,` +
			`"webhook_secrets":["{env.MCP_WEBHOOK_SECRET}","{env.MCP_WEBHOOK_SECRET_OLD}"],` +
			`"webhooks":["https://approver.internal/hook","https://backup.internal/hook",` +
			`{"content_type":"application/json; charset=utf-8","template":"../examples/webhooks/slack.json.tmpl","url":"{env.SLACK_WEBHOOK_URL}"}]}`,
		`{"handler":"mcp_approvals","instance":"main"}`,
	} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("adapted config lacks %s:\n%s", want, cfg)
		}
	}

	for _, bad := range []string{"store redis", "hold -1s", "timeout soon", "retries 3", "store sqlite", "secret " + testWebhookSecret, "webhook_secret", "decision_secret",
		"inbox_url", "inbox_url https://a.example/ https://b.example/", "webhook https://a.example/hook https://b.example/hook {\n template x.tmpl\n }",
		"webhook https://a.example/hook {\n templte x.tmpl\n }", "webhook https://a.example/hook {\n template\n }", "webhook {\n template x.tmpl\n }"} {
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site(bad)), nil); err == nil {
			t.Errorf("the Caddyfile accepted %q in an approval block", bad)
		}
	}

	lines := func(lines ...string) string { return strings.Join(lines, "\n\t\t\t\t") }
	const (
		webhook  = "webhook https://approver.internal/hook"
		callback = "callback_url https://gw.example.com/approvals"
		other    = "whsec_" + "b3RoZXIgc2VjcmV0cyBhcmUgbG9uZyBlbm91Z2ggdG9v"
		older    = "whsec_" + "YW4gb2xkZXIgZGVjaXNpb24gc2VjcmV0LCByb3RhdGVk"
	)
	webhookSecret, decisionSecret := "webhook_secret "+testWebhookSecret, "decision_secret "+testDecisionSecret
	required := lines(webhook, webhookSecret, decisionSecret, callback)
	secrets := lines(webhookSecret, decisionSecret, callback)
	withTemplate := func(url, options string) string {
		return "webhook " + url + " {\n\t\t\t\t\t" + options + "\n\t\t\t\t}"
	}
	tests := []struct {
		name, block string
		loads       bool
		// errorSays is in the error of a block that does not load.
		errorSays string
	}{
		{"the required lines", required, true, ""},
		{"several secrets each", lines(webhook, "webhook_secret "+testWebhookSecret+" "+other, decisionSecret, "decision_secret "+older, callback), true, ""},
		{"no webhook", lines(webhookSecret, decisionSecret, callback), false, ""},
		{"no webhook secret", lines(webhook, decisionSecret, callback), false, ""},
		{"no decision secret", lines(webhook, webhookSecret, callback), false, ""},
		{"one secret for both", lines(webhook, webhookSecret, "decision_secret "+testWebhookSecret, callback), false, ""},
		{"a webhook secret among the decision secrets", lines(webhook, "webhook_secret "+other+" "+testWebhookSecret,
			"decision_secret "+testDecisionSecret+" "+other, callback), false, ""},
		{"short secret", lines(webhook, webhookSecret, "decision_secret whsec_c2hvcnQ=", callback), false, ""},
		{"relative callback_url", lines(webhook, webhookSecret, decisionSecret, "callback_url /approvals"), false, ""},
		{"redis address without store redis", required + "\n\t\t\t\tstore memory\n\t\t\t\t", false, ""},
		{"the shipped templates and an inbox", lines(withTemplate("https://hooks.slack.com/services/T/B/X", "template ../examples/webhooks/slack.json.tmpl"),
			withTemplate("https://tickets.internal/new", "template ../examples/webhooks/ticket.json.tmpl\n\t\t\t\t\tcontent_type application/json"),
			"inbox_url https://gw.example.com/approvals/", secrets), true, ""},
		{"a template path from the environment", lines(withTemplate("https://hooks.slack.com/services/T/B/X", "template {env.APPROVAL_TEMPLATES}/slack.json.tmpl"), secrets), true, ""},
		{"a missing template", lines(withTemplate("https://a.example/hook", "template approval/testdata/missing.tmpl"), secrets), false, "missing.tmpl"},
		{"a template with a syntax error", lines(withTemplate("https://a.example/hook", "template approval/testdata/broken.json.tmpl"), secrets), false, "approval/testdata/broken.json.tmpl:2"},
		{"content_type without a template", lines(withTemplate("https://a.example/hook", "content_type text/plain"), secrets), false, "content_type needs a template"},
		{"a webhook URL that is not http(s)", lines("webhook ftp://hooks.example/services/T/B/s3cret-token", secrets), false, "webhook ftp://hooks.example: the url is not an absolute http(s) URL"},
		{"a webhook URL that does not parse", lines("webhook https://hooks.example:notaport/services/T/B/s3cret-token", secrets), false, "the url is not an absolute http(s) URL"},
		{"a webhook whose template is missing", lines(withTemplate("https://hooks.example/services/T/B/s3cret-token", "template approval/testdata/missing.tmpl"), secrets), false, "webhook https://hooks.example: "},
		{"an invalid content_type", lines(withTemplate("https://a.example/hook", "template ../examples/webhooks/ticket.json.tmpl\n\t\t\t\t\tcontent_type a/b/c"), secrets), false, "content_type"},
		{"a relative inbox_url", lines(required, "inbox_url /approvals/"), false, "inbox_url"},
		{"an inbox_url with a query", lines(required, "inbox_url https://gw.example.com/approvals/?tenant=a"), false, "query"},
	}
	t.Setenv("APPROVAL_TEMPLATES", "../examples/webhooks")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site(tt.block)), nil)
			if err != nil && !tt.loads {
				return // refused already
			}
			if tt.name == "redis address without store redis" {
				adapted = bytes.Replace(adapted, []byte(`"store":"memory"`), []byte(`"store":"memory","redis":"127.0.0.1:1"`), 1)
			}
			var c caddy.Config
			if err := json.Unmarshal(adapted, &c); err != nil {
				t.Fatal(err)
			}
			err = caddy.Validate(&c)
			switch {
			case tt.loads && err != nil:
				t.Errorf("Caddy refused a good approval block: %v", err)
			case !tt.loads && err == nil:
				t.Errorf("Caddy loaded an approval block with %s", tt.name)
			case !tt.loads && !strings.Contains(err.Error(), tt.errorSays):
				t.Errorf("Caddy refused an approval block with %s saying %v; want it to mention %q", tt.name, err, tt.errorSays)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Errorf("the error shows a webhook URL's credential: %v", err)
			}
		})
	}

	t.Run("webhooks in JSON", func(t *testing.T) {
		adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site(required)), nil)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, webhooks string
			loads          bool
		}{
			{"URL strings", `["https://a.example/hook"]`, true},
			{"objects and strings", `[{"url":"https://a.example/hook","template":"../examples/webhooks/slack.json.tmpl"},"https://b.example/hook"]`, true},
			{"an object without a template", `[{"url":"https://a.example/hook"}]`, true},
			{"an object with an unknown member", `[{"url":"https://a.example/hook","templates":"x"}]`, false},
			{"an object without a url", `[{"template":"../examples/webhooks/slack.json.tmpl"}]`, false},
			{"a url in another case", `[{"URL":"https://a.example/hook"}]`, false},
			{"a url beside one in another case", `[{"url":"https://a.example/hook","Url":"https://b.example/hook"}]`, false},
			{"a number", `[1]`, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				config := bytes.Replace(adapted, []byte(`"webhooks":["https://approver.internal/hook"]`), []byte(`"webhooks":`+tt.webhooks), 1)
				if bytes.Equal(config, adapted) {
					t.Fatalf("the adapted config has no webhooks to replace:\n%s", adapted)
				}
				var c caddy.Config
				err := json.Unmarshal(config, &c)
				if err == nil {
					err = caddy.Validate(&c)
				}
				switch {
				case tt.loads && err != nil:
					t.Errorf("webhooks %s refused: %v", tt.webhooks, err)
				case !tt.loads && err == nil:
					t.Errorf("webhooks %s loaded, want them refused", tt.webhooks)
				}
			})
		}
	})

	t.Run("a template reaches its receiver", func(t *testing.T) {
		webhookSecret := approvaltest.MustSecret(t, testWebhookSecret)
		type delivery struct {
			header http.Header
			body   []byte
		}
		arrived := make(chan delivery, 8)
		receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			arrived <- delivery{r.Header.Clone(), body}
		}))
		t.Cleanup(receiver.Close)
		up := newUpstream(t, upstreamtest.StatefulSSE)
		t.Setenv("XDG_DATA_HOME", t.TempDir())
		port := freePort(t)
		startCaddy(t, globalOptions(t)+approvalSite(port, up, receiver.URL+"/hook {\n\t\t\t\ttemplate ../examples/webhooks/ticket.json.tmpl\n\t\t\t}",
			"https://gw.example.com/approvals", "inbox_url https://gw.example.com/approvals/"))
		waitForListener(t, port)
		session := connect(t, fmt.Sprintf("http://127.0.0.1:%d/mcp", port), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		callAsync(ctx, session, createIssue(`say "hi"`))
		var d delivery
		select {
		case d = <-arrived:
		case <-ctx.Done():
			t.Fatal("no webhook reached the template's receiver")
		}
		if _, err := webhookSecret.Verify(d.header, d.body, time.Now()); err != nil {
			t.Errorf("the rendered webhook's signature: %v, want it verified", err)
		}
		id := strings.TrimSuffix(strings.TrimPrefix(d.header.Get(approval.HeaderID), "msg_"), "_requested")
		var ticket struct {
			Subject string
			Body    string
			Links   []struct{ URL string }
		}
		if err := json.Unmarshal(d.body, &ticket); err != nil {
			t.Fatalf("the receiver got %s, not the ticket JSON: %v", d.body, err)
		}
		inbox := "https://gw.example.com/approvals/?approval=" + id
		if ticket.Subject != `Approval requested: "create_issue" on "test"` || !strings.Contains(ticket.Body, `"text": "say \"hi\""`) ||
			len(ticket.Links) != 1 || ticket.Links[0].URL != inbox {
			t.Errorf("the receiver got %s; want the ticket of create_issue on test, its arguments, and the link %s", d.body, inbox)
		}
	})
}

// TestThousandHeldCalls holds 999 calls at once (and one to warm up: as
// many as approval.MaxPending), each on its own connection and its own
// approval, measures the heap and stacks in use per held call, then
// denies them all through callbacks. It asserts no timing; run with -v to
// see the figure (README, "Approvals").
func TestThousandHeldCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	const calls = approval.MaxPending - 1
	up := newUpstream(t, upstreamtest.StatelessJSON)
	g := startApprovalGateway(t, up, approvalSetup{hold: "60s", keepalive: "15s", timeout: "10m"})
	g.approver.keepEvents = false
	host := strings.TrimPrefix(strings.TrimSuffix(g.URL, "/mcp"), "http://")

	// One call first, so that the tool list is fetched and every pool is
	// warm before measuring.
	warm := callOn(t, host, -1)
	g.approver.waitFor(t, approval.EventRequested, 1)
	heapBefore, stackBefore := memInUse()

	conns := make([]net.Conn, calls)
	for i := range conns {
		conns[i] = callOn(t, host, i)
	}
	g.approver.waitFor(t, approval.EventRequested, calls+1)
	heapAfter, stackAfter := memInUse()
	heap := float64(heapAfter-heapBefore) / calls / 1024
	stack := float64(stackAfter-stackBefore) / calls / 1024
	t.Logf("%d held calls: %.1f KiB in use per held call (%.1f KiB heap, %.1f KiB goroutine stacks; the gateway and the test's raw connections, one process)",
		calls, heap+stack, heap, stack)

	g.approver.mu.Lock()
	ids := append([]string(nil), g.approver.ids...)
	g.approver.mu.Unlock()
	work := make(chan string)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for id := range work {
				if status := g.approver.decide(t, g.Callbacks+"/"+id, "deny", "load test"); status != http.StatusOK {
					t.Errorf("deny %s: status %d", id, status)
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	for i, conn := range append(conns, warm) {
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("held call %d: reading the answer: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if !strings.Contains(string(body), "Denied by webhook: load test") {
			t.Fatalf("held call %d answered %s", i, body)
		}
	}
	if up.CallCount("create_issue") != 0 {
		t.Error("the upstream ran a denied call")
	}
}

// callOn sends call number i (each with its own arguments, so its own
// approval) on a raw connection, and leaves the answer unread.
func callOn(t *testing.T, host string, i int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatalf("connecting to the gateway: %v", err)
	}
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"call %d"}}}`, i)
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
		"MCP-Protocol-Version: 2025-06-18\r\nContent-Length: %d\r\n\r\n%s", host, len(body), body)
	return conn
}

// memInUse returns the heap and stack memory in use after a collection.
func memInUse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

// TestSecretRotation rotates the decision secret and the session key of
// two replicas sharing Redis while an approval is pending and a session
// is open: listed second, the old ones still decide the approvals and
// open the sessions made with them; retired, they no longer do.
func TestSecretRotation(t *testing.T) {
	redisAddr := redistest.Start(t)
	up := newUpstream(t, upstreamtest.StatefulSSE)
	approver := newApprover(t)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	const (
		oldDecision = testDecisionSecret
		newDecision = "whsec_bmV3IGRlY2lzaW9ucyBhcmUgc2lnbmVkIHdpdGggdGhpcw=="
		oldSession  = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
		newSession  = "ZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleWZha2U="
	)
	portA, portB, callbackPort := freePort(t), freePort(t), freePort(t)
	callbacks := fmt.Sprintf("http://127.0.0.1:%d/approvals", callbackPort)
	global := globalOptions(t)
	configure := func(decisionSecrets, sessionKeys string) {
		t.Helper()
		replica := func(port int, redis string) string {
			return fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_policy {
		policy testdata/policy
		server test
		upstream test
		session_keys %s
		approval {
			webhook %s
			webhook_secret %s
			decision_secret %s
			callback_url %s
			store redis %s
			hold 15s
		}
	}
	reverse_proxy %s
}
`, port, sessionKeys, approver.URL, testWebhookSecret, decisionSecrets, callbacks, redis, strings.TrimPrefix(up.URL, "http://"))
		}
		startReplicas(t, global, replica, redisAddr, portA, portB, callbackPort)
	}
	signWith := func(secret string) func(http.Header, []byte) {
		s := approvaltest.MustSecret(t, secret)
		return func(h http.Header, body []byte) {
			var id [8]byte
			_, _ = rand.Read(id[:])
			s.SetHeaders(h, "msg_"+hex.EncodeToString(id[:]), time.Now(), body)
		}
	}
	decide := func(e approval.Event, secret string) int {
		return callback(t, e.CallbackURL, map[string]string{"id": e.ID, "decision": "approve"}, signWith(secret))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	configure(oldDecision, oldSession)
	session := connect(t, fmt.Sprintf("http://127.0.0.1:%d/mcp", portA), nil)
	done := callAsync(ctx, session, createIssue("rotated"))
	e := approver.waitFor(t, approval.EventRequested, 1)

	configure(newDecision+" "+oldDecision, newSession+" "+oldSession)
	if status := decide(e, newDecision); status != http.StatusOK {
		t.Fatalf("deciding, with the new secret, an approval announced under the old one: %d, want 200", status)
	}
	if res := awaitResult(t, done); res.IsError || up.CallCount("create_issue") != 1 {
		t.Errorf("the call held across the rotation answered %q (ran %d times); want it run", resultText(res), up.CallCount("create_issue"))
	}
	if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "still here"}}); err != nil {
		t.Errorf("the session opened under the old key, during the rotation: %v; want it to go on", err)
	}

	configure(newDecision, newSession)
	if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "retired"}}); err == nil {
		t.Error("the session opened under a retired key still works")
	}
	fresh := connect(t, fmt.Sprintf("http://127.0.0.1:%d/mcp", portB), nil)
	done = callAsync(ctx, fresh, createIssue("after the rotation"))
	e = approver.waitFor(t, approval.EventRequested, 2)
	if status := decide(e, oldDecision); status != http.StatusUnauthorized {
		t.Errorf("a decision signed with the retired secret: %d, want 401", status)
	}
	if status := decide(e, newDecision); status != http.StatusOK {
		t.Errorf("a decision signed with the new secret: %d, want 200", status)
	}
	if res := awaitResult(t, done); res.IsError {
		t.Errorf("approved after the rotation, the call answered %q", resultText(res))
	}
}

// TestApprovalSettingsOfOneServiceAgree: handlers that share an approval
// service (one store and instance) with different approval settings are
// refused at load, since the service would run with one of them; with an
// instance each, or with the same settings, they load. Handlers of two
// services, one's webhook secret signing as the other's decision secret,
// are refused too.
func TestApprovalSettingsOfOneServiceAgree(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	redisAddress := redistest.Start(t)
	// A secret, and one whose key is the same with a zero byte after it,
	// which HMAC signs with alike.
	crossedKey := []byte("a secret of one handler's approvals, 32+")
	crossed := "whsec_" + base64.StdEncoding.EncodeToString(crossedKey)
	// auditSecond, among a handler's lines, turns its audit on.
	const auditSecond = "(audit)"
	crossedWithZero := "whsec_" + base64.StdEncoding.EncodeToString(append(crossedKey, 0))
	tests := []struct {
		name          string
		first, second []string
		wantErr       string
	}{
		{"the same settings", nil, nil, ""},
		{"other durations, one instance", []string{"timeout 1m"}, []string{"timeout 2m"}, "different approval settings"},
		{"another callback URL, one instance", nil, []string{"inbox_url https://gw.example.com/approvals/"}, "different approval settings"},
		{"other durations, an instance each", []string{"timeout 1m", "instance a"}, []string{"timeout 2m", "instance b"}, ""},
		{"other durations, one Redis spelt two ways", []string{"timeout 1m", "store redis " + redisAddress},
			[]string{"timeout 2m", "store redis redis://" + redisAddress + "/0"}, "different approval settings"},
		{"other durations, two databases of one Redis", []string{"timeout 1m", "store redis " + redisAddress},
			[]string{"timeout 2m", "store redis redis://" + redisAddress + "/1"}, ""},
		{"one Redis, two passwords", []string{"store redis redis://:one@" + redisAddress},
			[]string{"store redis redis://:two@" + redisAddress}, "different approval settings"},
		// Whoever receives one's approval requests could decide the
		// other's calls.
		{"one's decision secret the other's webhook secret, an instance each", []string{"instance a", "decision_secret " + crossed},
			[]string{"instance b", "webhook_secret " + crossed}, "could decide the second's calls"},
		{"the same the other way", []string{"instance a", "webhook_secret " + crossed},
			[]string{"instance b", "decision_secret " + crossed}, "could decide the second's calls"},
		{"one's decision secret signing as the other's webhook secret", []string{"instance a", "decision_secret " + crossed},
			[]string{"instance b", "webhook_secret " + crossedWithZero}, "could decide the second's calls"},
		// The service writes the audit records of approvals settled,
		// with one handler's audit logger.
		{"audit in one handler only", nil, []string{auditSecond}, "different approval settings"},
		{"audit in one handler only, an instance each", []string{"instance a"}, []string{"instance b", auditSecond}, ""},
		{"one decision secret for both, an instance each", []string{"instance a", "decision_secret " + crossed},
			[]string{"instance b", "decision_secret " + crossed}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			// Pins in files, so that no handler connects to a Redis it
			// cannot reach (TLS, a password) before the settings are
			// compared: handlers provision in no fixed order.
			site := func(lines []string) string {
				policy := testPolicy + "\n\t\tpins_file " + filepath.Join(t.TempDir(), "pins.json")
				if i := slices.Index(lines, auditSecond); i >= 0 {
					lines = slices.Delete(slices.Clone(lines), i, i+1)
					policy += "\n\t\taudit"
				}
				return approvalSiteWith(freePort(t), policy, up, "http://127.0.0.1:9/hook", "http://127.0.0.1:9/approvals", lines...)
			}
			err := loadCaddyfile(t, globalOptions(t)+site(tt.first)+site(tt.second))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("refused: %v; want it loaded", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("%v; want it refused with %q", err, tt.wantErr)
			}
		})
	}
}

// TestApprovalRequestsRateLimited: a rate limit on the calls that need
// approval bounds how often callers ask for it (docs/approvals.md,
// "Bounding requests for approval"): past it, a call that needs approval
// is refused before any approval is asked for, and allowed calls are not
// counted.
func TestApprovalRequestsRateLimited(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	approver := newApprover(t)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	port := freePort(t)
	startCaddy(t, globalOptions(t)+approvalSiteWith(port, testPolicy+"\n\t\trate_limit {mcp.server} 2/1h {\n\t\t\tactions needs_approval\n\t\t}",
		up, approver.URL, "http://127.0.0.1:9/approvals", "hold 10ms"))
	waitForListener(t, port)
	gateway := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for i, text := range []string{"one", "two", "three"} {
		_, body := post(t, gateway, nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"`+text+`"}}}`)
		limited := strings.Contains(string(body), "Rate limit")
		if limited != (i == 2) {
			t.Errorf("call %d asking for approval: %s; want it refused by the limit: %v", i+1, body, i == 2)
		}
	}
	approver.waitFor(t, string(approval.EventRequested), 2)
	if n := approver.count(string(approval.EventRequested)); n != 2 {
		t.Errorf("%d approvals asked for, want 2", n)
	}
	for i := range 3 {
		if _, body := post(t, gateway, nil, callEcho); strings.Contains(string(body), "Rate limit") {
			t.Errorf("allowed call %d: %s; want it not counted", i+1, body)
		}
	}
}

// TestHoldWithinWriteTimeout: a call held under a server write timeout
// shorter than hold is answered pending while its answer can still be
// written, and an approval that comes after runs nothing: the call used
// to be held past the timeout, its pending answer lost, and, approved
// then, it ran on the upstream while its client got a cut connection
// (and would make it again).
func TestHoldWithinWriteTimeout(t *testing.T) {
	g, up, session, ctx := approvalClient(t, approvalSetup{hold: "5s",
		global: []string{"servers {\n\t\ttimeouts {\n\t\t\twrite 2s\n\t\t}\n\t}"}})
	done := callAsync(ctx, session, createIssue("late approve"))
	e := g.approver.waitFor(t, approval.EventRequested, 1)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("the held call: %v; want its pending answer", r.err)
		}
		if text := resultText(r.res); !strings.Contains(text, "pending") {
			t.Fatalf("the held call: %q; want its pending answer", text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held call was not answered")
	}
	if status := g.approver.decide(t, e.CallbackURL, "approve", ""); status != http.StatusOK {
		t.Fatalf("approving: %d", status)
	}
	time.Sleep(200 * time.Millisecond)
	if ran := up.CallCount("create_issue"); ran != 0 {
		t.Errorf("the call ran %d times on an approval that came after its client was answered pending", ran)
	}
}

// TestInstancesKeepTheirPins: two approval instances sharing one Redis
// (two teams) keep their tool pins apart, as their approvals: team B's
// echo, another MCP server's of the same upstream name, was refused as a
// changed definition of team A's, and either team's acceptance applied
// to both.
func TestInstancesKeepTheirPins(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	redisAddr := redistest.Start(t)
	echo := func(description string) *upstreamtest.Upstream {
		return upstreamtest.New(t, upstreamtest.StatefulJSON, []*mcp.Tool{{Name: "echo", Description: description, Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}}, 0)
	}
	for _, team := range []struct{ instance, description string }{{"team-a", "team A's echo"}, {"team-b", "team B's echo"}} {
		t.Run(team.instance, func(t *testing.T) {
			port := freePort(t)
			startCaddy(t, globalOptions(t)+approvalSiteWith(port, "permissions {\n\t\t\tread_only allow\n\t\t}", echo(team.description),
				"http://127.0.0.1:9/hook", "http://127.0.0.1:9/cb", "store redis "+redisAddr, "instance "+team.instance))
			waitForListener(t, port)
			text, refused := callEchoText(t, connect(t, fmt.Sprintf("http://127.0.0.1:%d/", port), nil))
			if refused {
				t.Errorf("%s's echo: %q; want it run", team.instance, text)
			}
			_ = caddy.Stop()
		})
	}
}

// TestApprovalsServeAnInstance: an mcp_approvals handler that names no
// approval instance of its configuration (instances match exactly), or
// that is in a configuration with no approval block at all, does not
// load: it serves only its own process's approvals, so every callback and
// inbox decision would find nothing.
func TestApprovalsServeAnInstance(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	const none = "no approval block"
	approvals := func(instance string) string {
		if instance != "" {
			instance = "instance " + instance
		}
		return fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\tmcp_approvals {\n\t\t%s\n\t}\n}\n", freePort(t), instance)
	}
	tests := []struct {
		name, policyInstance, served, wantErr string
	}{
		{"the instance served", "team-a", "team-a", ""},
		{"every instance", "team-a", "", ""},
		{"the default instance by name", "", "default", ""},
		{"the instance in another case", "team-a", "Team-A", `instance "Team-A" is no approval instance of this configuration's mcp_policy handlers ("team-a"); did you mean "team-a"?`},
		{"another instance", "", "team-a", `instance "team-a" is no approval instance of this configuration's mcp_policy handlers ("default")`},
		{"an instance, and no approval block", none, "team-a", `instance "team-a" is no approval instance of this configuration's mcp_policy handlers (there are none)`},
		{"every instance, and no approval block", none, "", "no mcp_policy handler of this configuration has an approval block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			site := policySite(freePort(t), "", testPolicy+"\n\t\tserver test", up.URL)
			if tt.policyInstance != none {
				var lines []string
				if tt.policyInstance != "" {
					lines = append(lines, "instance "+tt.policyInstance)
				}
				site = approvalSite(freePort(t), up, "http://127.0.0.1:9/hook", "http://127.0.0.1:9/cb", lines...)
			}
			err := loadCaddyfile(t, globalOptions(t)+site+approvals(tt.served))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("loading: %v; want an error containing %q (none if empty)", err, tt.wantErr)
			}
		})
	}
}

// approversInbox is a site whose mcp_approvals inbox has the account
// alice, and the lines given (groups).
func approversInbox(t *testing.T, lines string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\tmcp_approvals {\n\t\tinbox {\n\t\t\tbasic_auth {\n\t\t\t\talice %s\n\t\t\t}\n\t\t\t%s\n\t\t}\n\t}\n}\n",
		freePort(t), hash, lines)
}

// permissionsData writes a policy data file holding table as
// data.mcp.permissions, and returns its folder.
func permissionsData(t *testing.T, table string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "permissions.json"), []byte(`{"mcp": {"permissions": `+table+`}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestApproversHeld: a permissions table entry whose approvers are all
// inbox approvers no inbox of its approval instance holds (a group it
// lacks, an account it lacks, any account where there is no inbox) does
// not load with a memory store: only the approvers named may decide, so
// its calls would wait until they expire (the caller too, beside them:
// a client that cannot be asked leaves the call to them). An entry with
// another approver that can decide (a decision secret's holder, an
// operator),
// or a tool's on every server in policy data (a table several servers
// may share), loads, with a warning.
func TestApproversHeld(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	table := func(line string) string {
		return "permissions {\n\t\t\tread_only allow\n\t\t\t" + line + "\n\t\t}"
	}
	leadsOnTest := permissionsData(t, `{"read_only": "allow", "servers": {"test": {"tools": {"create_issue": {"action": "needs_approval", "approvers": ["group:leads"]}}}}}`)
	leadsElsewhere := permissionsData(t, `{"read_only": "allow", "servers": {"other": {"write": {"action": "needs_approval", "approvers": ["group:leads"]}}}}`)
	sendOnEveryServer := permissionsData(t, `{"read_only": "allow", "tools": {"send_email": {"action": "needs_approval", "approvers": ["group:leads"]}}}`)
	const unheld = `names only approvers no mcp_approvals inbox of approval instance "default" holds`
	tests := []struct {
		name, policy, inbox, wantErr string
	}{
		{"a group the inbox has", table("write needs_approval group:leads"), "group leads alice", ""},
		{"a group the inbox lacks", table("write needs_approval group:leads"), "group lead alice",
			`the permissions table's write ` + unheld + ` (group:leads; its inboxes hold group:lead, inbox, inbox:alice)`},
		{"an account the inbox has", table("tool create_issue needs_approval inbox:alice"), "", ""},
		{"an account the inbox lacks", table("tool create_issue needs_approval inbox:bob"), "", `tools["create_issue"] ` + unheld + ` (inbox:bob;`},
		{"an account the inbox lacks, beside the caller", table("tool create_issue needs_approval caller inbox:bob"), "", `tools["create_issue"] ` + unheld + ` (caller, inbox:bob;`},
		{"an account the inbox lacks, beside the caller and a webhook", table("tool create_issue needs_approval caller inbox:bob webhook"), "", ""},
		{"a group the inbox lacks, beside a webhook", table("write needs_approval webhook group:leads"), "none", ""},
		{"a group the inbox lacks, beside an operator", table("write needs_approval admin group:leads"), "none", ""},
		{"an account in another case", table("tool create_issue needs_approval inbox:Alice"), "", `did you mean "inbox:alice"?`},
		{"any inbox account, and no inbox", table("write needs_approval inbox"), "none", `write ` + unheld + ` (inbox; no inbox decides that instance)`},
		{"approvers held elsewhere, and no inbox", table("write needs_approval caller webhook admin admin:ops"), "none", ""},
		{"a group the inbox lacks, in the server's section of policy data", "policy ../policies " + leadsOnTest, "", `servers["test"].tools["create_issue"] ` + unheld},
		{"a group the inbox lacks, in another server's section", "policy ../policies " + leadsElsewhere, "", ""},
		{"a group the inbox lacks, for a tool on every server in policy data", "policy ../policies " + sendOnEveryServer, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			inbox := ""
			if tt.inbox != "none" {
				inbox = approversInbox(t, tt.inbox)
			}
			err := loadCaddyfile(t, globalOptions(t)+approvalSiteWith(freePort(t), tt.policy, up, "http://127.0.0.1:9/hook", "http://127.0.0.1:9/cb")+inbox)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("loading: %v; want an error containing %q (none if empty)", err, tt.wantErr)
			}
		})
	}
}

// TestReviewersWithoutApprovalBlock: a permissions table naming
// reviewers (anyone but the caller) in a handler with no approval block,
// whose calls for them are refused, is warned of as it loads; one naming
// the caller alone is not.
func TestReviewersWithoutApprovalBlock(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	const noBlock = "the permissions table names reviewers, but this mcp_policy has no approval block"
	leads := permissionsData(t, `{"read_only": "allow", "servers": {"test": {"tools": {"create_issue": {"action": "needs_approval", "approvers": ["group:leads"]}}}}}`)
	tests := []struct {
		name, body string
		// want are the approvers warned of; no warning when nil.
		want []any
	}{
		{"reviewers named", "permissions {\n\t\t\twrite needs_approval caller group:leads webhook\n\t\t}", []any{"group:leads", "webhook"}},
		{"reviewers named in policy data", "policy ../policies " + leads, []any{"group:leads"}},
		{"the caller alone", "permissions {\n\t\t\twrite needs_approval caller\n\t\t}", nil},
		{"any reviewer", "permissions {\n\t\t\twrite needs_approval\n\t\t}", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			var warned []any
			for _, e := range loadedWarnings(t, policySite(freePort(t), "", tt.body+"\n\t\tserver test", up.URL), noBlock) {
				if e["server"] == "test" {
					warned = append(warned, e["approvers"])
				}
			}
			switch {
			case tt.want == nil && len(warned) > 0:
				t.Errorf("warned of %v; want no warning", warned)
			case tt.want != nil && (len(warned) != 1 || !reflect.DeepEqual(warned[0], tt.want)):
				t.Errorf("warned of %v; want one warning of %v", warned, tt.want)
			}
		})
	}
}

// TestIgnoredOptionsWarned: options that do nothing beside the others
// (audit claims without an identity, disable_watch without policy paths)
// are warned of as the configuration loads; forward_token without an
// identity, kept for the day one is added, is not.
func TestIgnoredOptionsWarned(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	const ignored = "an mcp_policy option does nothing in this configuration: "
	table := "permissions {\n\t\t\tread_only allow\n\t\t}\n\t\tserver test"
	tests := []struct {
		name, body string
		want       []string
	}{
		{"forward_token without an identity", table + "\n\t\tforward_token", nil},
		{"audit claims without an identity", table + "\n\t\taudit {\n\t\t\tclaims email\n\t\t}", []string{"audit claims records"}},
		{"disable_watch without policy paths", table + "\n\t\tdisable_watch", []string{"disable_watch stops"}},
		{"both", table + "\n\t\tforward_token\n\t\tdisable_watch\n\t\taudit {\n\t\t\tclaims email\n\t\t}",
			[]string{"audit claims records", "disable_watch stops"}},
		{"audit without claims", table + "\n\t\taudit", nil},
		{"disable_watch with policy paths", "policy ../policies\n\t\tserver test\n\t\tdisable_watch", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			var warned []string
			for _, e := range loadedWarnings(t, policySite(freePort(t), "", tt.body, up.URL), ignored) {
				warned = append(warned, strings.TrimPrefix(e["msg"].(string), ignored))
			}
			if len(warned) != len(tt.want) {
				t.Fatalf("warned %q; want %d warnings", warned, len(tt.want))
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(warned[i], want) {
					t.Errorf("warning %q, want one starting %q", warned[i], want)
				}
			}
		})
	}
}

// TestApproversHeldOnRedis: with a Redis store, an approver no inbox of
// the configuration holds is a warning, not a refusal: another replica's
// inbox may hold it.
func TestApproversHeldOnRedis(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	logOption, logPath := warningsLog(t)
	err := loadCaddyfile(t, globalOptions(t, logOption)+approvalSiteWith(freePort(t), "permissions {\n\t\t\twrite needs_approval group:leads\n\t\t}", up,
		"http://127.0.0.1:9/hook", "http://127.0.0.1:9/cb", "store redis "+redistest.Start(t))+approversInbox(t, "group lead alice"))
	if err != nil {
		t.Fatalf("loading: %v; want it loaded, with a warning", err)
	}
	logLine(t, logPath, func(e map[string]any) bool {
		msg, _ := e["msg"].(string)
		return strings.Contains(msg, "names an approver no mcp_approvals inbox") && e["approver"] == "group:leads" && e["server"] == "test"
	})
}

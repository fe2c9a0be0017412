package approvalhttp

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approval/approvaltest"
	"github.com/mcpgate/mcpgate/caddymodule/display"
	"go.uber.org/zap/zapcore"
)

// callbackRequest returns body POSTed to the approval's callback URL,
// signed with secret (unsigned when it is empty) as message webhookID,
// sent at sent.
func callbackRequest(t *testing.T, id string, body []byte, secret, webhookID string, sent time.Time) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/approvals/"+id, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		approvaltest.MustSecret(t, secret).SetHeaders(req.Header, webhookID, sent, body)
	}
	return req
}

// decisionBody is a callback's body deciding approval id.
func decisionBody(id, decision string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"decision":%q,"approver":"Ops On-call","reason":"checked"}`, id, decision)
}

// The bodies of refused callbacks, byte for byte, by status.
const (
	refused400 = `{"error":"the body is not a decision for this approval: want {\"id\": \u003cthe URL's id\u003e, \"decision\": \"approve\"|\"deny\", \"approver\", \"reason\"}"}`
	refused401 = `{"error":"the decision is unsigned, not signed with a decision secret, or too old or new"}`
	refused403 = `{"error":"you are not among those who may decide this approval"}`
	refused404 = `{"error":"no such approval"}`
	refused409 = `{"error":"this approval is already decided, cancelled or expired"}`
	refused503 = `{"error":"the gateway could not take the decision just now; try again"}`
)

// delivered is the body of a callback that decided approval id.
func delivered(id string, state approval.State) string {
	return fmt.Sprintf(`{"approver":"webhook","id":%q,"state":%q}`+"\n", id, state)
}

// TestCallback: a signed decision for a pending approval the webhook may
// decide decides it; anything else is refused with its status and fixed
// text, logged, and changes nothing.
func TestCallback(t *testing.T) {
	stranger := approvaltest.Request(t, approvaltest.NewService(t, nil)) // in no service the handler knows
	tests := []struct {
		name      string
		approvers []string
		// settle, when set, decides the approval before the callback.
		settle bool
		id     func(a *approval.Approval) string // default: a.ID
		body   func(id string) []byte            // default: an approval of id
		secret string
		age    time.Duration
		// unreachable puts the approval's service behind a store that
		// cannot be reached.
		unreachable bool
		// unsigned: refused before a decision secret verified it, which
		// anyone may send, so logged at Info level (else Warn).
		unsigned bool
		// wantBody is the response's body, given the approval's id.
		wantStatus int
		wantBody   func(id string) string
		wantState  approval.State
	}{
		{name: "approved", secret: approvaltest.DecisionSecret,
			wantStatus: http.StatusOK, wantBody: func(id string) string { return delivered(id, approval.Approved) }, wantState: approval.Approved},
		{name: "denied", secret: approvaltest.DecisionSecret, body: func(id string) []byte { return decisionBody(id, "deny") },
			wantStatus: http.StatusOK, wantBody: func(id string) string { return delivered(id, approval.Denied) }, wantState: approval.Denied},
		{name: "for named approvers that include the webhook", approvers: []string{"inbox:alice", approval.PrincipalWebhook}, secret: approvaltest.DecisionSecret,
			wantStatus: http.StatusOK, wantBody: func(id string) string { return delivered(id, approval.Approved) }, wantState: approval.Approved},
		{name: "unsigned", unsigned: true,
			wantStatus: http.StatusUnauthorized, wantBody: fixed(refused401), wantState: approval.Pending},
		{name: "signed with another gateway's secret", secret: otherSecret, unsigned: true,
			wantStatus: http.StatusUnauthorized, wantBody: fixed(refused401), wantState: approval.Pending},
		{name: "stale", secret: approvaltest.DecisionSecret, age: 10 * time.Minute, unsigned: true,
			wantStatus: http.StatusUnauthorized, wantBody: fixed(refused401), wantState: approval.Pending},
		{name: "unknown approval", secret: approvaltest.DecisionSecret, id: func(*approval.Approval) string { return stranger.ID },
			wantStatus: http.StatusNotFound, wantBody: fixed(refused404), wantState: approval.Pending},
		{name: "body for another approval", secret: approvaltest.DecisionSecret, body: func(string) []byte { return decisionBody(stranger.ID, "approve") },
			wantStatus: http.StatusBadRequest, wantBody: fixed(refused400), wantState: approval.Pending},
		{name: "neither approve nor deny", secret: approvaltest.DecisionSecret, body: func(id string) []byte { return decisionBody(id, "maybe") },
			wantStatus: http.StatusBadRequest, wantBody: fixed(refused400), wantState: approval.Pending},
		{name: "body too large", secret: approvaltest.DecisionSecret, unsigned: true, body: func(string) []byte { return bytes.Repeat([]byte(" "), maxCallbackBody+1) },
			wantStatus: http.StatusBadRequest, wantBody: fixed(refused400), wantState: approval.Pending},
		{name: "unsigned, for an id of 32 KiB", unsigned: true, id: func(*approval.Approval) string { return strings.Repeat("x", 32<<10) },
			wantStatus: http.StatusUnauthorized, wantBody: fixed(refused401), wantState: approval.Pending},
		{name: "not for the webhook to decide", approvers: []string{"inbox:alice"}, secret: approvaltest.DecisionSecret,
			wantStatus: http.StatusForbidden, wantBody: fixed(refused403), wantState: approval.Pending},
		{name: "already decided", settle: true, secret: approvaltest.DecisionSecret, body: func(id string) []byte { return decisionBody(id, "deny") },
			wantStatus: http.StatusConflict, wantBody: fixed(refused409), wantState: approval.Approved},
		{name: "store unreachable", secret: approvaltest.DecisionSecret, unreachable: true,
			wantStatus: http.StatusServiceUnavailable, wantBody: fixed(refused503), wantState: approval.Pending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, a := oneApproval(t, tt.approvers, tt.settle)
			id, body := a.ID, decisionBody(a.ID, "approve")
			if tt.id != nil {
				id = tt.id(a)
			}
			if tt.body != nil {
				body = tt.body(a.ID)
			}
			services := approvaltest.Services{s}
			if tt.unreachable {
				services = approvaltest.Services{approvaltest.NewUnreachableService(t, nil)}
			}
			h, logs := newHandler(nil, services)
			rec, refused := serve(t, h, callbackRequest(t, id, body, tt.secret, "msg_1", time.Now().Add(-tt.age)))
			if refused != nil {
				t.Fatalf("Serve left %v to the host, want the callback answered", refused)
			}
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody(id) {
				t.Errorf("response = %d %s, want %d %s", rec.Code, rec.Body, tt.wantStatus, tt.wantBody(id))
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			if got := stateOf(t, s, a.ID); got != tt.wantState {
				t.Errorf("approval is %s, want %s", got, tt.wantState)
			}
			refusals := logs.FilterMessage("approval callback refused").AllUntimed()
			switch {
			case tt.wantStatus == http.StatusOK && len(refusals) != 0:
				t.Errorf("logged %d refusals, want none", len(refusals))
			case tt.wantStatus != http.StatusOK && len(refusals) != 1:
				t.Errorf("logged %d refusals, want 1", len(refusals))
			case tt.wantStatus != http.StatusOK:
				fields := refusals[0].ContextMap()
				if fields["id"] != display.Cut(id, maxLoggedID) || fields["status"] != int64(tt.wantStatus) || fields["remote_ip"] != testClientIP || fields["error"] == nil {
					t.Errorf("refusal logged with %v, want id %s (cut), status %d, remote_ip %s and the error", fields, id, tt.wantStatus, testClientIP)
				}
				if want := map[bool]zapcore.Level{true: zapcore.InfoLevel, false: zapcore.WarnLevel}[tt.unsigned]; refusals[0].Level != want {
					t.Errorf("refusal logged at %s, want %s", refusals[0].Level, want)
				}
			}
		})
	}
}

// fixed returns a body that is the same for every approval.
func fixed(body string) func(string) string {
	return func(string) string { return body }
}

// TestCallbackRetry: once a callback decided an approval, a sender's
// retry of that very message is answered as delivered; any other
// decision is refused as late.
func TestCallbackRetry(t *testing.T) {
	tests := []struct {
		name       string
		webhookID  string
		decision   string
		wantStatus int
	}{
		{"the same message again", "msg_1", "approve", http.StatusOK},
		{"another message", "msg_2", "approve", http.StatusConflict},
		{"the same webhook-id, another decision", "msg_1", "deny", http.StatusConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := approvaltest.NewService(t, nil)
			a := approvaltest.Request(t, s)
			h, _ := newHandler(nil, approvaltest.Services{s})
			first, _ := serve(t, h, callbackRequest(t, a.ID, decisionBody(a.ID, "approve"), approvaltest.DecisionSecret, "msg_1", time.Now()))
			if first.Code != http.StatusOK {
				t.Fatalf("first callback answered %d %s, want 200", first.Code, first.Body)
			}
			again, _ := serve(t, h, callbackRequest(t, a.ID, decisionBody(a.ID, tt.decision), approvaltest.DecisionSecret, tt.webhookID, time.Now()))
			want := refused409
			if tt.wantStatus == http.StatusOK {
				want = delivered(a.ID, approval.Approved)
			}
			if again.Code != tt.wantStatus || again.Body.String() != want {
				t.Errorf("second callback answered %d %s, want %d %s", again.Code, again.Body, tt.wantStatus, want)
			}
			if got := stateOf(t, s, a.ID); got != approval.Approved {
				t.Errorf("approval is %s, want it left approved", got)
			}
		})
	}
}

// TestDecidedBy: an approval stands as a webhook decision left it only
// when that very message (its webhook-id) decided it, that way.
func TestDecidedBy(t *testing.T) {
	tests := []struct {
		name     string
		state    approval.State
		approver string
		message  string
		decision string
		want     bool
	}{
		{"approved by the message", approval.Approved, approval.PrincipalWebhook, "msg_1", approval.DecisionApprove, true},
		{"denied by the message", approval.Denied, approval.PrincipalWebhook, "msg_1", approval.DecisionDeny, true},
		{"approved by another message", approval.Approved, approval.PrincipalWebhook, "msg_2", approval.DecisionApprove, false},
		{"approved, the decision a denial", approval.Approved, approval.PrincipalWebhook, "msg_1", approval.DecisionDeny, false},
		{"denied, the decision an approval", approval.Denied, approval.PrincipalWebhook, "msg_1", approval.DecisionApprove, false},
		{"approved in the inbox", approval.Approved, "inbox:alice", "", approval.DecisionApprove, false},
		{"still pending", approval.Pending, "", "", approval.DecisionApprove, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &approval.Approval{State: tt.state, Approver: tt.approver, DecisionMessage: tt.message}
			if got := decidedBy(a, approval.CallbackDecision{Decision: tt.decision}, "msg_1"); got != tt.want {
				t.Errorf("decidedBy(%s by %q in %q, %s) = %v, want %v", tt.state, tt.approver, tt.message, tt.decision, got, tt.want)
			}
		})
	}
	if decidedBy(&approval.Approval{State: approval.Approved, Approver: approval.PrincipalWebhook}, approval.CallbackDecision{Decision: approval.DecisionApprove}, "") {
		t.Error("a message without a webhook-id matched an approval decided by one without")
	}
}

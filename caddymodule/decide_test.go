package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
)

// TestWhoMayDecide holds a call that only the inbox account alice may
// approve (the permissions table says so), and tries every other route a
// decision can take: the admin API over TCP (which any local process,
// the agent itself among them, can reach), callbacks unsigned or signed
// with the webhook secret (which every receiver of approval requests
// holds), a callback signed with the decision secret (not among the
// approvers), and the inbox without credentials or as bob. Each is
// refused; alice's approval runs the call.
func TestWhoMayDecide(t *testing.T) {
	adminPort := freePort(t)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	setup := approvalSetup{
		global:    []string{fmt.Sprintf("admin 127.0.0.1:%d", adminPort)},
		approvals: inboxApprovals(t),
		policy: `permissions {
			read_only allow
			tool create_issue needs_approval inbox:alice admin:ops
		}`,
	}
	g, up, e, done := holdCall(t, setup, "only alice")
	if strings.Join(e.Approvers, ",") != "admin:ops,inbox:alice" {
		t.Errorf("approval.requested names approvers %q, want the table's", e.Approvers)
	}

	// The agent, on the gateway's host, tries the admin API.
	for _, request := range []struct{ method, path string }{
		{http.MethodGet, "/mcpgate/approvals"},
		{http.MethodPost, "/mcpgate/approvals/" + e.ID + "/approve"},
	} {
		status, body := adminRequest(t, http.DefaultClient, request.method, admin+request.path, map[string]string{"approver": "ops"})
		if status != http.StatusForbidden || strings.Contains(string(body), "only alice") {
			t.Errorf("%s %s over the TCP admin endpoint: %d %s; want 403 revealing nothing of the call", request.method, request.path, status, body)
		}
	}

	// Webhook receivers and forgers try the callback.
	webhookSecret, err := approval.ParseSecret(testWebhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	signWithWebhookSecret := func(h http.Header, body []byte) {
		webhookSecret.SetHeaders(h, "msg_forged", time.Now(), body)
	}
	decision := map[string]string{"id": path.Base(e.CallbackURL), "decision": "approve", "approver": "alice"}
	for _, attempt := range []struct {
		name string
		sign func(http.Header, []byte)
		want int
	}{
		{"unsigned", nil, http.StatusUnauthorized},
		{"signed with the webhook secret", signWithWebhookSecret, http.StatusUnauthorized},
		{"signed with the decision secret, not an approver", g.approver.signNow, http.StatusForbidden},
	} {
		if status := callback(t, e.CallbackURL, decision, attempt.sign); status != attempt.want {
			t.Errorf("callback %s: %d, want %d", attempt.name, status, attempt.want)
		}
	}

	// The inbox: nobody without credentials; bob is not shown the call.
	inbox := g.Callbacks + "/"
	if resp, _ := inboxRequest(t, http.MethodGet, inbox, "", "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("inbox without credentials: %d, want 401", resp.StatusCode)
	}
	if _, page := inboxRequest(t, http.MethodGet, inbox, "bob", "builder", nil, nil); strings.Contains(page, e.ID) {
		t.Error("bob's inbox lists a call only alice may decide")
	}
	if _, page := inboxRequest(t, http.MethodGet, inbox+"?approval="+e.ID, "bob", "builder", nil, nil); !strings.Contains(page, "It is not yours to decide") || strings.Contains(page, "inbox:alice") {
		t.Errorf("bob following the approval's link: want to be told it is not his to decide, and not who decides it:\n%s", page)
	}
	if _, page := inboxRequest(t, http.MethodGet, inbox+"?approval="+e.ID, "alice", "wonderland", nil, nil); !strings.Contains(page, "You may decide it below") {
		t.Errorf("alice following the approval's link: want to be told she may decide it:\n%s", page)
	}
	if up.CallCount("create_issue") != 0 {
		t.Fatal("the call ran before its approver decided")
	}

	_, page := inboxRequest(t, http.MethodGet, inbox, "alice", "wonderland", nil, nil)
	match := formToken.FindStringSubmatch(page)
	if match == nil || !strings.Contains(page, e.ID) {
		t.Fatalf("alice's inbox does not list the call she may decide:\n%s", page)
	}
	resp, _ := inboxRequest(t, http.MethodPost, inbox, "alice", "wonderland",
		url.Values{"id": {e.ID}, "decision": {"approve"}, "token": {match[1]}}, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("alice's approval: %d, want 303", resp.StatusCode)
	}
	res := awaitResult(t, done)
	if res.IsError || up.CallCount("create_issue") != 1 {
		t.Errorf("approved by alice, the call answered %q (ran %d times); want it run once", resultText(res), up.CallCount("create_issue"))
	}
}

// TestCallbackRefusalsRevealNothing: a refused callback is told what to
// do in a fixed phrase, never the gateway's internals.
func TestCallbackRefusalsRevealNothing(t *testing.T) {
	g, _, e, _ := holdCall(t, approvalSetup{}, "x")
	raw, _ := json.Marshal(map[string]string{"id": "apr_other", "decision": "approve"})
	req, _ := http.NewRequest(http.MethodPost, e.CallbackURL, strings.NewReader(string(raw)))
	g.approver.signNow(req.Header, raw)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body.Error, "not a decision for this approval") || strings.Contains(body.Error, "apr_other") {
		t.Errorf("a decision naming another approval: %d %q (%v); want 400 with the fixed text", resp.StatusCode, body.Error, err)
	}
}

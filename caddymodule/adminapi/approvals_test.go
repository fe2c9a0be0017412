package adminapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approval/approvaltest"
)

// TestListApprovals: operators see the pending approvals of every service
// once (all remembered ones, with all=1); a store that cannot be read
// fails the list.
func TestListApprovals(t *testing.T) {
	first, second := approvaltest.NewService(t, nil), approvaltest.NewService(t, nil)
	pending, decided, other := approvaltest.Request(t, first), approvaltest.Request(t, first), approvaltest.Request(t, second)
	approvaltest.ApproveAsAdmin(t, first, decided.ID)
	otherSecret := approvaltest.Settings(t)
	otherSecret.DecisionSecrets = []approval.Secret{approvaltest.MustSecret(t, "whsec_"+strings.Repeat("C", 43)+"=")}
	mine, theirs := approvaltest.NewSharingServices(t, nil, otherSecret)
	ours, foreign := approvaltest.Request(t, mine), approvaltest.Request(t, theirs)
	tests := []struct {
		name     string
		query    string
		services approvaltest.Services
		local    net.Addr
		tls      *tls.ConnectionState
		// wantIDs are the approvals listed, when the list is answered.
		wantIDs    []string
		wantStatus int
		wantReason string
	}{
		{name: "pending", services: approvaltest.Services{first, second}, local: unixSocket,
			wantIDs: []string{pending.ID, other.ID}},
		{name: "all remembered", query: "?all=1", services: approvaltest.Services{first, second}, local: unixSocket,
			wantIDs: []string{pending.ID, decided.ID, other.ID}},
		{name: "all=0", query: "?all=0", services: approvaltest.Services{first, second}, local: unixSocket,
			wantIDs: []string{pending.ID, other.ID}},
		{name: "all=true", query: "?all=true", services: approvaltest.Services{first, second}, local: unixSocket,
			wantIDs: []string{pending.ID, decided.ID, other.ID}},
		{name: "all=yes", query: "?all=yes", services: approvaltest.Services{first, second}, local: unixSocket,
			wantStatus: http.StatusBadRequest, wantReason: `query parameter all: want true or false (1 or 0), got ["yes"]`},
		{name: "all twice", query: "?all=0&all=1", services: approvaltest.Services{first, second}, local: unixSocket,
			wantStatus: http.StatusBadRequest, wantReason: `query parameter all: want true or false (1 or 0), got ["0" "1"]`},
		{name: "a store two services share", services: approvaltest.Services{first, first}, local: unixSocket,
			wantIDs: []string{pending.ID}},
		{name: "a store shared with a gateway of another decision secret", query: "?all=1", services: approvaltest.Services{mine}, local: unixSocket,
			wantIDs: []string{ours.ID}},
		{name: "the other gateway of the shared store", query: "?all=1", services: approvaltest.Services{theirs}, local: unixSocket,
			wantIDs: []string{foreign.ID}},
		{name: "none", services: approvaltest.Services{}, local: unixSocket,
			wantIDs: []string{}},
		{name: "remote admin", services: approvaltest.Services{second}, local: localTCP, tls: clientCertificate("ops", true),
			wantIDs: []string{other.ID}},
		{name: "over local TCP", services: approvaltest.Services{first}, local: localTCP,
			wantStatus: http.StatusForbidden, wantReason: notAnOperator},
		{name: "store unreachable", services: approvaltest.Services{first, approvaltest.NewUnreachableService(t, nil)}, local: unixSocket,
			wantStatus: http.StatusInternalServerError, wantReason: "listing approvals failed; the gateway's log says why"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs, observed := observedLogs()
			approvals := &Approvals{Services: tt.services, Logs: logs}
			req := over(httptest.NewRequest(http.MethodGet, "/mcpgate/approvals"+tt.query, nil), tt.local, tt.tls)
			rec, refused := serve(t, approvals.Routes(), req)
			checkRefusal(t, refused, tt.wantStatus, tt.wantReason)
			failures := observed.FilterLoggerName("mcpgate.admin").FilterMessage("listing approvals").AllUntimed()
			if wantLogged := tt.wantStatus == http.StatusInternalServerError; (len(failures) == 1) != wantLogged || observed.Len() != len(failures) {
				t.Errorf("logged %v, want the failure logged: %v", observed.AllUntimed(), wantLogged)
			}
			if tt.wantStatus != 0 {
				return
			}
			var listed []approval.Approval
			if err := json.Unmarshal(rec.Body.Bytes(), &listed); err != nil || listed == nil {
				t.Fatalf("body %s (%v), want a JSON array", rec.Body, err)
			}
			ids := []string{}
			for _, a := range listed {
				ids = append(ids, a.ID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Errorf("listed %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

// TestDecideApproval: an operator approves or denies a pending approval
// they are entitled to, as "admin" (with their client certificate's name
// over the remote admin) and what they claim; anything else is refused
// with approvalhttp's status and text, and changes nothing.
func TestDecideApproval(t *testing.T) {
	tests := []struct {
		name string
		// approvers may decide the approval; default: any reviewer.
		approvers []string
		// settled approves the approval before the request.
		settled bool
		// path is the request's, given the approval's id.
		path  func(id string) string
		body  string
		local net.Addr
		tls   *tls.ConnectionState
		// unreachable puts the approval's service behind a store that
		// cannot be reached.
		unreachable bool

		wantStatus int
		wantReason string
		// wantState, wantApprover and wantClaim are how the approval
		// stands after the request.
		wantState    approval.State
		wantApprover string
		wantClaim    string
	}{
		{name: "approve", path: decision("approve"), body: `{"approver":"ops","reason":"checked"}`, local: unixSocket,
			wantState: approval.Approved, wantApprover: "admin", wantClaim: "ops"},
		{name: "deny", path: decision("deny"), body: `{"approver":"ops","reason":"checked"}`, local: unixSocket,
			wantState: approval.Denied, wantApprover: "admin", wantClaim: "ops"},
		{name: "no body", path: decision("approve"), local: unixSocket,
			wantState: approval.Approved, wantApprover: "admin"},
		{name: "remote admin", path: decision("deny"), body: `{"reason":"checked"}`, local: localTCP, tls: clientCertificate("ops", true),
			wantState: approval.Denied, wantApprover: "admin:ops"},
		{name: "for the remote admin's certificate", approvers: []string{"admin:ops"}, path: decision("approve"),
			local: localTCP, tls: clientCertificate("ops", true),
			wantState: approval.Approved, wantApprover: "admin:ops"},
		{name: "not entitled", approvers: []string{"admin:ops"}, path: decision("approve"), local: unixSocket,
			wantStatus: http.StatusForbidden, wantReason: "you are not among those who may decide this approval", wantState: approval.Pending},
		{name: "already decided", settled: true, path: decision("deny"), local: unixSocket,
			wantStatus: http.StatusConflict, wantReason: "this approval is already decided, cancelled or expired",
			wantState: approval.Approved, wantApprover: "admin"},
		{name: "the same decision again (its answer lost)", settled: true, path: decision("approve"), body: `{"reason":"fine"}`, local: unixSocket,
			wantState: approval.Approved, wantApprover: "admin"},
		{name: "approved again, for another reason", settled: true, path: decision("approve"), body: `{"reason":"other"}`, local: unixSocket,
			wantStatus: http.StatusConflict, wantReason: "this approval is already decided, cancelled or expired",
			wantState: approval.Approved, wantApprover: "admin"},
		{name: "approved again, claiming another", settled: true, path: decision("approve"), body: `{"approver":"ops","reason":"fine"}`, local: unixSocket,
			wantStatus: http.StatusConflict, wantReason: "this approval is already decided, cancelled or expired",
			wantState: approval.Approved, wantApprover: "admin"},
		{name: "unknown approval", path: func(string) string { return "/mcpgate/approvals/apr_aaaaaaaaaaaaaaaaaaaaaaaaaa/approve" }, local: unixSocket,
			wantStatus: http.StatusNotFound, wantReason: "no such approval", wantState: approval.Pending},
		{name: "unknown verb", path: decision("maybe"), local: unixSocket,
			wantStatus: http.StatusNotFound, wantReason: "use /mcpgate/approvals/<id>/approve or /deny", wantState: approval.Pending},
		{name: "no verb", path: func(id string) string { return "/mcpgate/approvals/" + id }, local: unixSocket,
			wantStatus: http.StatusNotFound, wantReason: "use /mcpgate/approvals/<id>/approve or /deny", wantState: approval.Pending},
		{name: "cut-off JSON", path: decision("approve"), body: `{"approver":`, local: unixSocket,
			wantStatus: http.StatusBadRequest, wantReason: `decoding request: jsontext: unexpected EOF within "/approver" after offset 12`, wantState: approval.Pending},
		{name: "over local TCP", path: decision("approve"), local: localTCP,
			wantStatus: http.StatusForbidden, wantReason: notAnOperator, wantState: approval.Pending},
		{name: "over local TCP, cut-off JSON", path: decision("approve"), body: `{"approver":`, local: localTCP,
			wantStatus: http.StatusForbidden, wantReason: notAnOperator, wantState: approval.Pending},
		{name: "TLS without a verified certificate", path: decision("approve"), local: localTCP, tls: clientCertificate("ops", false),
			wantStatus: http.StatusForbidden, wantReason: notAnOperator, wantState: approval.Pending},
		{name: "store unreachable", unreachable: true, path: decision("approve"), local: unixSocket,
			wantStatus: http.StatusServiceUnavailable, wantReason: "the gateway could not take the decision just now; try again", wantState: approval.Pending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := approvaltest.NewService(t, nil)
			a := approvaltest.Request(t, s, tt.approvers...)
			if tt.settled {
				approvaltest.ApproveAsAdmin(t, s, a.ID)
			}
			services := approvaltest.Services{s}
			if tt.unreachable {
				services = approvaltest.Services{approvaltest.NewUnreachableService(t, nil)}
			}
			logs, observed := observedLogs()
			approvals := &Approvals{Services: services, Logs: logs}
			req := over(httptest.NewRequest(http.MethodPost, tt.path(a.ID), strings.NewReader(tt.body)), tt.local, tt.tls)
			rec, refused := serve(t, approvals.Routes(), req)
			checkRefusal(t, refused, tt.wantStatus, tt.wantReason)

			now, err := s.Get(context.Background(), a.ID)
			if err != nil {
				t.Fatalf("getting approval %s: %v", a.ID, err)
			}
			if now.State != tt.wantState || now.Approver != tt.wantApprover || now.ApproverClaim != tt.wantClaim {
				t.Errorf("approval is %s by %q (claim %q), want %s by %q (claim %q)",
					now.State, now.Approver, now.ApproverClaim, tt.wantState, tt.wantApprover, tt.wantClaim)
			}
			if tt.wantStatus == 0 {
				var answered approval.Approval
				if err := json.Unmarshal(rec.Body.Bytes(), &answered); err != nil || answered.ID != a.ID || answered.State != tt.wantState {
					t.Errorf("answer %s (%v), want approval %s %s", rec.Body, err, a.ID, tt.wantState)
				}
			}
			failures := observed.FilterLoggerName("mcpgate.admin").FilterMessage("deciding approval failed").AllUntimed()
			if wantLogged := tt.unreachable; (len(failures) == 1) != wantLogged || observed.Len() != len(failures) {
				t.Errorf("logged %v, want the failure logged: %v", observed.AllUntimed(), wantLogged)
			}
			if len(failures) == 1 && (failures[0].ContextMap()["id"] != a.ID || failures[0].ContextMap()["error"] == nil) {
				t.Errorf("failure logged with %v, want id %s and the error", failures[0].ContextMap(), a.ID)
			}
		})
	}
}

// decision returns the path that decides an approval with verb.
func decision(verb string) func(id string) string {
	return func(id string) string { return "/mcpgate/approvals/" + id + "/" + verb }
}

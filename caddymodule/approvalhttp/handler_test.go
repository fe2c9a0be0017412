package approvalhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
)

// The tests' secrets: webhooks are signed with webhookSecret (none are
// sent), decisions with decisionSecret; otherSecret is another gateway's
// decision secret.
const (
	webhookSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	decisionSecret = "whsec_ZGVjaXNpb25zIGFyZSBzaWduZWQgd2l0aCB0aGlzIGtleQ=="
	otherSecret    = "whsec_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB="
)

// mustSecret parses a secret, failing the test if it cannot.
func mustSecret(t *testing.T, s string) approval.Secret {
	t.Helper()
	secret, err := approval.ParseSecret(s)
	if err != nil {
		t.Fatalf("parsing secret %q: %v", s, err)
	}
	return secret
}

// newService starts an approval service over the in-memory store whose
// decisions are signed with decision.
func newService(t *testing.T, decision string) *approval.Service {
	t.Helper()
	s, err := approval.NewService(func(onChange approval.ChangeFunc) (approval.Store, error) {
		return approval.NewMemoryStore(onChange), nil
	}, &approval.Settings{
		WebhookSecrets:  []approval.Secret{mustSecret(t, webhookSecret)},
		DecisionSecrets: []approval.Secret{mustSecret(t, decision)},
		CallbackURL:     "https://gw.example/approvals",
		Timeout:         time.Minute,
	})
	if err != nil {
		t.Fatalf("starting the approval service: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// request asks s for a new approval of a call that approvers may decide
// (anyone, when none are given).
func request(t *testing.T, s *approval.Service, approvers ...string) *approval.Approval {
	t.Helper()
	a, err := s.Request(context.Background(), &approval.Call{
		Session:   fmt.Sprintf("session-%d", time.Now().UnixNano()),
		Server:    "files",
		Tool:      "delete_file",
		Arguments: map[string]any{"path": "/srv/report.txt"},
		Reason:    "deletes a file",
		Approvers: approvers,
	})
	if err != nil {
		t.Fatalf("requesting an approval: %v", err)
	}
	return a
}

// stateOf returns how approval id stands in s.
func stateOf(t *testing.T, s *approval.Service, id string) approval.State {
	t.Helper()
	a, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("getting approval %s: %v", id, err)
	}
	return a.State
}

// approveAsAdmin approves approval id in s as the admin API would.
func approveAsAdmin(t *testing.T, s *approval.Service, id string) {
	t.Helper()
	admin := approval.Decider{ID: approval.PrincipalAdmin, Principals: []string{approval.PrincipalAdmin}}
	if _, err := s.Decide(context.Background(), id, true, admin, "fine"); err != nil {
		t.Fatalf("approving %s as the admin: %v", id, err)
	}
}

// oneApproval starts a service holding one approval for approvers,
// approved by the admin when settled, else pending.
func oneApproval(t *testing.T, approvers []string, settled bool) (*approval.Service, *approval.Approval) {
	t.Helper()
	s := newService(t, decisionSecret)
	a := request(t, s, approvers...)
	if settled {
		approveAsAdmin(t, s, a.ID)
	}
	return s, a
}

// testClientIP is the client address the tests' host reports.
const testClientIP = "203.0.113.7"

// newHandler returns a handler with inbox (none when nil) over services,
// logging to the returned observer.
func newHandler(inbox *Inbox, services Services) (*Handler, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	return New(Config{
		Services: services,
		Inbox:    inbox,
		Logger:   zap.New(core),
		ClientIP: func(*http.Request) string { return testClientIP },
	}), logs
}

// serviceList finds approvals in a list of services, as a host's pool
// would.
type serviceList struct {
	services []*approval.Service
	// storeErr, when set, is what Find fails with after asking accept of
	// every service, as when their stores cannot be reached.
	storeErr error
}

func (l serviceList) Find(ctx context.Context, id string, accept func(*approval.Service) bool) (*approval.Service, error) {
	for _, s := range l.services {
		if (accept != nil && !accept(s)) || l.storeErr != nil {
			continue
		}
		if a, err := s.Get(ctx, id); err == nil && s.Owns(a) {
			return s, nil
		}
	}
	if l.storeErr != nil {
		return nil, l.storeErr
	}
	return nil, fmt.Errorf("%w: %s", approval.ErrNotFound, id)
}

func (l serviceList) Each(f func(*approval.Service) bool) {
	for _, s := range l.services {
		if !f(s) {
			return
		}
	}
}

// serve runs req through h and returns the response and the refusal h
// left to its host.
func serve(t *testing.T, h *Handler, req *http.Request) (*httptest.ResponseRecorder, *Error) {
	t.Helper()
	rec := httptest.NewRecorder()
	err := h.Serve(rec, req)
	if err == nil {
		return rec, nil
	}
	refused, ok := errors.AsType[*Error](err)
	if !ok {
		t.Fatalf("Serve returned %v, want nil or an *Error", err)
	}
	return rec, refused
}

// TestServeRoutes: decisions are POSTed to …/<id>; the mount path is the
// inbox's, and without one it is not found.
func TestServeRoutes(t *testing.T) {
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantAllow          string
	}{
		{"GET on a callback", http.MethodGet, "/approvals/apr_x", http.StatusMethodNotAllowed, "POST"},
		{"PUT on a callback", http.MethodPut, "/approvals/apr_x", http.StatusMethodNotAllowed, "POST"},
		{"GET without an inbox", http.MethodGet, "/approvals/", http.StatusNotFound, ""},
		{"POST without an inbox", http.MethodPost, "/approvals/", http.StatusNotFound, ""},
	}
	h := New(Config{Services: serviceList{}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, refused := serve(t, h, httptest.NewRequest(tt.method, tt.path, nil))
			if refused == nil || refused.Status != tt.wantStatus {
				t.Fatalf("refusal = %v, want status %d", refused, tt.wantStatus)
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

// TestStatus: each approval error answers the decider with its status.
func TestStatus(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("deciding: %w", approval.ErrNotFound), http.StatusNotFound},
		{fmt.Errorf("deciding: %w", approval.ErrNotEntitled), http.StatusForbidden},
		{fmt.Errorf("deciding: %w", approval.ErrConflict), http.StatusConflict},
		{fmt.Errorf("claiming: %w", approval.ErrReplayed), http.StatusConflict},
		{errors.New("dial tcp: connection refused"), http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			if got := Status(tt.err); got != tt.want {
				t.Errorf("Status(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestErrorUnwraps: a refusal's reason can be found through it.
func TestErrorUnwraps(t *testing.T) {
	err := error(&Error{Status: http.StatusNotFound, Err: fmt.Errorf("finding: %w", approval.ErrNotFound)})
	if !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("errors.Is(%v, ErrNotFound) = false, want true", err)
	}
	if got, want := err.Error(), "HTTP 404: finding: no such approval"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

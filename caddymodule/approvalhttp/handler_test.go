package approvalhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approval/approvaltest"
)

// otherSecret is another gateway's decision secret; the tests' services
// sign with approvaltest's.
const otherSecret = "whsec_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB="

// stateOf returns how approval id stands in s.
func stateOf(t *testing.T, s *approval.Service, id string) approval.State {
	t.Helper()
	a, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("getting approval %s: %v", id, err)
	}
	return a.State
}

// oneApproval starts a service holding one approval for approvers,
// approved by the admin when settled, else pending.
func oneApproval(t *testing.T, approvers []string, settled bool) (*approval.Service, *approval.Approval) {
	t.Helper()
	s := approvaltest.NewService(t, nil)
	a := approvaltest.Request(t, s, approvers...)
	if settled {
		approvaltest.ApproveAsAdmin(t, s, a.ID)
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
	h := New(Config{Services: approvaltest.Services{}})
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

package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
)

func init() {
	caddy.RegisterModule(ApprovalsAdmin{})
}

// ApprovalsAdmin serves approvals on Caddy's admin API, for operators and
// `mcpgate approvals`:
//
//	GET  /mcpgate/approvals[?all=1]         pending approvals (all remembered, with all=1)
//	POST /mcpgate/approvals/<id>/approve    {"approver", "reason"}
//	POST /mcpgate/approvals/<id>/deny       {"approver", "reason"}
//
// A decision here is like a signed callback: the first one wins, a later
// one gets 409.
type ApprovalsAdmin struct{}

// CaddyModule returns the Caddy module information.
func (ApprovalsAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mcpgate_approvals",
		New: func() caddy.Module { return new(ApprovalsAdmin) },
	}
}

// Routes returns the admin routes.
func (ApprovalsAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/mcpgate/approvals", Handler: caddy.AdminHandlerFunc(listApprovals)},
		{Pattern: "/mcpgate/approvals/", Handler: caddy.AdminHandlerFunc(decideApproval)},
	}
}

// AdminDecision is the body of POST /mcpgate/approvals/<id>/approve|deny.
type AdminDecision struct {
	Approver string `json:"approver,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func listApprovals(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	all := r.URL.Query().Get("all") != ""
	listed := []*approval.Approval{}
	seen := make(map[string]bool)
	var listErr error
	now := time.Now()
	eachApprovalService("", func(s *approval.Service) bool {
		list, err := s.List(r.Context())
		if err != nil {
			listErr = err
			return false
		}
		for _, a := range list {
			if seen[a.ID] || (!all && (a.State != approval.Pending || !a.Live(now))) {
				continue
			}
			seen[a.ID] = true
			listed = append(listed, a)
		}
		return true
	})
	if listErr != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: listErr}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(listed)
}

func decideApproval(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	id, verb, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/mcpgate/approvals/"), "/")
	if !ok || (verb != "approve" && verb != "deny") {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("use /mcpgate/approvals/<id>/approve or /deny")}
	}
	var req AdminDecision
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding request: %w", err)}
		}
	}
	if req.Approver == "" {
		req.Approver = "admin API"
	}
	service := approvalServiceFor(r.Context(), "", id, nil)
	if service == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("%w: %s", approval.ErrNotFound, id)}
	}
	decided, err := service.Decide(r.Context(), id, verb == "approve", req.Approver, req.Reason)
	if err != nil {
		return caddy.APIError{HTTPStatus: statusFor(err), Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(decided)
}

// Interface guard
var _ caddy.AdminRouter = (*ApprovalsAdmin)(nil)

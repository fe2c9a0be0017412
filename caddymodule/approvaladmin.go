package caddymodule

import (
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
	// Approver is who the operator says decided: recorded beside the
	// verified approver "admin", never trusted.
	Approver string `json:"approver,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func listApprovals(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
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
	return writeAdminJSON(w, listed)
}

func decideApproval(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	id, verb, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/mcpgate/approvals/"), "/")
	if !ok || (verb != "approve" && verb != "deny") {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("use /mcpgate/approvals/<id>/approve or /deny")}
	}
	var req AdminDecision
	if r.ContentLength != 0 {
		if err := decodeAdminBody(w, r, &req); err != nil {
			return err
		}
	}
	service := approvalServiceFor(r.Context(), "", id, nil)
	if service == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("%w: %s", approval.ErrNotFound, id)}
	}
	by := approval.Decider{ID: approval.PrincipalAdmin, Principals: []string{approval.PrincipalAdmin}, Claim: req.Approver}
	decided, err := service.Decide(r.Context(), id, verb == "approve", by, req.Reason)
	if err != nil {
		return caddy.APIError{HTTPStatus: statusFor(err), Err: err}
	}
	return writeAdminJSON(w, decided)
}

// Interface guard
var _ caddy.AdminRouter = (*ApprovalsAdmin)(nil)

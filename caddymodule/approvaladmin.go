package caddymodule

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approvalhttp"
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
// Only operators reach them: requests that come over an admin endpoint on
// a unix socket (whose file permissions say who may use it), or over
// Caddy's remote admin (with a verified client certificate, and its
// access control). Over the local TCP endpoint, which any process on the
// host can reach, including the agent whose call is held, they are
// refused. A decision here is like a signed callback: the first one
// wins, a later one gets 409.
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

// errNotAnOperator is why the admin API refuses mcpgate's operator
// routes over a local TCP endpoint.
var errNotAnOperator = errors.New("mcpgate's approval and tool routes answer only operators: " +
	"put Caddy's admin endpoint on a unix socket (admin unix//run/mcpgate/admin.sock), whose file permissions say who may use it, " +
	"or use Caddy's remote admin with client certificates; or decide in the approval inbox")

// adminOperator returns who calls mcpgate's operator routes on the admin
// API, as an approval decider: "admin" over a unix socket, "admin:<CN>"
// over the remote admin (its client certificate's common name), with the
// claim the request makes of itself. Over any other endpoint the caller
// could be any process on the host, and it is refused with 403.
func adminOperator(r *http.Request, claim string) (approval.Decider, error) {
	by := approval.Decider{ID: approval.PrincipalAdmin, Principals: []string{approval.PrincipalAdmin}, Claim: claim}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		if name := r.TLS.VerifiedChains[0][0].Subject.CommonName; name != "" {
			by.ID = approval.PrincipalAdmin + ":" + name
			by.Principals = append(by.Principals, by.ID)
		}
		return by, nil
	}
	if _, unix := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); unix {
		return by, nil
	}
	return approval.Decider{}, caddy.APIError{HTTPStatus: http.StatusForbidden, Err: errNotAnOperator}
}

// internalError answers an admin request that failed inside the gateway
// with a fixed message; the details go to the log.
func internalError(what string, err error) error {
	caddy.Log().Named("mcpgate.admin").Error(what, zap.Error(err))
	return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: errors.New(what + " failed; the gateway's log says why")}
}

func listApprovals(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	if _, err := adminOperator(r, ""); err != nil {
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
		return internalError("listing approvals", listErr)
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
	by, err := adminOperator(r, req.Approver)
	if err != nil {
		return err
	}
	service, err := approvalServiceFor(r.Context(), "", id, nil)
	if err == nil {
		var decided *approval.Approval
		if decided, err = service.Decide(r.Context(), id, verb == "approve", by, req.Reason); err == nil {
			return writeAdminJSON(w, decided)
		}
	}
	status := approvalhttp.Status(err)
	if status == http.StatusServiceUnavailable {
		caddy.Log().Named("mcpgate.admin").Error("deciding approval failed", zap.String("id", id), zap.Error(err))
	}
	return caddy.APIError{HTTPStatus: status, Err: errors.New(approvalhttp.RefusalText(status))}
}

// Interface guard
var _ caddy.AdminRouter = (*ApprovalsAdmin)(nil)

package caddymodule

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/mcpgate/mcpgate/caddymodule/adminapi"
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

// Routes returns the admin routes: adminapi's, over every approval
// service of the process's usage pool.
func (ApprovalsAdmin) Routes() []caddy.AdminRoute {
	approvals := &adminapi.Approvals{Services: instanceApprovals(""), Logs: caddy.Log}
	return adminRoutes(approvals.Routes())
}

// Interface guard
var _ caddy.AdminRouter = (*ApprovalsAdmin)(nil)

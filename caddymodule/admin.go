package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/mcpgate/mcpgate/caddymodule/adminapi"
	"github.com/mcpgate/mcpgate/caddymodule/approvalhttp"
)

func init() {
	caddy.RegisterModule(ToolsAdmin{})
}

// ToolsAdmin serves the tool catalog on Caddy's admin API, for operators
// and `mcpgate tools`:
//
//	GET  /mcpgate/tools[?server=<name>]   the tools the gateway knows
//	POST /mcpgate/tools/accept            {"server", "tool", "hash"}
//
// "server" is the name the upstream's tools are kept under: its upstream
// name, else its server name. Accepting pins a tool's current definition,
// lifting the block on a tool whose definition changed. With "hash", the
// accept only succeeds if the current definition still has that hash, so
// an operator never accepts a definition other than the one they
// reviewed. Like the approval routes, accepting answers only operators
// (see ApprovalsAdmin): accepting a changed tool lifts a block.
type ToolsAdmin struct{}

// CaddyModule returns the Caddy module information.
func (ToolsAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mcpgate_tools",
		New: func() caddy.Module { return new(ToolsAdmin) },
	}
}

// Routes returns the admin routes: adminapi's, over the tool catalogs of
// the process's usage pool.
func (ToolsAdmin) Routes() []caddy.AdminRoute {
	tools := &adminapi.Tools{EachCatalog: eachCatalog, Upstream: runningUpstream, Logs: caddy.Log}
	return adminRoutes(tools.Routes())
}

// runningUpstream is the upstream name a server name stands for in the
// configuration running now (not one being loaded, which may yet fail to
// start), or the name itself.
func runningUpstream(server string) string {
	app, err := caddy.ActiveContext().AppIfConfigured("mcpgate")
	if err != nil {
		return server
	}
	return app.(*App).upstreamOf(server)
}

// adminRoutes makes Caddy admin routes of adminapi's routes; their
// refusals become caddy.APIErrors, which the admin API answers with their
// status and reason.
func adminRoutes(routes []adminapi.Route) []caddy.AdminRoute {
	admin := make([]caddy.AdminRoute, 0, len(routes))
	for _, route := range routes {
		admin = append(admin, caddy.AdminRoute{
			Pattern: route.Pattern,
			Handler: caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				err := route.Serve(w, r)
				if refused, ok := errors.AsType[*approvalhttp.Error](err); ok {
					return caddy.APIError{HTTPStatus: refused.Status, Err: refused.Err}
				}
				return err
			}),
		})
	}
	return admin
}

// Interface guard
var _ caddy.AdminRouter = (*ToolsAdmin)(nil)

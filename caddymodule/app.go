package caddymodule

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is mcpgate's view of one configuration as a whole. Its handlers
// register in it as they are provisioned, so that a configuration whose
// handlers cannot tell their upstreams apart is refused before it runs. It
// is created for each configuration, with nothing to configure.
type App struct {
	upstreams *upstreamClaims
}

// upstreamClaims maps each upstream name an mcp_policy handler fronts to
// whether it was named explicitly (upstream <name>), and counts the
// handlers named by default on each HTTP server.
type upstreamClaims struct {
	mu      sync.Mutex
	names   map[string]bool
	unnamed map[string]int
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID: "mcpgate",
		New: func() caddy.Module {
			return &App{upstreams: &upstreamClaims{names: make(map[string]bool), unnamed: make(map[string]int)}}
		},
	}
}

// Start implements caddy.App; the app holds no running parts.
func (*App) Start() error { return nil }

// Stop implements caddy.App.
func (*App) Stop() error { return nil }

// appOf returns the configuration's App.
func appOf(ctx caddy.Context) (*App, error) {
	app, err := ctx.App("mcpgate")
	if err != nil {
		return nil, fmt.Errorf("loading the mcpgate app: %w", err)
	}
	return app.(*App), nil
}

// defaultServer names a handler configured without `server`: after the
// listener addresses of the HTTP server it is provisioned in (":8443"),
// with "#2", "#3", ... for the second and later such handlers of one
// server, in the order of its routes. The name comes from configuration
// alone, so that replicas and restarts of one configuration agree on it
// (pins are kept under it) and no request can choose it; outside an HTTP
// server it is gateway.DefaultServer.
func (a *App) defaultServer(ctx caddy.Context) string {
	name := gateway.DefaultServer
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && len(srv.Listen) > 0 {
		name = strings.Join(srv.Listen, ",")
	}
	claims := a.upstreams
	claims.mu.Lock()
	defer claims.mu.Unlock()
	claims.unnamed[name]++
	if n := claims.unnamed[name]; n > 1 {
		name += "#" + strconv.Itoa(n)
	}
	return name
}

// claimUpstream records that a handler fronts the upstream called name,
// named explicitly with the upstream subdirective or not. Two handlers of
// one configuration may front the same upstream only when both say so
// with upstream <name>: what the gateway learns of an upstream's tools
// must never apply to another's.
func (a *App) claimUpstream(name string, explicit bool) error {
	claims := a.upstreams
	claims.mu.Lock()
	defer claims.mu.Unlock()
	wasExplicit, taken := claims.names[name]
	switch {
	case !taken:
		claims.names[name] = explicit
		return nil
	case explicit && wasExplicit:
		return nil
	default:
		return fmt.Errorf("two mcp_policy handlers name the server %q: give each upstream its own name; "+
			"if both really front the same MCP server, say so in both with `upstream %s`", name, name)
	}
}

// Interface guards
var (
	_ caddy.App    = (*App)(nil)
	_ caddy.Module = (*App)(nil)
)

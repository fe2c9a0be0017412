package caddymodule

import (
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
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
// whether it was named explicitly (upstream <name>).
type upstreamClaims struct {
	mu    sync.Mutex
	names map[string]bool
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mcpgate",
		New: func() caddy.Module { return &App{upstreams: &upstreamClaims{names: make(map[string]bool)}} },
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

// claimUpstream records that a handler fronts the upstream called name
// (the empty name is the unnamed upstream), named explicitly with the
// upstream subdirective or not. Two handlers of one configuration may
// front the same upstream only when both say so with upstream <name>:
// what the gateway learns of an upstream's tools must never apply to
// another's.
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
	case name == "":
		return fmt.Errorf("two mcp_policy handlers name no server: give each its own with `server <name>`, " +
			"since what the gateway learns of an upstream's tools (their categories and pins) is kept per upstream")
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

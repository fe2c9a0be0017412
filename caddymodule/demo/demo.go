// Package demo provides http.handlers.mcp_demo, an example MCP server (a
// small issue tracker) served by Caddy itself, so that the root Caddyfile
// can run the gateway in front of a real MCP server with one command.
package demo

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/subdirective"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("mcp_demo", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		handler := new(Handler)
		return handler, handler.UnmarshalCaddyfile(h.Dispenser)
	})
	httpcaddyfile.RegisterDirectiveOrder("mcp_demo", httpcaddyfile.After, "reverse_proxy")
}

// Handler serves the demo issue tracker over MCP's Streamable HTTP
// transport. It is a terminal handler: it answers every request.
type Handler struct {
	// Stateless serves without sessions (each request stands alone).
	Stateless bool `json:"stateless,omitempty"`
	// JSONResponse answers POSTs with application/json instead of an
	// SSE stream.
	JSONResponse bool `json:"json_response,omitempty"`

	mcp http.Handler
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_demo",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the tracker and its MCP handler.
func (h *Handler) Provision(caddy.Context) error {
	server := NewTracker().Server()
	h.mcp = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{
		Stateless:    h.Stateless,
		JSONResponse: h.JSONResponse,
	})
	return nil
}

// ServeHTTP answers the request with the demo MCP server.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.mcp.ServeHTTP(w, r)
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	mcp_demo {
//		stateless
//		json_response
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	given := subdirective.Once{}
	for d.NextBlock(0) {
		if err := given.Check(d, "stateless", "json_response"); err != nil {
			return err
		}
		switch d.Val() {
		case "stateless":
			h.Stateless = true
		case "json_response":
			h.JSONResponse = true
		default:
			return d.Errf("unrecognized mcp_demo subdirective %q", d.Val())
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)

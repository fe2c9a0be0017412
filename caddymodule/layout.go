package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// This file checks, when a configuration starts, that in every HTTP server
// holding an mcp_policy no request can reach an MCP server past it: Caddy
// runs `handle`, `handle_path` and `route` blocks before a site-level
// directive, a matcher on mcp_policy narrower than the proxy's lets the
// other paths through, and a handler placed after the proxy never runs.
// Each of these loads and serves, forwarding calls undecided; so the
// gateway walks the routes as Caddy will run them and refuses such a
// configuration, saying where.
//
// (Written here: Caddy has no notion of a handler that must precede
// another, and no library models its route evaluation.)

func init() {
	caddy.RegisterModule(Bypass{})
	httpcaddyfile.RegisterHandlerDirective("mcp_bypass", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		if h.NextArg() || h.NextBlock(0) {
			return nil, h.Err("mcp_bypass takes no arguments")
		}
		return Bypass{}, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("mcp_bypass", httpcaddyfile.Before, "reverse_proxy")
}

// Bypass (mcp_bypass) says that the handlers after it in its route reach
// an MCP server's upstream without mcp_policy on purpose (a health check,
// the server's own web pages): the check of the configuration's layout
// lets them. It does nothing to requests.
type Bypass struct{}

// CaddyModule returns the Caddy module information.
func (Bypass) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.mcp_bypass", New: func() caddy.Module { return Bypass{} }}
}

// ServeHTTP passes the request on.
func (Bypass) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

// upstreamHandlers are the handlers that hand a request to an MCP server
// and answer it, calling no next handler.
var upstreamHandlers = []string{"http.handlers.reverse_proxy", "http.handlers.mcp_stdio", "http.handlers.mcp_demo"}

// checkLayout walks the routes of an HTTP server holding an mcp_policy
// (its routes, named routes and error routes) and refuses a layout in
// which a request reaches an upstream without passing mcp_policy where
// another reaches it through mcp_policy, an mcp_policy no request
// reaches, or an mcp_policy that guards nothing while an upstream is
// reached without it.
func checkLayout(srv *caddyhttp.Server) error {
	w := &layoutWalk{srv: srv, invoking: map[string]bool{}}
	w.routes(srv.Routes, chain{reachable: true}, "route")
	if srv.Errors != nil {
		w.routes(srv.Errors.Routes, chain{reachable: true}, "error route")
	}
	var errs []error
	errs = append(errs, w.errs...)
	for _, u := range w.upstreams {
		if u.gated != "" && u.ungated != "" {
			errs = append(errs, fmt.Errorf("%s is reached without mcp_policy at %s, while %s passes mcp_policy: "+
				"requests on the first path reach the MCP server undecided. Put mcp_policy before that reverse_proxy too (in its route or an enclosing one, with no narrower matcher); "+
				"if that path is deliberately not MCP (a health check), put mcp_bypass before it", u.name, u.ungated, u.gated))
		}
	}
	if w.policies > 0 && !w.guarded {
		for _, u := range w.upstreams {
			if u.ungated != "" {
				errs = append(errs, fmt.Errorf("no mcp_policy guards anything, while %s is reached without one at %s: "+
					"put mcp_policy before the reverse_proxy, in the same block, with no matcher narrower than the proxy's "+
					"(Caddy runs handle, handle_path, route and invoke before a directive of the site itself)",
					u.name, u.ungated))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("in the HTTP server listening on %s: %w", listenerName(srv.Listen), errors.Join(errs...))
	}
	return nil
}

// layoutWalk is what checkLayout found so far.
type layoutWalk struct {
	srv *caddyhttp.Server
	// upstreams are the upstreams reached, in the order first reached.
	upstreams []*reachedUpstream
	// policies counts the mcp_policy handlers reached; guarded is set once
	// a handler runs after one.
	policies int
	guarded  bool
	errs     []error
	// invoking holds the named routes being walked (a route that invokes
	// itself is walked once).
	invoking map[string]bool
}

// reachedUpstream is an upstream and where it is first reached through
// mcp_policy and without it ("" when not).
type reachedUpstream struct {
	key, name      string
	gated, ungated string
}

// chain is what holds for a request at a point of a handler chain: that
// an mcp_policy ran before (gated), that an mcp_bypass did, and that a
// request can get there at all (no handler that answers every request
// ran before: reachable).
type chain struct {
	gated, bypassed, reachable bool
}

// routes walks a route list, returning what holds after it for a request
// that went through every route. A route with matchers changes nothing
// for the requests it does not match, so what it adds holds only inside
// it; except that a later route with the very same matchers (Caddyfile
// directives with one matcher become such routes) sees what it added.
func (w *layoutWalk) routes(routes caddyhttp.RouteList, c chain, where string) chain {
	var gatedUnder []caddyhttp.MatcherSets
	for i, route := range routes {
		here := fmt.Sprintf("%s %d%s", where, i, describeMatchers(route.MatcherSets))
		conditional := len(route.MatcherSets) > 0
		in := c
		if conditional && slices.ContainsFunc(gatedUnder, func(m caddyhttp.MatcherSets) bool { return reflect.DeepEqual(m, route.MatcherSets) }) {
			in.gated = true
		}
		out := w.handlers(route.Handlers, in, here)
		switch {
		case conditional:
			if out.gated && !c.gated {
				gatedUnder = append(gatedUnder, route.MatcherSets)
			}
		default:
			c = out
			if route.Terminal {
				c.reachable = false
			}
		}
	}
	return c
}

// handlers walks one route's handlers.
func (w *layoutWalk) handlers(handlers []caddyhttp.MiddlewareHandler, c chain, where string) chain {
	for i, h := range handlers {
		id := moduleID(h)
		here := fmt.Sprintf("%s, handler %d (%s)", where, i, strings.TrimPrefix(id, "http.handlers."))
		switch h := h.(type) {
		case *Handler:
			if !c.reachable {
				w.errs = append(w.errs, fmt.Errorf("mcp_policy at %s is never reached: a handler before it (a reverse_proxy, or a block or named route holding one) answers every request it would see", here))
			}
			w.policies++
			c.gated = true
			continue
		case Bypass, *Bypass:
			c.bypassed = true
			continue
		case *caddyhttp.Subroute:
			c = w.routes(h.Routes, c, here+" > route")
			if h.Errors != nil {
				w.routes(h.Errors.Routes, chain{reachable: c.reachable}, here+" > error route")
			}
			continue
		case *caddyhttp.Invoke:
			if named := w.srv.NamedRoutes[h.Name]; named != nil && !w.invoking[h.Name] {
				w.invoking[h.Name] = true
				c = w.routes(caddyhttp.RouteList{*named}, c, fmt.Sprintf("%s > named route %q", here, h.Name))
				delete(w.invoking, h.Name)
			}
			continue
		}
		if c.reachable && c.gated {
			w.guarded = true
		}
		if asksOnly(h) {
			continue
		}
		if slices.Contains(upstreamHandlers, id) {
			if c.reachable && !c.bypassed {
				w.reach(h, id, c.gated, here)
			}
			c.reachable = false
		}
	}
	return c
}

// asksOnly reports whether h is a reverse_proxy that sends the upstream
// another method than POST, without the body, and goes on to the next
// handler when answered (forward_auth asks an authentication service so):
// no MCP message reaches that upstream, and the request goes on.
func asksOnly(h caddyhttp.MiddlewareHandler) bool {
	proxy, ok := h.(*reverseproxy.Handler)
	return ok && proxy.Rewrite != nil && proxy.Rewrite.Method != "" && !strings.EqualFold(proxy.Rewrite.Method, http.MethodPost) && len(proxy.HandleResponse) > 0
}

// reach records that the upstream handler h, at here, is reached through
// mcp_policy or not. A reverse_proxy's upstream is its dial addresses
// (two proxies to one address reach one server); anything else is the
// handler itself.
func (w *layoutWalk) reach(h caddyhttp.MiddlewareHandler, id string, gated bool, here string) {
	key, name := fmt.Sprintf("%p", h), strings.TrimPrefix(id, "http.handlers.")
	if proxy, ok := h.(*reverseproxy.Handler); ok && proxy.DynamicUpstreams == nil && len(proxy.Upstreams) > 0 {
		var dials []string
		for _, u := range proxy.Upstreams {
			dials = append(dials, u.Dial)
		}
		slices.Sort(dials)
		key = "dial " + strings.Join(dials, " ")
		name = "the reverse_proxy to " + strings.Join(dials, ", ")
	}
	i := slices.IndexFunc(w.upstreams, func(u *reachedUpstream) bool { return u.key == key })
	if i < 0 {
		w.upstreams = append(w.upstreams, &reachedUpstream{key: key, name: name})
		i = len(w.upstreams) - 1
	}
	u := w.upstreams[i]
	switch {
	case gated && u.gated == "":
		u.gated = here
	case !gated && u.ungated == "":
		u.ungated = here
	}
}

// describeMatchers names a route's host and path matchers, as people
// write them (" (path /mcp*)"), or the number of its matcher sets.
func describeMatchers(sets caddyhttp.MatcherSets) string {
	var parts []string
	for _, set := range sets {
		for _, m := range set {
			switch m := m.(type) {
			case caddyhttp.MatchPath:
				parts = append(parts, "path "+strings.Join(m, " "))
			case *caddyhttp.MatchPath:
				parts = append(parts, "path "+strings.Join(*m, " "))
			case caddyhttp.MatchHost:
				parts = append(parts, "host "+strings.Join(m, " "))
			case *caddyhttp.MatchHost:
				parts = append(parts, "host "+strings.Join(*m, " "))
			default:
				parts = append(parts, "a "+strings.TrimPrefix(fmt.Sprintf("%T", m), "*")+" matcher")
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// moduleID is a handler's Caddy module ID.
func moduleID(h caddyhttp.MiddlewareHandler) string {
	if m, ok := h.(caddy.Module); ok {
		return string(m.CaddyModule().ID)
	}
	return fmt.Sprintf("%T", h)
}

// Interface guards
var _ caddyhttp.MiddlewareHandler = Bypass{}

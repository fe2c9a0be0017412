package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/intercept"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// This file checks, when a configuration starts, that no request can
// reach an MCP server past mcp_policy: Caddy runs `handle`, `handle_path`
// and `route` blocks before a site-level directive, a matcher on
// mcp_policy narrower than the proxy's lets the other paths through, a
// handler placed after the proxy never runs, and another site, port or
// error route may proxy to the same server. Each of these loads and
// serves, forwarding calls undecided; so the gateway walks the routes of
// every HTTP server as Caddy will run them and refuses such a
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
		return new(Bypass), nil
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
	return caddy.ModuleInfo{ID: "http.handlers.mcp_bypass", New: func() caddy.Module { return new(Bypass) }}
}

// ServeHTTP passes the request on, with mcpgate's placeholders empty (no
// message was read), not left as written.
func (Bypass) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	annotateNoMessage(r)
	return next.ServeHTTP(w, r)
}

// upstreamHandlers are the handlers that hand a request to an MCP server
// and answer it, calling no next handler.
var upstreamHandlers = []string{"http.handlers.reverse_proxy", "http.handlers.mcp_stdio", "http.handlers.mcp_demo"}

// checkLayout walks the routes of the HTTP servers (their routes, named
// routes and error routes) and refuses a layout in which an upstream is
// reached through mcp_policy on one path and without it on another (in
// any server), a proxy whose upstream is chosen at run time is reached
// without mcp_policy while any upstream is reached through it, or, in a
// server holding an mcp_policy, one is never
// reached or none guards anything while an upstream is reached without
// one.
func checkLayout(servers map[string]*caddyhttp.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), dialLookupTimeout)
	defer cancel()
	w := &layoutWalk{upstreams: map[string]*reachedUpstream{}, dials: newDialNames(ctx, net.DefaultResolver.LookupIPAddr)}
	w.listeners = w.dials.listeners(servers)
	for _, name := range slices.Sorted(maps.Keys(servers)) {
		srv := servers[name]
		w.server(srv)
		if w.policies == 0 {
			continue
		}
		if !w.guarded {
			for _, place := range w.ungatedHere {
				w.fail("no mcp_policy guards anything, while %s: "+
					"put mcp_policy before it, in the same block, with no matcher narrower than its own "+
					"(Caddy runs handle, handle_path, route and invoke blocks before a site-level mcp_policy, which it orders just before reverse_proxy)", place)
			}
		}
	}
	w.followHops()
	for _, key := range slices.Sorted(maps.Keys(w.upstreams)) {
		if u := w.upstreams[key]; u.gated != "" && u.ungated != "" {
			w.errs = append(w.errs, fmt.Errorf("%s is reached without mcp_policy at %s, while %s passes mcp_policy: "+
				"requests on the first path reach the MCP server undecided. Put mcp_policy before it on the first path too (in its route or an enclosing one, with no narrower matcher); "+
				"if that path is deliberately not MCP (a health check), put mcp_bypass before it", u.name, u.ungated, u.gated))
		}
	}
	if w.anyGated {
		for _, place := range w.steered {
			w.errs = append(w.errs, fmt.Errorf("a reverse_proxy whose upstream is chosen at run time (dynamic upstreams, or a placeholder of the request's or a file's in its address) is reached without mcp_policy at %s: "+
				"it can reach the MCP servers mcp_policy guards; put mcp_policy before it, or mcp_bypass if that is deliberate", place))
		}
	}
	return errors.Join(w.errs...)
}

// layoutWalk is what checkLayout found so far.
type layoutWalk struct {
	srv *caddyhttp.Server
	// where names the server being walked, in messages.
	where string
	// upstreams are the upstreams reached, by key (see upstreamKeys).
	upstreams map[string]*reachedUpstream
	// dials spells the proxies' dial addresses.
	dials *dialNames
	// anyGated is set once any upstream is reached through mcp_policy;
	// steered holds where a proxy whose upstream is chosen at run time
	// is reached without it.
	anyGated bool
	steered  []string
	// For the server being walked: the mcp_policy handlers reached, whether
	// a handler ran after one (guarded), and where upstreams are reached
	// without one.
	policies    int
	guarded     bool
	ungatedHere []string
	errs        []error
	// walked holds the named routes walked, by name and chain, with what
	// holds after them (each is walked once per chain: a chain of invokes
	// is not walked again for every way into it); invoking those being
	// walked (a route that invokes itself is walked once).
	walked   map[namedWalk]chain
	invoking map[string]bool
	// reached are the upstream handlers reached, in every server;
	// listeners are the servers by what their listeners' addresses
	// reach (dialNames.key), for following a proxy to one of them.
	reached   []reach
	listeners map[string]*caddyhttp.Server
}

// reach is an upstream handler reached at place in the HTTP server srv,
// through mcp_policy or not, that reaches keys (see upstreamKeys).
type reach struct {
	srv   *caddyhttp.Server
	keys  []string
	gated bool
	place string
}

// namedWalk is a named route walked with a chain.
type namedWalk struct {
	name  string
	chain chain
}

// reachedUpstream is an upstream and where it is first reached through
// mcp_policy and without it ("" when not).
type reachedUpstream struct {
	name           string
	gated, ungated string
}

// chain is what holds for a request at a point of a handler chain: that
// an mcp_policy ran before (gated), that an mcp_bypass did, and that a
// request can get there at all (no handler that answers every request
// ran before: reachable).
type chain struct {
	gated, bypassed, reachable bool
}

// fail records a problem of the server being walked.
func (w *layoutWalk) fail(format string, args ...any) {
	err := fmt.Errorf("in the HTTP server listening on %s: "+format, append([]any{w.where}, args...)...)
	if !slices.ContainsFunc(w.errs, func(e error) bool { return e.Error() == err.Error() }) {
		w.errs = append(w.errs, err)
	}
}

// server walks one HTTP server.
func (w *layoutWalk) server(srv *caddyhttp.Server) {
	w.srv, w.where = srv, listenerName(srv.Listen)
	w.policies, w.guarded, w.ungatedHere = 0, false, nil
	w.walked, w.invoking = map[namedWalk]chain{}, map[string]bool{}
	w.routes(srv.Routes, chain{reachable: true}, "route")
	if srv.Errors != nil {
		w.routes(srv.Errors.Routes, chain{reachable: true}, "error route")
	}
}

// routes walks a route list, returning what holds after it for a request
// that went through every route. A route with matchers, or in a group
// (which an earlier route of the group may have taken instead), changes
// nothing for the requests that skip it, so what it adds holds only
// inside it; except that the very next route, when it has the same
// matchers (Caddyfile directives with one matcher become such routes),
// sees that its requests passed mcp_policy or mcp_bypass (routes between
// that only set response headers change nothing of the request).
func (w *layoutWalk) routes(routes caddyhttp.RouteList, c chain, where string) chain {
	under, added := "", chain{}
	for i, route := range routes {
		here := fmt.Sprintf("%s %d%s", where, i, describeMatchers(route.MatcherSets))
		skippable := len(route.MatcherSets) > 0 || route.Group != ""
		matchers := matcherKey(route.MatcherSets)
		in := c
		if len(route.MatcherSets) > 0 && matchers == under {
			in.gated, in.bypassed = in.gated || added.gated, in.bypassed || added.bypassed
		}
		out := w.handlers(route.Handlers, in, here)
		if !keepsRequest(route) {
			under, added = "", chain{}
		}
		if !skippable {
			c = out
			if route.Terminal {
				c.reachable = false
			}
		} else if (out.gated && !c.gated || out.bypassed && !c.bypassed) && len(route.MatcherSets) > 0 && route.Group == "" {
			// (A route in a group may be skipped for an earlier one of
			// its group that matched: it carries nothing to the next.)
			under, added = matchers, chain{gated: out.gated && !c.gated, bypassed: out.bypassed && !c.bypassed}
		}
	}
	return c
}

// keepsRequest reports whether a route only sets response headers, so
// that a request matches the same matchers after it as before.
func keepsRequest(route caddyhttp.Route) bool {
	for _, h := range route.Handlers {
		if hh, ok := h.(*headers.Handler); !ok || hh.Request != nil {
			return false
		}
	}
	return true
}

// handlers walks one route's handlers.
func (w *layoutWalk) handlers(handlers []caddyhttp.MiddlewareHandler, c chain, where string) chain {
	for i, h := range handlers {
		id := caddy.GetModuleID(h)
		here := fmt.Sprintf("%s, handler %d (%s)", where, i, caddy.GetModuleName(h))
		switch h := h.(type) {
		case *Handler:
			if !c.reachable {
				w.fail("mcp_policy at %s is never reached: a handler before it (a reverse_proxy, or a block or named route holding one) answers every request it would see", here)
			}
			w.policies++
			c.gated = true
			continue
		case Bypass, *Bypass:
			c.bypassed = true
			continue
		case *caddyhttp.Subroute:
			// An mcp_bypass holds within its block. Its error routes run
			// on an error anywhere in it, before its mcp_policy too: with
			// what held as it was entered.
			in := c
			c = w.routes(h.Routes, c, here+" > route")
			if h.Errors != nil {
				w.routes(h.Errors.Routes, in, here+" > error route")
			}
			c.bypassed = in.bypassed
			continue
		case *caddyhttp.Invoke:
			bypassed := c.bypassed
			c = w.invoke(h.Name, c, here)
			c.bypassed = bypassed
			continue
		case *intercept.Intercept:
			w.responseRoutes(h.HandleResponse, c, here)
		case *reverseproxy.Handler:
			// Its handle_response routes get the request as it came,
			// body included, whatever the proxy sent its upstream.
			w.responseRoutes(h.HandleResponse, c, here)
		}
		if c.reachable && c.gated {
			w.guarded = true
		}
		if asksOnly(h) {
			continue
		}
		if slices.Contains(upstreamHandlers, id) {
			if c.reachable && !c.bypassed {
				w.reach(h, c.gated, here)
			}
			if !carriesOn(h) {
				c.reachable = false
			}
		}
	}
	return c
}

// invoke walks the named route name, once per chain it is entered with.
func (w *layoutWalk) invoke(name string, c chain, here string) chain {
	named := w.srv.NamedRoutes[name]
	if named == nil || w.invoking[name] {
		return c
	}
	key := namedWalk{name, c}
	if after, walked := w.walked[key]; walked {
		return after
	}
	w.invoking[name] = true
	after := w.routes(caddyhttp.RouteList{*named}, c, fmt.Sprintf("%s > named route %q", here, name))
	delete(w.invoking, name)
	w.walked[key] = after
	return after
}

// responseRoutes walks the routes a handler runs on the response
// (handle_response), which may hand the request to another upstream.
func (w *layoutWalk) responseRoutes(handlers []caddyhttp.ResponseHandler, c chain, where string) {
	for i, rh := range handlers {
		in := c
		in.reachable = true
		w.routes(rh.Routes, in, fmt.Sprintf("%s > handle_response %d > route", where, i))
	}
}

// carriesOn reports whether h is a reverse_proxy with handle_response
// routes, which Caddy runs with the next handler after the proxy as
// theirs: a route that writes no response goes on to it (falling through
// on a 404, say), a request without a body as it came.
func carriesOn(h caddyhttp.MiddlewareHandler) bool {
	proxy, ok := h.(*reverseproxy.Handler)
	return ok && len(proxy.HandleResponse) > 0
}

// asksOnly reports whether h is a reverse_proxy that sends its upstream a
// GET or HEAD, without the body, and goes on to the next handler when
// answered (forward_auth asks an authentication service so): no MCP
// message reaches that upstream, and the request goes on.
func asksOnly(h caddyhttp.MiddlewareHandler) bool {
	proxy, ok := h.(*reverseproxy.Handler)
	if !ok || proxy.Rewrite == nil || len(proxy.HandleResponse) == 0 {
		return false
	}
	method := proxy.Rewrite.Method
	return method == http.MethodGet || method == http.MethodHead
}

// reach records that the upstream handler h, at here, is reached through
// mcp_policy or not.
func (w *layoutWalk) reach(h caddyhttp.MiddlewareHandler, gated bool, here string) {
	place, name := fmt.Sprintf("%s of the server listening on %s", here, w.where), describeUpstream(h)
	keys, steered := w.dials.upstreamKeys(h)
	if steered && !gated {
		w.steered = append(w.steered, place)
	}
	if gated {
		w.anyGated = true
	} else {
		w.ungatedHere = append(w.ungatedHere, fmt.Sprintf("%s is reached without one at %s", name, here))
	}
	w.reached = append(w.reached, reach{srv: w.srv, keys: keys, gated: gated, place: place})
	w.record(keys, name, gated, place)
}

// record notes that what keys name (the upstream name) is reached at
// place, through mcp_policy or not.
func (w *layoutWalk) record(keys []string, name string, gated bool, place string) {
	for _, key := range keys {
		u := w.upstreams[key]
		if u == nil {
			u = &reachedUpstream{name: name}
			w.upstreams[key] = u
		}
		switch {
		case gated && u.gated == "":
			u.gated = place
		case !gated && u.ungated == "":
			u.ungated = place
		}
	}
}

// followHops follows the proxies that reach one of the configuration's
// own listeners open beyond this machine (see listeners): what that
// server's routes reach without mcp_policy, a proxy through it reaches
// through it (an inner site adding the upstream's credentials, say). The
// inner server stays reachable on its own listener from elsewhere: an
// upstream reached so is reached both ways.
func (w *layoutWalk) followHops() {
	through := make([]string, len(w.reached)) // the gated way to each reach, when hopped to
	for changed := true; changed; {
		changed = false
		for i, from := range w.reached {
			if !from.gated && through[i] == "" {
				continue
			}
			way := from.place
			if through[i] != "" {
				way = through[i]
			}
			for _, key := range from.keys {
				inner := w.listeners[key]
				if inner == nil {
					continue
				}
				for j, to := range w.reached {
					if to.srv != inner || to.gated || through[j] != "" {
						continue
					}
					through[j] = fmt.Sprintf("%s, then %s", way, to.place)
					w.record(to.keys, "", true, through[j]) // recorded already, with its name
					changed = true
				}
			}
		}
	}
}

// serverRunner is an upstream handler that runs its MCP server itself
// and names it (mcp_stdio: its program, arguments, environment and
// folder, not its tuning): two handlers of one name run the same server.
type serverRunner interface {
	RunsServer() string
}

// upstreamKeys names what an upstream handler reaches: for a
// reverse_proxy, what each of its dial addresses reaches (see
// dialNames.key); for anything else, its settings (mcp_stdio's command
// and folder). steered is set for a proxy that may reach any server:
// dynamic upstreams, or an address with a placeholder of the request's.
func (d *dialNames) upstreamKeys(h caddyhttp.MiddlewareHandler) (keys []string, steered bool) {
	proxy, ok := h.(*reverseproxy.Handler)
	if runner, runs := h.(serverRunner); runs {
		return []string{fmt.Sprintf("%s %s", caddy.GetModuleID(h), runner.RunsServer())}, false
	}
	if !ok {
		// An MCP server the handler runs itself (mcp_demo): two handlers
		// configured alike run the same server.
		settings, err := json.Marshal(h)
		if err != nil {
			return []string{fmt.Sprintf("%s %p", caddy.GetModuleID(h), h)}, false
		}
		return []string{fmt.Sprintf("%s %s", caddy.GetModuleID(h), settings)}, false
	}
	if proxy.DynamicUpstreams != nil {
		// Chosen at run time, by a lookup the gateway cannot repeat: it
		// may be any server.
		return nil, true
	}
	repl := caddy.NewReplacer()
	for _, u := range proxy.Upstreams {
		// Environment and system placeholders are settings; any other
		// (the request's) lets a request choose the upstream, and so does
		// a file's, which Caddy reads anew for every request: such a
		// proxy may reach any server, and also reaches what the file
		// names now.
		dial := repl.ReplaceKnown(u.Dial, "")
		if strings.Contains(u.Dial, "{file.") {
			steered = true
		}
		if strings.Contains(dial, "{") {
			steered = true
			continue
		}
		keys = append(keys, d.key(dial))
	}
	return keys, steered
}

// maxListenerPorts bounds the ports of one listener address the check
// names (a range): past it, a proxy to one of its ports is not followed.
const maxListenerPorts = 1024

// listeners names what the listener addresses of the servers that listen
// beyond this machine reach, as key names a dial address, with the server
// listening there. A server that listens only on loopback addresses or
// unix sockets is left out: only this machine's processes reach it, as
// they reach an upstream on this machine without it (the demo's tracker,
// a site of its own on 127.0.0.1).
func (d *dialNames) listeners(servers map[string]*caddyhttp.Server) map[string]*caddyhttp.Server {
	names := map[string]*caddyhttp.Server{}
	for _, srv := range servers {
		if !slices.ContainsFunc(srv.Listen, listensBeyond) {
			continue
		}
		for _, listen := range srv.Listen {
			addr, err := caddy.ParseNetworkAddress(listen)
			if err != nil {
				continue
			}
			for port := uint64(addr.StartPort); port <= uint64(addr.EndPort) && port < uint64(addr.StartPort)+maxListenerPorts; port++ {
				one := addr
				one.StartPort, one.EndPort = uint(port), uint(port)
				names[d.key(one.String())] = srv
			}
		}
	}
	return names
}

// listensBeyond reports whether a listener address takes connections from
// other machines: any but a loopback address, localhost, a unix socket or
// a file descriptor.
func listensBeyond(listen string) bool {
	addr, err := caddy.ParseNetworkAddress(listen)
	if err != nil {
		return true
	}
	if addr.IsUnixNetwork() || addr.IsFdNetwork() {
		return false
	}
	host, _, _ := strings.Cut(strings.ToLower(addr.Host), "%")
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// dialLookupTimeout bounds the name lookups of one layout check: a name
// not resolved by then is compared as written.
const dialLookupTimeout = 3 * time.Second

// dialNames spells dial addresses so that two that reach one server
// compare alike, for one layout check.
type dialNames struct {
	ctx    context.Context
	lookup func(ctx context.Context, host string) ([]net.IPAddr, error)
	// own holds this machine's addresses, as net.IP.String spells them.
	own map[string]bool
	// resolved holds whether each name looked up resolved to this
	// machine.
	resolved map[string]bool
}

// newDialNames returns the spelling of one check, which looks names up
// with lookup until ctx ends.
func newDialNames(ctx context.Context, lookup func(ctx context.Context, host string) ([]net.IPAddr, error)) *dialNames {
	d := &dialNames{ctx: ctx, lookup: lookup, own: map[string]bool{}, resolved: map[string]bool{}}
	addrs, _ := net.InterfaceAddrs() // none known: only loopback counts as this machine
	for _, addr := range addrs {
		if prefix, ok := addr.(*net.IPNet); ok {
			d.own[prefix.IP.String()] = true
		}
	}
	return d
}

// key names what a dial address reaches: its network (tcp4 and tcp6 as
// tcp) and port with its host: "local" for this machine (loopback,
// unspecified, localhost, the addresses of its interfaces, and a name
// that resolves to one of those when the check runs: an alias in
// /etc/hosts, the machine's own name), an address as net.IP spells it
// (without an IPv6 zone), any other name as written (in lower case,
// without a trailing dot); a unix socket's path made clean, its case
// kept. A name that resolves elsewhere is not compared by its addresses:
// behind a CDN or an ingress, sites apart share them.
func (d *dialNames) key(dial string) string {
	addr, err := caddy.ParseNetworkAddress(dial)
	if err != nil {
		return "dial " + dial
	}
	network := strings.TrimRight(addr.Network, "46") // tcp4, tcp6: tcp
	key := func(host string) string { return fmt.Sprintf("dial %s/%s:%d", network, host, addr.StartPort) }
	switch {
	case addr.IsUnixNetwork():
		return key(filepath.Clean(addr.Host))
	case addr.IsFdNetwork():
		return key(addr.Host)
	}
	host := strings.TrimSuffix(strings.ToLower(addr.Host), ".")
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone: the interface, not the host
	if host == "" || host == "localhost" {
		return key("local")
	}
	if ip := net.ParseIP(host); ip != nil {
		return key(d.spell(ip))
	}
	if d.resolvesHere(host) {
		return key("local")
	}
	return key(host)
}

// resolvesHere reports whether a name resolves to an address of this
// machine, looking it up once per check.
func (d *dialNames) resolvesHere(name string) bool {
	here, looked := d.resolved[name]
	if !looked {
		if found, err := d.lookup(d.ctx, name); err == nil {
			here = slices.ContainsFunc(found, func(ip net.IPAddr) bool { return d.here(ip.IP) })
		}
		d.resolved[name] = here
	}
	return here
}

// spell is an address as key spells it.
func (d *dialNames) spell(ip net.IP) string {
	if d.here(ip) {
		return "local"
	}
	return ip.String()
}

// here reports whether an address is this machine's: loopback,
// unspecified, or one of its interfaces'.
func (d *dialNames) here(ip net.IP) bool {
	return ip.IsLoopback() || ip.IsUnspecified() || d.own[ip.String()]
}

// describeUpstream names an upstream handler in messages.
func describeUpstream(h caddyhttp.MiddlewareHandler) string {
	proxy, ok := h.(*reverseproxy.Handler)
	if !ok || len(proxy.Upstreams) == 0 {
		return "the " + caddy.GetModuleName(h)
	}
	var dials []string
	for _, u := range proxy.Upstreams {
		dials = append(dials, u.Dial)
	}
	return "the reverse_proxy to " + strings.Join(dials, ", ")
}

// matcherKey is a route's matcher sets as text in which the order Caddy
// happened to build each set in does not show, for telling whether two
// routes match the same requests. A matcher that cannot be written out
// makes the key unique.
func matcherKey(sets caddyhttp.MatcherSets) string {
	var parts []string
	for _, set := range sets {
		var matchers []string
		for _, m := range set {
			text, err := json.Marshal(m)
			if err != nil || !writtenWhole(m) {
				text = fmt.Appendf(nil, "%p", m)
			}
			matchers = append(matchers, fmt.Sprintf("%T %s", m, text))
		}
		slices.Sort(matchers)
		parts = append(parts, strings.Join(matchers, " & "))
	}
	return strings.Join(parts, " | ")
}

// writtenWhole reports whether a matcher's JSON says all it matches on
// once provisioned: the matchers that hold other modules (not, a
// matcher module of a plugin) lose them from their JSON when Caddy loads
// them, and two would then compare equal whatever they match.
func writtenWhole(m any) bool {
	switch m.(type) {
	case caddyhttp.MatchPath, *caddyhttp.MatchPath, caddyhttp.MatchHost, *caddyhttp.MatchHost,
		caddyhttp.MatchMethod, *caddyhttp.MatchMethod, caddyhttp.MatchHeader, *caddyhttp.MatchHeader,
		caddyhttp.MatchQuery, *caddyhttp.MatchQuery, caddyhttp.MatchProtocol, *caddyhttp.MatchProtocol,
		*caddyhttp.MatchPathRE, *caddyhttp.MatchHeaderRE, *caddyhttp.MatchRemoteIP, *caddyhttp.MatchClientIP,
		*caddyhttp.MatchExpression:
		return true
	}
	return false
}

// describeMatchers names a route's host and path matchers, as people
// write them (" (path /mcp*)"), and the kinds of the others.
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

// Interface guards
var _ caddyhttp.MiddlewareHandler = Bypass{}

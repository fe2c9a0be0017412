package mcphttp

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// OriginPolicy decides which browser origins may reach the MCP endpoint,
// the transport spec's defence against DNS rebinding (2025-06-18,
// basic/transports, "Security Warning": servers MUST validate Origin).
// Requests without an Origin header (non-browser clients) are not affected.
type OriginPolicy struct {
	// Allowed lists origins ("https://app.example.com") that may connect;
	// "*" allows any. When empty, a site reached on a loopback address
	// accepts only loopback origins, and any other site only its own
	// origin, over TLS or by IP address (over plain HTTP a name could be a
	// rebinding attacker's).
	Allowed []string
}

// Check returns an error when the request's Origin is not allowed, or
// is given more than once: a browser sends one, and of several this
// check would read one and an upstream with an allow-list of its own
// another (or all of them, joined).
func (p OriginPolicy) Check(r *http.Request) error {
	if origins := r.Header.Values("Origin"); len(origins) > 1 {
		return fmt.Errorf("the Origin header is given %d times", len(origins))
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	if len(p.Allowed) > 0 {
		if slices.Contains(p.Allowed, "*") || slices.ContainsFunc(p.Allowed, func(allowed string) bool {
			return strings.EqualFold(strings.TrimSuffix(allowed, "/"), origin)
		}) {
			return nil
		}
		return fmt.Errorf("origin %q is not allowed", origin)
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("origin %q is not a valid origin", origin)
	}
	if servedOnLoopback(r) {
		// A rebinding attacker's page carries its own (non-loopback)
		// origin even though its name resolves to 127.0.0.1.
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("origin %q is not a loopback origin, and this site is served on loopback", origin)
	}
	if !strings.EqualFold(u.Host, r.Host) {
		return fmt.Errorf("origin %q is not this site's origin", origin)
	}
	if r.TLS == nil && u.Scheme != "https" && net.ParseIP(hostOnly(r.Host)) == nil {
		// A rebinding attacker's name, pointed at this address, makes
		// its page's origin the Host it sends; over TLS (here, or at a
		// proxy in front: the origin is https) it would need a
		// certificate for that name, and an IP address is no one's name.
		return fmt.Errorf("origin %q names this site, but over plain HTTP by a name DNS rebinding could point here: "+
			"list the origins browsers may use in allowed_origins", origin)
	}
	return nil
}

// hostOnly returns the host of a Host header, without its port or an
// IPv6 address's brackets.
func hostOnly(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return strings.Trim(hostport, "[]")
}

// servedOnLoopback reports whether the request arrived on a loopback
// address of this machine.
func servedOnLoopback(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

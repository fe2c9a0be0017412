package gateway

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/mcpgate/mcpgate/caddymodule/identity"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// admit is the first stage. What the gateway would read but the upstream
// never receive is taken out (an upgrade asked for, the headers the
// request's Connection names and the other hop-by-hop ones, a Host header
// beside HTTP/2's :authority, trailers, and X-Forwarded-* headers from a
// client that is not a trusted proxy), and what the upstream could read
// otherwise (headers named with underscores, Expect); the
// request's origin must be allowed; and, with an identity, the caller is
// identified. The protected resource's metadata (RFC 9728) is answered
// first, to anyone.
// With allowed_origins, the gateway answers the CORS protocol (cors.go).
func (x *exchange) admit() error {
	dropUpgrade(x.r.Header)
	dropNominated(x.r.Header)
	dropHopByHop(x.r.Header)
	dropUnderscored(x.r.Header)
	// The gateway reads a body whole before it goes on, and its own
	// server answered the client's Expect: 100-continue; forwarded, it
	// would have the upstream answer 100 Continue too, a status before
	// the reply's.
	x.r.Header.Del("Expect")
	// An HTTP/2 request may carry a Host header beside its :authority,
	// which is the request's Host (r.Host); the upstream never gets the
	// header (Go's transport writes r.Host), so no policy reads it.
	x.r.Header.Del("Host")
	dropTrailers(x.r)
	if !x.g.host.TrustedProxy(x.r) {
		dropForwarded(x.r.Header)
	}
	if c := x.g.callers; c != nil && c.servesMetadata(x.r) {
		// The protected resource's metadata is public: served to anyone,
		// to a page of any origin too (Access-Control-Allow-Origin: *),
		// before the origin check, which keeps pages of other origins
		// from the MCP endpoint and has nothing to keep from this.
		x.annotateUndecided("")
		c.writeMetadata(x.w)
		return errDone
	}
	if err := x.g.cfg.Origins.Check(x.r); err != nil {
		return refuse(http.StatusForbidden, mcpmsg.CodeInvalidRequest, err.Error())
	}
	if x.g.ownsCORS() {
		origin := x.r.Header.Get("Origin")
		cors := withCORS(x.w, origin)
		x.w = cors
		if origin != "" && isPreflight(x.r) {
			x.annotateUndecided("")
			answerPreflight(cors, x.r)
			return errDone
		}
	}
	if err := checkPath(x.r.URL); err != nil {
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, err.Error())
	}
	host, err := checkedHost(x.r.Host)
	if err != nil {
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, err.Error())
	}
	if host != x.r.Host {
		x.r.Host = host
		if x.g.host.HostChanged != nil {
			x.g.host.HostChanged(x.r)
		}
	}
	c := x.g.callers
	if c == nil {
		return nil
	}
	if !x.g.cfg.ForwardToken {
		// The token was issued for the gateway; passing it on would be
		// the token passthrough the MCP authorization spec forbids (on
		// any method, a preflight's included).
		defer x.r.Header.Del("Authorization")
	}
	if x.r.Method == http.MethodOptions {
		// A browser's CORS preflight never carries credentials; it has
		// no body and reaches nothing a caller could use.
		return nil
	}
	user, err := c.identify(x.r)
	if err != nil {
		status, description := c.refusal(err)
		if status != http.StatusServiceUnavailable && c.metadataURL != "" {
			x.w.Header().Set("WWW-Authenticate", identity.Challenge(c.metadataURL, err, c.config.Scopes))
		}
		x.g.logger.Info("caller refused", zap.Int("status", status), zap.Error(err), zap.String("remote_ip", x.g.host.ClientIP(x.r)))
		return refuse(status, mcpmsg.CodeInvalidRequest, "unauthorized: "+description)
	}
	x.caller = user
	return nil
}

// dropUnderscored takes out of h every header whose name holds an
// underscore. Servers behind CGI, WSGI, Rack and PHP read a header's name
// with its dashes as underscores (Mcp_Session_Id and Mcp-Session-Id are
// one to them, HTTP_MCP_SESSION_ID), so such a header could be read there
// as one the gateway read otherwise, or not at all (a session, a method,
// a header a policy reads). No MCP header has one; nginx drops them by
// default, and Apache before CGI.
func dropUnderscored(h http.Header) {
	for name := range h {
		if strings.ContainsRune(name, '_') {
			delete(h, name)
		}
	}
}

// dropUpgrade takes a protocol upgrade request out of h (Upgrade,
// HTTP2-Settings, and their tokens in Connection), as HTTP/1.1 lets a
// server ignore one (RFC 9110 §7.8): an upgrade the upstream accepted
// would be a tunnel of raw bytes in both directions, which nothing
// decides, and MCP needs none. (A client probing for h2c, as curl --http2
// does, goes on over HTTP/1.1.)
func dropUpgrade(h http.Header) {
	if len(h.Values("Upgrade")) == 0 && !httpguts.HeaderValuesContainsToken(h.Values("Connection"), "upgrade") {
		return
	}
	h.Del("Upgrade")
	h.Del("HTTP2-Settings")
	var kept []string
	for _, value := range h.Values("Connection") {
		for token := range strings.SplitSeq(value, ",") {
			token = strings.TrimSpace(token)
			if token != "" && !strings.EqualFold(token, "upgrade") && !strings.EqualFold(token, "http2-settings") {
				kept = append(kept, token)
			}
		}
	}
	h.Del("Connection")
	if len(kept) > 0 {
		h.Set("Connection", strings.Join(kept, ", "))
	}
}

// dropNominated takes out of h the headers its Connection names: they are
// hop-by-hop (RFC 9110 §7.6.1), and the proxy behind the gateway removes
// them (Caddy's reverse_proxy, as net/http/httputil's), so that the
// gateway would otherwise decide on headers the upstream never receives
// (a caller, a protocol version, a header a policy reads). Connection
// itself stays: net/http reads it to answer an HTTP/1.0 keep-alive.
func dropNominated(h http.Header) {
	for _, value := range h["Connection"] {
		for token := range strings.SplitSeq(value, ",") {
			if token = textproto.TrimString(token); token != "" && !strings.EqualFold(token, "Connection") {
				h.Del(token)
			}
		}
	}
}

// hopByHop are the hop-by-hop header fields that a proxy does not pass
// on, whether or not Connection names them (RFC 9110 §7.6.1; Caddy's
// reverse_proxy drops these, as net/http/httputil's does), but Connection
// itself (see dropNominated), Te (see dropHopByHop), Trailer (see
// dropTrailers) and Upgrade (see dropUpgrade).
var hopByHop = []string{"Alt-Svc", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Transfer-Encoding"}

// dropHopByHop takes the hop-by-hop headers out of h, so that a policy
// never decides on a header the upstream does not receive (a Keep-Alive,
// a TE of gzip). A TE naming trailers is kept as "trailers" alone, what
// reverse_proxy passes on of it.
func dropHopByHop(h http.Header) {
	for _, name := range hopByHop {
		h.Del(name)
	}
	if te := h.Values("Te"); len(te) > 0 {
		h.Del("Te")
		if httpguts.HeaderValuesContainsToken(te, "trailers") {
			h.Set("Te", "trailers")
		}
	}
}

// forwardedHeaders are the headers in which a proxy says who the client
// is and how it reached the proxy.
var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// dropForwarded takes the X-Forwarded-* headers out of the request of a
// client that is not a trusted proxy: Caddy's reverse_proxy replaces them
// with its own for such a client, so a policy reading them would decide
// on the client's word (an X-Forwarded-For of an internal address) while
// the upstream reads the proxy's. The client's address is
// request.remote_ip, which honours the server's trusted proxies.
func dropForwarded(h http.Header) {
	for _, name := range forwardedHeaders {
		h.Del(name)
	}
}

// dropTrailers takes out a request's trailers: header fields sent after
// the body, which the gateway does not read (it decides the body and the
// headers it reads before), and which a proxy forwards and some servers
// merge into the request's headers (uvicorn with httptools), where an
// Mcp-Session-Id, an Authorization or an Mcp-Method among them would be
// taken as undecided headers. The body the gateway forwards is its own,
// of a known length, so nothing of the chunked framing is needed either.
func dropTrailers(r *http.Request) {
	r.Trailer = nil
	r.Header.Del("Trailer")
}

// checkedHost returns a request's Host as the policy (input.request.host)
// and the upstream read it, or why it is refused. The upstream gets the
// Host through reverse_proxy and through placeholders ({host}), and its
// virtual hosts match it, often exactly (Go's ServeMux): so that a policy
// allowing public.example, or blocking admin.example, means the host the
// upstream serves, a Host is accepted only in a form that every reader
// reads alike: a DNS name (letters, digits, hyphens and underscores in
// dot-separated labels, no final dot), an IPv4 address in dotted decimal,
// or an IPv6 address in brackets, then perhaps a port (1 to 65535, no
// leading zero). A name in upper case is the same name to DNS and to
// every virtual host that folds case, and an IPv6 address the same
// address however written: they go on in lower case and written as netip
// writes them (Go's HTTP client sends a URL's host as written; WHATWG
// writers give an IPv4-mapped address in hex), the server's placeholders
// told (Host.HostChanged). Anything else (a final dot, brackets around a
// name, a second colon, "127.1", "0x7f000001") is refused.
func checkedHost(host string) (string, error) {
	if host == "" {
		return "", nil // HTTP/1.0: the upstream gets its own address
	}
	name, port, hasPort := host, "", false
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		name, port, hasPort = host[:i], host[i+1:], true
	}
	canonical, valid := strings.ToLower(name), !hasPort || validPort(port)
	if inner, bracketed := strings.CutPrefix(canonical, "["); bracketed {
		inner, closed := strings.CutSuffix(inner, "]")
		addr, err := netip.ParseAddr(inner)
		valid = valid && closed && err == nil && addr.Is6() && addr.Zone() == ""
		if valid {
			// One address, however written (WHATWG URL writers give an
			// IPv4-mapped one in hex, netip in dotted decimal): written
			// one way.
			canonical = "[" + addr.String() + "]"
		}
	} else {
		valid = valid && validHostName(canonical)
	}
	if !valid {
		return "", fmt.Errorf("the Host %q is not a host name, an IP address or a port as servers read them alike (no final dot, "+
			"an IPv4 address in dotted decimal), which servers read in different ways; send it so", host)
	}
	switch {
	case canonical == name:
		return host, nil // as sent (most requests): nothing to build
	case hasPort:
		return canonical + ":" + port, nil
	}
	return canonical, nil
}

// validPort reports whether port is a Host's: 1 to 65535, written
// without a leading zero.
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n <= 65535 && port[0] != '0' && port[0] != '+'
}

// validHostName reports whether name (in lower case) is a DNS name of
// dot-separated labels of letters, digits, hyphens and underscores, or,
// when its last label is a number, an IPv4 address in dotted decimal as
// written canonically ("127.1" and "0177.0.0.1" are other names to
// some readers and addresses to others).
func validHostName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	last := ""
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || strings.IndexFunc(label, func(c rune) bool {
			return (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_'
		}) >= 0 {
			return false
		}
		last = label
	}
	if endsInNumber(last) {
		addr, err := netip.ParseAddr(name)
		return err == nil && addr.Is4() && addr.String() == name
	}
	return true
}

// endsInNumber reports whether a name's last label is a number as WHATWG
// URL parsers and inet_aton read one, which makes the whole name an IPv4
// address to them: decimal digits, or 0x and hex digits ("127.0.0.0x1" is
// 127.0.0.1 to them, and a name to a policy or a virtual host).
func endsInNumber(label string) bool {
	if hex, ok := strings.CutPrefix(label, "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return strings.Trim(label, "0123456789") == ""
}

// checkPath refuses a request path that readers resolve differently, as
// the policy reads it (input.request.path) and the upstream receives it
// (Caddy passes it on as sent). After decoding, a path may hold only
// ASCII letters and digits, "/" and the characters RFC 3986 lets a path
// segment hold as data ("-._~!$&'()*+,=:@"); anything else is refused
// rather than told apart one form at a time: a semicolon (a servlet
// container drops a segment's ";x" parameters, so "/;x/admin" is /admin
// to it and "/admin;x" a path under /admin), a backslash (a WHATWG URL
// parser, as Node.js has, reads it as a slash), a percent sign (a server
// that decodes twice reads another character), white space, controls
// and other characters some servers strip or fold, and anything outside
// ASCII (including overlong or invalid UTF-8). Of what is left, refused
// are dot segments, which a WHATWG parser, aiohttp or a servlet container
// resolve and Express or Go do not ("..", also encoded as "%2e%2e"); empty
// segments, which some servers merge ("//admin"); and an encoded slash,
// which some servers decode before they route. No MCP client sends these:
// it resolves its endpoint's URL before sending.
func checkPath(u *url.URL) error {
	path := u.Path
	why, hint := "", "send the path resolved"
	if i := strings.IndexFunc(path, isNotPathData); i >= 0 {
		why, hint = pathCharacter(path[i]), "MCP endpoints need none"
	} else if strings.Contains(strings.ToLower(u.EscapedPath()), "%2f") {
		why, hint = "an encoded slash", "send it as a slash, or not at all"
	} else {
		segments := strings.Split(path, "/")
		for i, segment := range segments[1:] {
			switch {
			case segment == "." || segment == "..":
				why = "a dot segment"
			case segment == "" && i+2 < len(segments):
				why = "an empty segment"
			}
			if why != "" {
				break
			}
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("the request path %q holds %s, which servers read in different ways; %s", u.EscapedPath(), why, hint)
}

// isNotPathData reports whether c may not stand in a decoded request
// path (see checkPath). It takes a rune for strings.IndexFunc, which
// yields utf8.RuneError for each byte of invalid UTF-8: refused too.
func isNotPathData(c rune) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return false
	default:
		return !strings.ContainsRune("/-._~!$&'()*+,=:@", c)
	}
}

// pathCharacter names a byte that checkPath refuses, for its error.
func pathCharacter(c byte) string {
	switch {
	case c == ';':
		return `a semicolon (path parameters, which servlet containers take out)`
	case c == '\\':
		return "a backslash"
	case c == '%':
		return "a percent sign after decoding"
	case c >= 0x80:
		return "a character outside ASCII"
	case c < 0x20 || c == 0x7f:
		return fmt.Sprintf("a control character (0x%02x)", c)
	default:
		return fmt.Sprintf("the character %q", rune(c))
	}
}

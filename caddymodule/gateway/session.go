package gateway

import (
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
)

// legacySessionParam is the query parameter of the message endpoint the
// gateway gives HTTP+SSE clients: it holds the sealed session.
const legacySessionParam = "mcpgate_session"

// findSession is the stage that finds the MCP session a request belongs to.
// The gateway never hands a client the session id its upstream chose, but
// a token sealing that id with the upstream and the caller
// (sessiontoken): an Mcp-Session-Id header on Streamable HTTP, the
// mcpgate_session parameter of the message endpoint on HTTP+SSE. A token
// is opened, its caller checked, and the upstream's own id put back for
// the upstream; a token the gateway cannot open, or one sealed for
// another caller, is refused, whatever the gateway remembers (or forgot
// in a restart, or never knew, on another replica). The session ids in
// the upstream's replies are sealed in turn.
func (x *exchange) findSession() error {
	x.session = sessionKey{upstream: x.g.cfg.Upstream, server: x.g.cfg.Server, caller: x.callerID(), realm: x.g.identityRealm()}
	headers := x.r.Header.Values(mcphttp.HeaderSessionID)
	var legacyTokens []string
	if x.r.URL.RawQuery != "" {
		// Parsing makes a map even of nothing; most requests have no query.
		legacyTokens = x.r.URL.Query()[legacySessionParam]
	}
	if len(legacyTokens) == 0 && x.g.sessions.legacy.carriesOpenSession(x.r.URL) {
		// The upstream's own id of an HTTP+SSE session open through the
		// gateway (learned from a log, say), in the query or the path,
		// under whatever name: the upstream would run the message in
		// whoever's session it is.
		x.g.logger.Warn("request carrying an upstream's own HTTP+SSE session id refused",
			zap.String("path", x.r.URL.Path), zap.String("remote_ip", x.g.host.ClientIP(x.r)))
		return refuse(http.StatusNotFound, mcpmsg.CodeInvalidRequest,
			"unknown session: this URL names an HTTP+SSE session as the upstream names it; post to the endpoint this gateway gave the session")
	}
	switch {
	case len(headers) > 1:
		// Which copy an upstream reads is not something to guess.
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, "Mcp-Session-Id given more than once")
	case len(legacyTokens) > 0 && len(headers) > 0:
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest,
			"a request names a Streamable HTTP session (Mcp-Session-Id) and an HTTP+SSE session ("+legacySessionParam+") at once")
	case len(headers) == 1:
		if err := x.openStreamableSession(headers[0]); err != nil {
			return err
		}
	case len(legacyTokens) > 0:
		return x.openLegacySession(legacyTokens)
	}
	x.w = &sessionSealer{ResponseWriter: x.w, x: x}
	return nil
}

// callerID is the identified caller's id, "" when there is none.
func (x *exchange) callerID() string {
	if x.caller == nil {
		return ""
	}
	return x.caller.ID
}

// sessionScope is what the session tokens the gateway hands out are
// sealed for: its upstream and its server. Gateways that front one
// upstream under two server names (two sites, two routes, each with its
// policy and its guards) do not share sessions: a session opened on one
// and used on the other would have its calls decided by the second and
// their answers, on the first's stream, guarded by the first (its
// block_secrets, its decisions on the server's requests), which neither
// alone allows.
func (g *Gateway) sessionScope() string {
	return g.cfg.Upstream + "\x00session\x00" + g.cfg.Server
}

// openSession opens a token of the given kind and checks its caller.
func (x *exchange) openSession(token string, kind sessiontoken.Kind) (sessiontoken.Session, error) {
	s, err := x.g.cfg.Sealer.Open(x.g.sessionScope(), token)
	if err == nil && s.Kind != kind {
		err = sessiontoken.ErrMalformed
	}
	if err != nil {
		x.g.logger.Info("unknown session refused", zap.Error(err), zap.String("remote_ip", x.g.host.ClientIP(x.r)))
		// 404 is how MCP tells a client its session is gone: it starts
		// a new one.
		return s, refuse(http.StatusNotFound, mcpmsg.CodeInvalidRequest,
			"unknown session: this gateway did not open it, or no longer accepts its key; start a new session")
	}
	if s.Caller != x.session.sealedCaller() && x.session.caller != "" && sealedCallerID(s.Caller) == x.session.caller {
		// The caller's own id in another realm (the issuer changed), or
		// sealed before tokens named the realm: unknown now, so that the
		// client starts a new session.
		return s, refuse(http.StatusNotFound, mcpmsg.CodeInvalidRequest,
			"unknown session: this gateway did not open it, or no longer accepts its key; start a new session")
	}
	if s.Caller != x.session.sealedCaller() {
		x.g.logger.Warn("session presented by another user refused",
			zap.String("user", x.session.caller), zap.String("remote_ip", x.g.host.ClientIP(x.r)))
		return s, refuse(http.StatusForbidden, mcpmsg.CodeInvalidRequest, "this session belongs to another user")
	}
	return s, nil
}

// openStreamableSession opens a Streamable HTTP session's token.
func (x *exchange) openStreamableSession(token string) error {
	s, err := x.openSession(token, sessiontoken.Streamable)
	if err != nil {
		return err
	}
	x.r.Header.Set(mcphttp.HeaderSessionID, s.ID)
	x.session.id = s.ID
	x.client, x.clientKnown = capabilities(s.Capabilities), true
	x.sessionClient = x.client
	return nil
}

// openLegacySession opens an HTTP+SSE message endpoint's token: the
// request goes to the endpoint the upstream named, and only while the
// session's stream is open through the gateway (on HTTP+SSE the session
// lives as long as its stream).
func (x *exchange) openLegacySession(tokens []string) error {
	if x.r.Method != http.MethodPost || len(tokens) != 1 || len(x.r.URL.Query()) != 1 {
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest,
			"an HTTP+SSE message endpoint is posted to exactly as the endpoint event named it")
	}
	s, err := x.openSession(tokens[0], sessiontoken.Legacy)
	if err != nil {
		return err
	}
	endpoint, err := url.Parse(s.ID)
	if err != nil {
		return refuse(http.StatusNotFound, mcpmsg.CodeInvalidRequest, "unknown session")
	}
	x.r.URL.Path, x.r.URL.RawPath, x.r.URL.RawQuery = endpoint.Path, endpoint.RawPath, endpoint.RawQuery
	if x.session, err = legacyKey(x.session, endpoint); err != nil {
		return refuse(http.StatusNotFound, mcpmsg.CodeInvalidRequest, "unknown session")
	}
	stream := x.g.sessions.legacy.lookup(x.session)
	if stream == nil {
		return refuse(http.StatusNotFound, mcpmsg.CodeInvalidRequest,
			"this HTTP+SSE session has ended: its event stream is not open through this gateway; open a new one")
	}
	x.legacy = &legacyPost{session: x.session, stream: stream}
	return nil
}

// sessionSealer seals the session id the upstream names in its reply,
// with the exchange's caller and what the client declared (at
// initialize, learned after the sealer was put in place).
type sessionSealer struct {
	http.ResponseWriter
	x    *exchange
	done bool
}

// WriteHeader seals the reply's Mcp-Session-Id, if any. An informational
// status is no reply: a session id it names is taken out, and the final
// status is still to come.
func (s *sessionSealer) WriteHeader(status int) {
	if status >= 100 && status <= 199 {
		s.Header().Del(mcphttp.HeaderSessionID)
		s.ResponseWriter.WriteHeader(status)
		return
	}
	if !s.done {
		s.done = true
		header := s.Header()
		if ids := header.Values(mcphttp.HeaderSessionID); len(ids) > 0 {
			x := s.x
			if x.relay != nil && x.session.id == "" && !x.session.legacy {
				// The reply opens the session (initialize's): what the
				// server asks on it (a ping before the session is
				// initialized) is the new session's, answered in it.
				x.relay.session.id = ids[0]
			}
			header.Set(mcphttp.HeaderSessionID, x.g.cfg.Sealer.Seal(x.g.sessionScope(), sessiontoken.Session{
				Kind: sessiontoken.Streamable, Caller: x.session.sealedCaller(), ID: ids[0], Capabilities: byte(x.sessionClient),
			}))
		}
	}
	s.ResponseWriter.WriteHeader(status)
}

// Write writes the header first, so that an implicit 200 is sealed too.
func (s *sessionSealer) Write(p []byte) (int, error) {
	if !s.done {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (s *sessionSealer) Unwrap() http.ResponseWriter { return s.ResponseWriter }

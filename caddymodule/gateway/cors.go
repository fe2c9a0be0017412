package gateway

import (
	"net/http"
	"strings"
)

// This file answers browsers' cross-origin checks (the Fetch standard's
// CORS protocol) for the origins allowed_origins lists: without them a page
// of another origin, though allowed, could send no MCP request (a JSON
// POST is preceded by a preflight) nor read a reply. The gateway owns
// them: it answers preflights itself, and replaces the Access-Control-*
// headers of every reply, the upstream's included, with its own, so that
// a browser never reads two that disagree (two Access-Control-Allow-Origin
// headers fail the check). It is written here rather than taken from a
// library: the decision which origins may is the gateway's origin policy,
// and Caddy has no CORS handler of its own to build on.

// corsExposed are the reply headers a page may read: the session an
// initialize opened, the revision, why a caller was refused (RFC 9728's
// challenge names the resource metadata), and when to retry.
const corsExposed = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, Retry-After"

// corsMethods are the methods MCP's transports use.
const corsMethods = "GET, POST, DELETE"

// corsMaxAge is how long, in seconds, a browser may keep a preflight's
// answer (browsers cap it: Chromium at two hours, Firefox at a day).
const corsMaxAge = "7200"

// ownsCORS reports whether the gateway answers the CORS protocol:
// allowed_origins lists origins. Then every reply's Access-Control-*
// headers are the gateway's (none but to a page of an origin it allows,
// whose origin admit checks), and every reply varies by Origin.
func (g *Gateway) ownsCORS() bool {
	return len(g.cfg.Origins.Allowed) > 0
}

// isPreflight reports whether r is a CORS preflight: an OPTIONS from a page
// asking which method it may use.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}

// answerPreflight answers a preflight from an allowed origin, on w (the
// exchange's writer, a corsWriter): any of MCP's methods, with the headers
// the page asked to send (the origin is what is checked; MCP clients send
// headers of their own, an API key's say).
func answerPreflight(w *corsWriter, r *http.Request) {
	w.preflight = http.Header{
		"Access-Control-Allow-Methods": {corsMethods},
		"Access-Control-Max-Age":       {corsMaxAge},
	}
	if asked := r.Header.Values("Access-Control-Request-Headers"); len(asked) > 0 {
		w.preflight.Set("Access-Control-Allow-Headers", strings.Join(asked, ", "))
	}
	w.Header().Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
	w.WriteHeader(http.StatusNoContent)
}

// corsWriter sets the CORS headers of a reply when its status is written,
// in place of any the upstream set: to an allowed origin, the ones that let
// it read the reply; to a request without an Origin, none.
type corsWriter struct {
	http.ResponseWriter
	// origin is the request's Origin; empty when it has none.
	origin string
	// preflight holds the headers of the gateway's answer to a preflight.
	preflight http.Header
	wrote     bool
}

// withCORS returns w setting the CORS headers of a reply to a request
// from origin (empty: none).
func withCORS(w http.ResponseWriter, origin string) *corsWriter {
	return &corsWriter{ResponseWriter: w, origin: origin}
}

// WriteHeader sets the CORS headers, once, as the final status goes out.
func (c *corsWriter) WriteHeader(status int) {
	if !c.wrote && (status < 100 || status > 199) {
		c.wrote = true
		h := c.ResponseWriter.Header()
		for name := range h {
			if len(name) > len("access-control-") && strings.EqualFold(name[:len("access-control-")], "access-control-") {
				delete(h, name)
			}
		}
		h.Add("Vary", "Origin")
		switch {
		case c.origin == "":
		case c.preflight != nil:
			h.Set("Access-Control-Allow-Origin", c.origin)
			for name, values := range c.preflight {
				h[name] = values
			}
		default:
			h.Set("Access-Control-Allow-Origin", c.origin)
			h.Set("Access-Control-Expose-Headers", corsExposed)
		}
	}
	c.ResponseWriter.WriteHeader(status)
}

// Write writes the status first, as net/http does.
func (c *corsWriter) Write(p []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(p)
}

// FlushError flushes what was written, the status first (a flush before
// it would send the headers without the CORS ones).
func (c *corsWriter) FlushError() error {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(c.ResponseWriter).Flush()
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (c *corsWriter) Unwrap() http.ResponseWriter {
	return c.ResponseWriter
}

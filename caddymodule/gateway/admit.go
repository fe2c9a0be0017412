package gateway

import (
	"net/http"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/mcpgate/mcpgate/caddymodule/identity"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// admit is the first stage: the request's origin must be allowed, and,
// with an identity, the caller is identified.
func (x *exchange) admit() error {
	if len(x.r.Header.Values("Upgrade")) > 0 || httpguts.HeaderValuesContainsToken(x.r.Header.Values("Connection"), "upgrade") {
		// An upgrade the upstream accepted would be a tunnel of raw bytes
		// in both directions, which nothing decides. MCP needs none.
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest,
			"protocol upgrades (Upgrade, Connection: upgrade) are not relayed: MCP over HTTP needs none")
	}
	if err := x.g.cfg.Origins.Check(x.r); err != nil {
		return refuse(http.StatusForbidden, mcpmsg.CodeInvalidRequest, err.Error())
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
	if c.servesMetadata(x.r) {
		c.writeMetadata(x.w)
		return errDone
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

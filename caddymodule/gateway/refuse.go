package gateway

import (
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// refusal is a request the gateway refuses before (or instead of)
// policy: answered with an HTTP status and a JSON-RPC error without id.
type refusal struct {
	status  int
	code    int
	message string
}

func (e *refusal) Error() string { return e.message }

// refuse returns the refusal of a request.
func refuse(status, code int, message string) error {
	return &refusal{status: status, code: code, message: message}
}

// reject answers a refused request.
func (x *exchange) reject(e *refusal) error {
	x.g.logger.Debug("request refused",
		zap.Int("status", e.status),
		zap.String("reason", e.message),
		zap.String("remote_ip", x.g.host.ClientIP(x.r)))
	x.annotateRejection(e)
	x.auditRejection(e)
	if x.raw == nil && x.r.ContentLength != 0 {
		// Refused before its body was read (or while it was): the
		// connection closes with the answer, rather than net/http
		// reading on (and a client that sends nothing more, or trickles,
		// waiting for it) before it writes the answer.
		x.w.Header().Set("Connection", "close")
	}
	mcphttp.WriteJSON(x.w, e.status, mcpmsg.ErrorResponse(nil, e.code, e.message))
	return nil
}

package gateway

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// refusal is a request the gateway refuses before (or instead of)
// policy: answered with an HTTP status and a JSON-RPC error, without id
// but for a request's the refusal concerns (see refusedID).
type refusal struct {
	status  int
	code    int
	message string
	// id is the id of the request refused, when the parse read it
	// before it refused the body (see refusedID).
	id []byte
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
	mcphttp.WriteJSON(x.w, e.status, mcpmsg.ErrorResponse(x.refusedID(e), e.code, e.message))
	return nil
}

// refusedID is the id a refusal answers: the request's, when the body was
// read as one request with an id and the refusal concerns it (400: what
// the message holds, its headers, its revision; or -32602, its params:
// answers to questions not asked, a task or an approval token not the
// caller's), so that a client
// that reads the error as that request's answer keeps its session (the
// Go SDK's client ends one on an error without id, which JSON-RPC keeps
// for a request whose id cannot be read); else none. A refusal of the
// exchange keeps none (404 is a session gone, which the Go SDK's client
// reads only from an answer it cannot take for a request's; 403 a session
// of another caller's or an origin not allowed).
func (x *exchange) refusedID(e *refusal) []byte {
	if e.status != http.StatusBadRequest && e.code != mcpmsg.CodeInvalidParams {
		return nil
	}
	if e.id != nil {
		return e.id
	}
	if x.body == nil || x.body.Batch || len(x.body.Messages) != 1 {
		return nil
	}
	if m := &x.body.Messages[0]; m.Kind == mcpmsg.KindRequest {
		return m.ID
	}
	return nil
}

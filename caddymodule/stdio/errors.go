package stdio

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
)

// JSON-RPC error codes the gateway answers with, besides the standard
// ones.
const (
	// codeServerError is JSON-RPC's generic server error: the server
	// process could not be started, did not answer, or exited.
	codeServerError = -32000
	// codeSessionNotFound goes with HTTP 404 for an unknown or ended
	// session, as the MCP TypeScript SDK answers it; the status is what
	// tells a client to initialize anew (basic/transports, "Session
	// Management").
	codeSessionNotFound = -32001
)

// retryAfter is the Retry-After of a 503: how many seconds a client
// should wait for a session or a pooled process to come free.
const retryAfter = "5"

// writeError answers with a JSON-RPC error response for id (the zero ID
// for none: it is then null, as JSON-RPC requires).
func writeError(w http.ResponseWriter, status int, id jsonrpc.ID, code int64, message string) {
	writeErrorData(w, status, id, code, message, nil)
}

// writeErrorData is writeError with the error's data member.
func writeErrorData(w http.ResponseWriter, status int, id jsonrpc.ID, code int64, message string, data any) {
	type errorObject struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
		Data    any    `json:"data,omitempty"`
	}
	body, err := json.Marshal(struct {
		JSONRPC string      `json:"jsonrpc"`
		ID      any         `json:"id"`
		Error   errorObject `json:"error"`
	}{"2.0", id.Raw(), errorObject{code, message, data}})
	if err != nil {
		http.Error(w, message, status)
		return
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	mcphttp.WriteJSON(w, status, body)
}

// errNotStarted is what a client is told of a program that could not be
// started; the log says why.
var errNotStarted = errors.New("the MCP server could not be started (the gateway's log says why)")

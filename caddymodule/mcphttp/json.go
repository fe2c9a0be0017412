package mcphttp

import (
	"net/http"
	"strconv"
)

// WriteJSON answers with status and a JSON body, its length declared, as
// the gateway's own answers (errors, refusals) are written.
func WriteJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

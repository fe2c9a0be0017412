package stdiomodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestSessionOwner: a request's sessions count against the user mcp_policy
// identified, or else the client's address.
func TestSessionOwner(t *testing.T) {
	request := func(user string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.RemoteAddr = "192.0.2.7:5000"
		repl := caddy.NewReplacer()
		if user != "" {
			repl.Set("mcp.user.id", user)
		}
		return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	}
	for user, want := range map[string]string{"alice": "user alice", "": "address 192.0.2.7"} {
		if got := sessionOwner(request(user)); got != want {
			t.Errorf("the caller of a request of user %q = %q, want %q", user, got, want)
		}
	}
}

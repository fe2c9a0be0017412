package stdiomodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestSessionOwner: a request's sessions count against the user mcp_policy
// identified, in its realm, or else the client's address.
func TestSessionOwner(t *testing.T) {
	tests := []struct {
		user, realm, want string
	}{
		{user: "alice", realm: "staff", want: `user "staff" "alice"`},
		{user: "alice", realm: "https://idp.example", want: `user "https://idp.example" "alice"`},
		{user: "alice", want: `user "" "alice"`},
		// No realm and id that spell another's key together.
		{user: `staff" "alice`, want: `user "" "staff\" \"alice"`},
		{want: "address 192.0.2.7"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.RemoteAddr = "192.0.2.7:5000"
		repl := caddy.NewReplacer()
		if tt.user != "" {
			repl.Set("mcp.user.id", tt.user)
			repl.Set("mcp.user.realm", tt.realm)
		}
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		if got := sessionOwner(r); got != tt.want {
			t.Errorf("the caller of a request of user %q of realm %q = %q, want %q", tt.user, tt.realm, got, tt.want)
		}
	}
}

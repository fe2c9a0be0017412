package caddymodule

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestHostChanged: once the gateway rewrote the Host on a copy of the
// request Caddy's placeholders read (tracing makes one), {host},
// {hostport} and the host's labels read the rewritten Host.
func TestHostChanged(t *testing.T) {
	tests := []struct {
		sent, rewritten string
		want            map[string]string
	}{
		{"PUBLIC.Example:8080", "public.example:8080", map[string]string{
			"http.request.host": "public.example", "http.request.hostport": "public.example:8080",
			"http.request.host.labels.0": "example", "http.request.host.labels.1": "public",
		}},
		{"[::FFFF:7f00:1]:8080", "[::ffff:127.0.0.1]:8080", map[string]string{
			"http.request.host": "::ffff:127.0.0.1", "http.request.hostport": "[::ffff:127.0.0.1]:8080",
			"http.request.host.labels.0": "1", "http.request.host.labels.3": "::ffff:127",
		}},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/mcp", nil)
		r.Host = tt.sent
		repl := caddyhttp.NewTestReplacer(r)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		copied := r.WithContext(r.Context())
		copied.Host = tt.rewritten
		hostChanged(copied)
		for name, want := range tt.want {
			if got, _ := repl.GetString(name); got != want {
				t.Errorf("%s after %q became %q: {%s} = %q, want %q", tt.sent, tt.sent, tt.rewritten, name, got, want)
			}
		}
	}
}

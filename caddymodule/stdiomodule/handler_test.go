package stdiomodule_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestValidate loads JSON configs, which skip the Caddyfile's checks.
func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		handler string
		want    string // in the error; "" for none
	}{
		{"a command", `{"handler":"mcp_stdio","command":"server"}`, ""},
		{"no command", `{"handler":"mcp_stdio"}`, "mcp_stdio: no command to run"},
		{"a command that a placeholder empties", `{"handler":"mcp_stdio","command":"{env.MCPGATE_UNSET_VARIABLE}"}`, "no command to run"},
		{"negative max_sessions", `{"handler":"mcp_stdio","command":"server","max_sessions":-1}`, "max_sessions must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := `{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[` + tt.handler + `]}]}}}}}`
			var cfg caddy.Config
			if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatal(err)
			}
			err := caddy.Validate(&cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("validating %s: %v, want no error", tt.handler, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("validating %s: %v, want an error with %q", tt.handler, err, tt.want)
			}
		})
	}
}

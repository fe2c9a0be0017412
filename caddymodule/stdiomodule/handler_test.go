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
		{"an env name with =", `{"handler":"mcp_stdio","command":"server","env":{"A=B":"x"}}`, `env name "A=B"`},
		{"an empty env name", `{"handler":"mcp_stdio","command":"server","env":{"":"x"}}`, `env name ""`},
		{"an env name with NUL", `{"handler":"mcp_stdio","command":"server","env":{"A\u0000":"x"}}`, `env name "A\x00"`},
		{"an env value with NUL", `{"handler":"mcp_stdio","command":"server","env":{"A":"x\u0000y"}}`, "holds a NUL byte"},
		{"an argument with NUL", `{"handler":"mcp_stdio","command":"server","args":["a\u0000b"]}`, "holds a NUL byte"},
		{"a command with NUL", `{"handler":"mcp_stdio","command":"ser\u0000ver"}`, "holds a NUL byte"},
		{"a dir with NUL", `{"handler":"mcp_stdio","command":"server","dir":"/tmp\u0000x"}`, "holds a NUL byte"},
		{"a request placeholder in env", `{"handler":"mcp_stdio","command":"server","env":{"USER_ID":"{mcp.user.id}"}}`, "env USER_ID: {mcp.user.id} is a request's placeholder"},
		{"a request header in env", `{"handler":"mcp_stdio","command":"server","env":{"TOKEN":"Bearer {http.request.header.X-Token}"}}`, "{http.request.header.X-Token} is a request's placeholder"},
		{"a request placeholder in args", `{"handler":"mcp_stdio","command":"server","args":["--user={mcp.user.id}"]}`, "args: {mcp.user.id}"},
		{"a request placeholder in dir", `{"handler":"mcp_stdio","command":"server","dir":"/srv/{http.request.host}"}`, "dir: {http.request.host}"},
		{"braces that are no placeholder", `{"handler":"mcp_stdio","command":"server","args":["{\"a\":1}","{}"],"env":{"J":"{\"http.x\":1}"}}`, ""},
		{"an escaped, literal request placeholder", `{"handler":"mcp_stdio","command":"server","args":["--url-template=https://x/\\{http.request.host\\}"]}`, ""},
		{"a placeholder escaped on one side", `{"handler":"mcp_stdio","command":"server","args":["--user=\\{mcp.user.id}"]}`, `args: \{mcp.user.id} is a request's placeholder`},
		{"a Windows path before a placeholder", `{"handler":"mcp_stdio","command":"server","dir":"C:\\srv\\{mcp.user.id}"}`, `dir: \{mcp.user.id} is a request's placeholder`},
		{"a global placeholder", `{"handler":"mcp_stdio","command":"server","env":{"HOME_COPY":"{env.HOME}"}}`, ""},
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

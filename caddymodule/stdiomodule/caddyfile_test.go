package stdiomodule_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// handlersOf adapts a Caddyfile site holding directives, and returns the
// handlers of its route, in order, as JSON objects.
func handlersOf(t *testing.T, directives string) ([]map[string]any, error) {
	t.Helper()
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n"+directives+"\n}\n"), nil)
	if err != nil {
		return nil, err
	}
	var config struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []map[string]any `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &config); err != nil {
		t.Fatal(err)
	}
	var handlers []map[string]any
	for _, server := range config.Apps.HTTP.Servers {
		for _, route := range server.Routes {
			handlers = append(handlers, route.Handle...)
		}
	}
	return handlers, nil
}

func TestCaddyfile(t *testing.T) {
	tests := []struct {
		name      string
		caddyfile string
		want      map[string]any
	}{
		{
			name:      "an absolute command",
			caddyfile: "mcp_stdio {\ncommand /usr/bin/node /opt/server/index.js\n}",
			want:      map[string]any{"handler": "mcp_stdio", "command": "/usr/bin/node", "args": []any{"/opt/server/index.js"}},
		},
		{
			name: "every subdirective",
			caddyfile: `mcp_stdio {
				command npx -y @modelcontextprotocol/server-filesystem /srv/shared
				env GITHUB_TOKEN {env.GITHUB_TOKEN}
				env LOG_LEVEL debug
				dir /srv
				max_sessions 8
				max_sessions_per_caller 2
				idle_timeout 10m
				init_timeout 1m
				stop_grace 2s
				stateless_pool 2
				max_message_size 4MiB
			}`,
			want: map[string]any{
				"handler": "mcp_stdio", "command": "npx",
				"args":                    []any{"-y", "@modelcontextprotocol/server-filesystem", "/srv/shared"},
				"env":                     map[string]any{"GITHUB_TOKEN": "{env.GITHUB_TOKEN}", "LOG_LEVEL": "debug"},
				"dir":                     "/srv",
				"max_sessions":            float64(8),
				"max_sessions_per_caller": float64(2),
				"idle_timeout":            float64(10 * 60 * 1e9),
				"init_timeout":            float64(60 * 1e9),
				"stop_grace":              float64(2 * 1e9),
				"stateless_pool":          float64(2),
				"max_message_size":        float64(4 << 20),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handlers, err := handlersOf(t, tt.caddyfile)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			if len(handlers) != 1 || !reflect.DeepEqual(handlers[0], tt.want) {
				t.Errorf("adapted to %v, want %v", handlers, tt.want)
			}
		})
	}
}

// TestCaddyfileOrder: mcp_policy runs before mcp_stdio, with no global
// order option, whatever order the site lists them in.
func TestCaddyfileOrder(t *testing.T) {
	handlers, err := handlersOf(t, "mcp_stdio {\n\tcommand server\n}\nmcp_policy {\n\tpermissions {\n\t\tread_only allow\n\t}\n}")
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	var order []any
	for _, handler := range handlers {
		order = append(order, handler["handler"])
	}
	if !reflect.DeepEqual(order, []any{"mcp_policy", "mcp_stdio"}) {
		t.Errorf("the handlers run in the order %v, want mcp_policy, mcp_stdio", order)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name      string
		caddyfile string
		want      string
	}{
		{"no command", "mcp_stdio", "needs a command"},
		{"the command on the directive's line", "mcp_stdio npx server", "the command goes in the block"},
		{"an empty command", "mcp_stdio {\ncommand\n}", "wrong argument count"},
		{"the command twice", "mcp_stdio {\ncommand server\ncommand other\n}", "command given twice"},
		{"a directory twice", "mcp_stdio {\ncommand server\ndir /a\ndir /b\n}", "dir given twice"},
		{"max_sessions twice", "mcp_stdio {\ncommand server\nmax_sessions 2\nmax_sessions 3\n}", "max_sessions given twice"},
		{"stop_grace twice", "mcp_stdio {\ncommand server\nstop_grace 1s\nstop_grace 2s\n}", "stop_grace given twice"},
		{"max_message_size twice", "mcp_stdio {\ncommand server\nmax_message_size 1MiB\nmax_message_size 2MiB\n}", "max_message_size given twice"},
		{"env without a value", "mcp_stdio {\ncommand server\nenv TOKEN\n}", "wrong argument count"},
		{"env twice", "mcp_stdio {\ncommand server\nenv A 1\nenv A 2\n}", "env A is given twice"},
		{"zero sessions", "mcp_stdio {\ncommand server\nmax_sessions 0\n}", "at least 1"},
		{"a negative pool", "mcp_stdio {\ncommand server\nstateless_pool -1\n}", "at least 0"},
		{"a bad duration", "mcp_stdio {\ncommand server\nidle_timeout soon\n}", "idle_timeout: want a positive duration"},
		{"a zero duration", "mcp_stdio {\ncommand server\nstop_grace 0s\n}", "stop_grace: want a positive duration"},
		{"a bad size", "mcp_stdio {\ncommand server\nmax_message_size huge\n}", "max_message_size: invalid size"},
		{"an unknown subdirective", "mcp_stdio {\ncommand server\nuser nobody\n}", `unrecognized mcp_stdio subdirective "user"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handlersOf(t, tt.caddyfile)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("adapting %q gave %v, want an error with %q", tt.caddyfile, err, tt.want)
			}
		})
	}
}

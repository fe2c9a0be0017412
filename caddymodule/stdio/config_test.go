package stdio_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/stdio"
)

func TestEnvironment(t *testing.T) {
	t.Setenv("PATH", "/gateway/bin")
	t.Setenv("HOME", "/home/gateway")
	t.Setenv("GATEWAY_SECRET", "do-not-leak")
	tests := []struct {
		name       string
		configured map[string]string
		want       []string
	}{
		{"nothing configured", nil, []string{"PATH=/gateway/bin", "HOME=/home/gateway"}},
		{"variables of its own", map[string]string{"TOKEN": "t", "A": "1"}, []string{"PATH=/gateway/bin", "HOME=/home/gateway", "A=1", "TOKEN=t"}},
		{"PATH and HOME set", map[string]string{"PATH": "/srv/bin", "HOME": "/srv"}, []string{"HOME=/srv", "PATH=/srv/bin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stdio.Environment(tt.configured); !slices.Equal(got, tt.want) {
				t.Errorf("Environment(%v) = %q, want %q", tt.configured, got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		config stdio.Config
		want   string // in the error; "" for none
	}{
		{"defaults", stdio.Config{Command: stdio.Command{Path: "server"}}, ""},
		{"no command", stdio.Config{}, "no command"},
		{"a bad environment entry", stdio.Config{Command: stdio.Command{Path: "server", Env: []string{"=x"}}}, "not NAME=value"},
		{"negative max_sessions", stdio.Config{Command: stdio.Command{Path: "server"}, MaxSessions: -1}, "max_sessions must not be negative"},
		{"negative max_sessions_per_caller", stdio.Config{Command: stdio.Command{Path: "server"}, MaxSessionsPerCaller: -1}, "max_sessions_per_caller must not be negative"},
		{"max_sessions_per_caller over max_sessions", stdio.Config{Command: stdio.Command{Path: "server"}, MaxSessions: 4, MaxSessionsPerCaller: 5}, "max_sessions_per_caller (5) is more than max_sessions (4)"},
		{"max_sessions_per_caller over the default max_sessions", stdio.Config{Command: stdio.Command{Path: "server"}, MaxSessionsPerCaller: 33}, "is more than max_sessions (32)"},
		{"negative stop_grace", stdio.Config{Command: stdio.Command{Path: "server"}, StopGrace: -1}, "stop_grace must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.config.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestCommandNotFound: a program that is not in the server's PATH is an
// error the client reads, not a hang; the log names the PATH searched,
// the client's error does not (it is the operator's configuration).
func TestCommandNotFound(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	srv := stdio.New(stdio.Config{Command: stdio.Command{Path: "no-such-mcp-server", Env: []string{"PATH=/nonexistent"}}}, zap.New(core))
	t.Cleanup(func() { srv.Close() })
	url := serve(t, srv)
	status, _, body := post(t, url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if status != 200 || !strings.Contains(body, "could not be started") || strings.Contains(body, "nonexistent") || !strings.Contains(body, `"id":1`) {
		t.Errorf("initialize with a missing program: %d %s, want a JSON-RPC error that does not show the configuration", status, body)
	}
	logged := logs.FilterMessage("starting the MCP server").All()
	if len(logged) != 1 || !strings.Contains(fmt.Sprint(logged[0].ContextMap()["error"]), `not found in the server's PATH "/nonexistent"`) {
		t.Errorf("logged %v; want the PATH searched", logged)
	}
}

// TestUnavailable: a command says, before any client comes, why it could
// not start now: its program not found in its PATH or at its path (a
// relative one in its folder), or not executable, its folder missing.
func TestUnavailable(t *testing.T) {
	dir := t.TempDir()
	notExecutable := filepath.Join(dir, "server.js")
	if err := os.WriteFile(notExecutable, []byte("//"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		command stdio.Command
		want    string // in the error; "" for none
	}{
		{"a program in its PATH", stdio.Command{Path: "sh", Env: []string{"PATH=/usr/bin:/bin"}}, ""},
		{"a path", stdio.Command{Path: "/bin/sh"}, ""},
		{"in a folder", stdio.Command{Path: "/bin/sh", Dir: dir}, ""},
		{"a program not in its PATH", stdio.Command{Path: "no-such-mcp-server", Env: []string{"PATH=/nonexistent"}}, "not found in the server's PATH"},
		{"a missing folder", stdio.Command{Path: "/bin/sh", Dir: dir + "/missing"}, "its folder"},
		{"a file for a folder", stdio.Command{Path: "/bin/sh", Dir: "/bin/sh"}, "is not a folder"},
		{"a missing path", stdio.Command{Path: "/nonexistent/server"}, "the program: stat /nonexistent/server: no such file"},
		{"a path to a folder", stdio.Command{Path: "/bin/"}, "is not an executable file"},
		{"a path to a file not executable", stdio.Command{Path: notExecutable}, "is not an executable file"},
		{"a relative path, in its folder", stdio.Command{Path: "./sh", Dir: "/bin"}, ""},
		{"a relative path, not in its folder", stdio.Command{Path: "./sh", Dir: dir}, "the program: stat " + dir + "/sh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.command.Unavailable()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Unavailable() = %v; want %q", err, tt.want)
			}
		})
	}
}

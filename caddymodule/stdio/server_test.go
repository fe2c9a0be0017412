package stdio_test

import (
	"context"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/stdio"
	"github.com/mcpgate/mcpgate/internal/stdiotest"
)

// TestMain lets the test binary be the stdio server the tests start.
func TestMain(m *testing.M) {
	stdiotest.Main()
	os.Exit(m.Run())
}

// testServer runs a stdio.Server for the test binary in the given mode,
// behind httptest, and returns its URL; Close runs at cleanup. A nil
// logger logs nothing.
func testServer(t *testing.T, mode string, cfg stdio.Config, logger *zap.Logger) (string, *stdio.Server) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{stdiotest.EnvMode: mode}
	for _, pair := range cfg.Command.Env {
		name, value, _ := strings.Cut(pair, "=")
		env[name] = value
	}
	cfg.Command = stdio.Command{Path: self, Env: stdio.Environment(env)}
	srv := stdio.New(cfg, logger)
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the server: %v", err)
		}
	})
	return serve(t, srv), srv
}

// serve serves srv over HTTP until the test ends, and returns its URL.
func serve(t *testing.T, srv *stdio.Server) string {
	t.Helper()
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL
}

// connect opens a go-sdk client session to url.
func connect(t *testing.T, url string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, opts)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

// callText calls a tool and returns the text of its result.
func callText(t *testing.T, session *mcp.ClientSession, name string, args map[string]any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	params := &mcp.CallToolParams{Name: name}
	if args != nil {
		params.Arguments = args
	}
	res, err := session.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("calling %s: %v", name, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if text, ok := c.(*mcp.TextContent); ok {
			b.WriteString(text.Text)
		}
	}
	return b.String()
}

// pidOf asks the session's process for its pid.
func pidOf(t *testing.T, session *mcp.ClientSession) int {
	t.Helper()
	pid, err := strconv.Atoi(callText(t, session, "pid", nil))
	if err != nil {
		t.Fatalf("the pid tool answered something else: %v", err)
	}
	return pid
}

// waitGone waits until process pid has ended.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !stdiotest.Gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d is still running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSessionLifecycle(t *testing.T) {
	url, _ := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	session := connect(t, url, nil)
	if got := callText(t, session, "echo", map[string]any{"text": "hi"}); got != "echo:hi" {
		t.Errorf("echo answered %q, want echo:hi", got)
	}
	pid := pidOf(t, session)
	if err := session.Close(); err != nil {
		t.Fatalf("closing the session: %v", err)
	}
	waitGone(t, pid)
}

// TestStderrIsLogged checks that the server's stderr reaches the log line
// by line, with the session and pid, and that long lines are cut.
func TestStderrIsLogged(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	url, _ := testServer(t, stdiotest.ModeServe, stdio.Config{}, zap.New(core))
	session := connect(t, url, nil)
	pid := pidOf(t, session)
	callText(t, session, "shout", map[string]any{"text": "a", "steps": 20000})
	session.Close()
	waitGone(t, pid)

	var lines []observer.LoggedEntry
	for _, entry := range logs.FilterMessage("stderr").All() {
		lines = append(lines, entry)
	}
	if len(lines) != 2 {
		t.Fatalf("logged %d stderr lines, want 2 (ready, shout): %v", len(lines), lines)
	}
	ready := lines[0].ContextMap()
	if ready["line"] != "stdiotest ready" || ready["pid"] != int64(pid) || ready["session"] == "" || lines[0].LoggerName != "stderr" {
		t.Errorf("the first stderr entry is %s %v, want logger stderr with line, session and pid %d", lines[0].LoggerName, ready, pid)
	}
	shout := lines[1].ContextMap()
	if line, _ := shout["line"].(string); len(line) != 8<<10 || shout["truncated"] != true {
		t.Errorf("a 20000-byte line was logged with %d bytes (truncated %v), want 8192 and truncated", len(line), shout["truncated"])
	}
}

// TestStopEscalates: a server that ignores the end of its stdin and
// SIGTERM is killed after two grace periods.
func TestStopEscalates(t *testing.T) {
	const grace = 200 * time.Millisecond
	url, _ := testServer(t, stdiotest.ModeStubborn, stdio.Config{StopGrace: grace}, nil)
	session := connect(t, url, nil)
	pid := pidOf(t, session)
	start := time.Now()
	if err := session.Close(); err != nil {
		t.Fatalf("ending the session: %v", err)
	}
	waitGone(t, pid)
	if took := time.Since(start); took < 2*grace {
		t.Errorf("the stubborn server was gone after %s, before stdin's grace and SIGTERM's (%s)", took, 2*grace)
	}
}

// TestIdleTimeout: a session without requests ends after idle_timeout,
// its open GET stream notwithstanding, and its process stops.
func TestIdleTimeout(t *testing.T) {
	url, _ := testServer(t, stdiotest.ModeServe, stdio.Config{IdleTimeout: 200 * time.Millisecond}, nil)
	session := connect(t, url, nil)
	pid := pidOf(t, session)
	waitGone(t, pid)
	if _, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo"}); err == nil {
		t.Error("the idle session still answers")
	}
}

// TestGrandchildrenStop: stopping a session stops what its server
// started, in its process group.
func TestGrandchildrenStop(t *testing.T) {
	url, _ := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	session := connect(t, url, nil)
	grandchild, err := strconv.Atoi(callText(t, session, "spawn", nil))
	if err != nil || stdiotest.Gone(grandchild) {
		t.Fatalf("spawn started no grandchild (%v)", err)
	}
	session.Close()
	waitGone(t, grandchild)
}

package stdio_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
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
	"github.com/mcpgate/mcpgate/internal/testwait"
)

// TestMain lets the test binary be the stdio server the tests start.
func TestMain(m *testing.M) {
	stdiotest.Main()
	os.Exit(m.Run())
}

// testServer runs a stdio.Server for the test binary in the given mode,
// behind httptest, and returns its URL; Close runs at cleanup. A nil
// logger logs nothing.
func testServer(t *testing.T, mode string, cfg stdio.Config, logger *zap.Logger) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Command = stdio.Command{Path: self, Env: stdio.Environment(map[string]string{stdiotest.EnvMode: mode})}
	srv := stdio.New(cfg, logger)
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the server: %v", err)
		}
	})
	return serve(t, srv)
}

// serve serves srv over HTTP until the test ends, and returns its URL. A
// request's X-Test-Caller header names its caller (stdio.WithCaller).
func serve(t *testing.T, srv *stdio.Server) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if caller := r.Header.Get("X-Test-Caller"); caller != "" {
			r = stdio.WithCaller(r, caller)
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestSessionLifecycle(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	session := stdiotest.Connect(t, url, nil)
	if got, _ := stdiotest.Call(t, session, "echo", map[string]any{"text": "hi"}); got != "echo:hi" {
		t.Errorf("echo answered %q, want echo:hi", got)
	}
	pid := stdiotest.PID(t, session)
	if err := session.Close(); err != nil {
		t.Fatalf("closing the session: %v", err)
	}
	stdiotest.WaitGone(t, pid)
}

// TestStderrIsLogged checks that the server's stderr reaches the log line
// by line, with the session and pid, and that long lines are cut.
func TestStderrIsLogged(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, zap.New(core))
	session := stdiotest.Connect(t, url, nil)
	pid := stdiotest.PID(t, session)
	stdiotest.Call(t, session, "shout", map[string]any{"text": "a", "steps": 20000})
	session.Close()
	stdiotest.WaitGone(t, pid)

	lines := logs.FilterMessage("stderr").All()
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

// TestStderrFloodBounded: a server writing stderr faster than the bound
// has the lines past it counted rather than logged, and every line is
// accounted for: logged, or counted in the entry after it or at the end.
func TestStderrFloodBounded(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, zap.New(core))
	session := stdiotest.Connect(t, url, nil)
	pid := stdiotest.PID(t, session)
	start := time.Now()
	// 5,000 lines and an empty one, at once.
	stdiotest.Call(t, session, "shout", map[string]any{"text": "flood\n", "steps": 5000})
	session.Close()
	stdiotest.WaitGone(t, pid)
	const want = 1 + 5000 + 1 // ready, the flood, the empty line after it
	var logged, counted int
	// The process is gone; its stderr may still be being read.
	testwait.Until(t, 10*time.Second, func() string {
		entries := logs.FilterMessage("stderr").All()
		logged, counted = len(entries), 0
		for _, entry := range entries {
			if n, ok := entry.ContextMap()["lines_not_logged_before"].(int64); ok {
				counted += int(n)
			}
		}
		for _, entry := range logs.FilterMessageSnippet("stderr lines not logged").All() {
			n, _ := entry.ContextMap()["lines"].(int64)
			counted += int(n)
		}
		if logged+counted != want {
			return fmt.Sprintf("logged %d stderr lines and counted %d more; want %d in all", logged, counted, want)
		}
		return ""
	})
	elapsed := time.Since(start)
	if bound := 1000 + int(100*elapsed.Seconds()) + 1; logged > bound || counted == 0 {
		t.Errorf("logged %d stderr lines in %v, and counted %d; want at most %d logged, the rest counted", logged, elapsed, counted, bound)
	}
}

// TestStopEscalates: a server that ignores the end of its stdin and
// SIGTERM is killed after two grace periods.
func TestStopEscalates(t *testing.T) {
	const grace = 200 * time.Millisecond
	url := testServer(t, stdiotest.ModeStubborn, stdio.Config{StopGrace: grace}, nil)
	session := stdiotest.Connect(t, url, nil)
	pid := stdiotest.PID(t, session)
	start := time.Now()
	if err := session.Close(); err != nil {
		t.Fatalf("ending the session: %v", err)
	}
	stdiotest.WaitGone(t, pid)
	if took := time.Since(start); took < 2*grace {
		t.Errorf("the stubborn server was gone after %s, before stdin's grace and SIGTERM's (%s)", took, 2*grace)
	}
}

// TestIdleTimeout: a session without requests ends after idle_timeout,
// its open GET stream notwithstanding, and its process stops.
func TestIdleTimeout(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{IdleTimeout: 200 * time.Millisecond}, nil)
	session := stdiotest.Connect(t, url, nil)
	pid := stdiotest.PID(t, session)
	stdiotest.WaitGone(t, pid)
	if _, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo"}); err == nil {
		t.Error("the idle session still answers")
	}
}

// TestGrandchildrenStop: stopping a session stops what its server
// started, in its process group.
func TestGrandchildrenStop(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	session := stdiotest.Connect(t, url, nil)
	text, _ := stdiotest.Call(t, session, "spawn", nil)
	grandchild, err := strconv.Atoi(text)
	if err != nil || stdiotest.Gone(grandchild) {
		t.Fatalf("spawn started no grandchild (%v)", err)
	}
	session.Close()
	stdiotest.WaitGone(t, grandchild)
}

// TestUnreadReplyDoesNotHoldTheSession: a client that stops reading its
// reply while the server sends far more than the connection buffers does
// not hold the session: DELETE ends it within moments (the blocked write
// is cut), and its process stops.
func TestUnreadReplyDoesNotHoldTheSession(t *testing.T) {
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	inSession := initializedSession(t, url)
	session := inSession[1]
	_, _, body := post(t, url, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pid"}}`, inSession...)
	pid, err := strconv.Atoi(toolText(t, body))
	if err != nil {
		t.Fatalf("pid: %s", body)
	}

	// A client that posts a call whose progress floods its reply, and
	// never reads a byte of it.
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	call := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"flood","arguments":{"steps":400},"_meta":{"progressToken":"f"}}}`
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
		"Mcp-Session-Id: %s\r\nMcp-Protocol-Version: 2025-06-18\r\nContent-Length: %d\r\n\r\n%s", session, len(call), call)

	// Once the flood is under way (the server's writes block), DELETE.
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	status, err := deleteSession(ctx, url, session)
	if err != nil {
		t.Fatalf("DELETE of a session whose reply is not read: %v; want it answered", err)
	}
	if status != http.StatusNoContent && status != http.StatusOK {
		t.Errorf("DELETE: %d", status)
	}
	stdiotest.WaitGone(t, pid)
}

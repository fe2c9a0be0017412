package stdiomodule_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/stdiotest"
	"github.com/mcpgate/mcpgate/internal/testport"
)

// benchTransports are the ways the benchmarks reach the test server: its
// stdio directly (the go-sdk's CommandTransport), mcp_stdio alone, and
// mcp_policy in front of mcp_stdio (the permissions table; echo is
// read-only, so allowed).
func benchTransports(b *testing.B) map[string]func() mcp.Transport {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	b.Setenv("XDG_DATA_HOME", b.TempDir())
	policy, bare := testport.Free(b), testport.Free(b)
	// The bare site reaches the same server without mcp_policy, on
	// purpose (mcp_bypass): the layout check refuses it otherwise.
	caddytest.Start(b, caddytest.GlobalOptions(b)+site(b, policy, stdiotest.ModeServe, "max_sessions 1000")+fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_bypass
	mcp_stdio {
		command %q
		env %s %s
		max_sessions 1000
	}
}
`, bare, self, stdiotest.EnvMode, stdiotest.ModeServe))
	caddytest.WaitForListener(b, policy)
	caddytest.WaitForListener(b, bare)
	return map[string]func() mcp.Transport{
		"direct": func() mcp.Transport {
			cmd := exec.Command(self)
			cmd.Env = []string{stdiotest.EnvMode + "=" + stdiotest.ModeServe}
			return &mcp.CommandTransport{Command: cmd}
		},
		"mcp_stdio": func() mcp.Transport {
			return &mcp.StreamableClientTransport{Endpoint: fmt.Sprintf("http://127.0.0.1:%d/", bare)}
		},
		"mcp_policy+mcp_stdio": func() mcp.Transport {
			return &mcp.StreamableClientTransport{Endpoint: fmt.Sprintf("http://127.0.0.1:%d/", policy)}
		},
	}
}

// benchOrder runs the transports in the same order every time.
var benchOrder = []string{"direct", "mcp_stdio", "mcp_policy+mcp_stdio"}

// sessionOptions pin the revision of sessions (2025-11-25), so that every
// transport opens a session with initialize, rather than the direct one
// discovering the test server's 2026-07-28.
var sessionOptions = &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"}

// BenchmarkStdioToolCall measures one tools/call round trip in an open
// session, side by side: the difference between the transports is what
// the gateway adds. For scale, the last runs the same server in-process
// behind the go-sdk's own Streamable HTTP handler: the cost of an HTTP
// round trip, with no process and no Caddy.
func BenchmarkStdioToolCall(b *testing.B) {
	transports := benchTransports(b)
	server := stdiotest.Server()
	inProcess := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	b.Cleanup(inProcess.Close)
	transports["in-process HTTP"] = func() mcp.Transport {
		return &mcp.StreamableClientTransport{Endpoint: inProcess.URL}
	}
	for _, name := range append(benchOrder, "in-process HTTP") {
		b.Run(name, func(b *testing.B) {
			client := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
			session, err := client.Connect(context.Background(), transports[name](), sessionOptions)
			if err != nil {
				b.Fatalf("connecting: %v", err)
			}
			defer session.Close()
			params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}
			b.ResetTimer()
			for b.Loop() {
				res, err := session.CallTool(context.Background(), params)
				if err != nil || res.IsError {
					b.Fatalf("calling echo: %v %v", res, err)
				}
			}
		})
	}
}

// BenchmarkStdioStart measures starting a session: spawning the server
// and the initialize round trip (the 2026-07-28 probe that clients send
// first is skipped by pinning the revision).
func BenchmarkStdioStart(b *testing.B) {
	transports := benchTransports(b)
	for _, name := range benchOrder {
		b.Run(name, func(b *testing.B) {
			client := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
			for b.Loop() {
				session, err := client.Connect(context.Background(), transports[name](), sessionOptions)
				if err != nil {
					b.Fatalf("connecting: %v", err)
				}
				// Untimed: the process ends before the next one starts, so
				// that no run pays for the last one's exit.
				b.StopTimer()
				pid := stdiotest.PID(b, session)
				session.Close()
				stdiotest.WaitFor(b, "the session's process to end", func() bool { return stdiotest.Gone(pid) })
				b.StartTimer()
			}
		})
	}
}

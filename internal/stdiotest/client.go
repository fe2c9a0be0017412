package stdiotest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// timeout bounds each thing a test waits for.
const timeout = 30 * time.Second

// Dial opens a go-sdk client session over Streamable HTTP.
func Dial(url string, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, opts)
	return client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
}

// Connect opens a go-sdk client session over Streamable HTTP, closed when
// the test ends.
func Connect(t testing.TB, url string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	session, err := Dial(url, opts)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

// Call calls a tool and returns the text of its result, and whether the
// result is an error.
func Call(t testing.TB, session *mcp.ClientSession, name string, args map[string]any) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	params := &mcp.CallToolParams{Name: name}
	if args != nil {
		// A nil map would go out as "arguments": null, which mcp_policy
		// refuses: MCP wants an object or nothing.
		params.Arguments = args
	}
	res, err := session.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("calling %s: %v", name, err)
	}
	return ResultText(res), res.IsError
}

// ResultText joins the text contents of a tool result.
func ResultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if text, ok := c.(*mcp.TextContent); ok {
			b.WriteString(text.Text)
		}
	}
	return b.String()
}

// PID asks the session's server, through its pid tool, for its process id.
func PID(t testing.TB, session *mcp.ClientSession) int {
	t.Helper()
	text, _ := Call(t, session, "pid", nil)
	pid, err := strconv.Atoi(text)
	if err != nil {
		t.Fatalf("the pid tool answered %q", text)
	}
	return pid
}

// ToolNames lists the session's tools by name.
func ToolNames(t testing.TB, session *mcp.ClientSession) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("listing tools: %v", err)
	}
	names := make([]string, len(tools.Tools))
	for i, tool := range tools.Tools {
		names[i] = tool.Name
	}
	return names
}

// WaitFor polls cond until it holds, failing the test after a while with
// what it was waiting for.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitGone waits until process pid has ended (see Gone).
func WaitGone(t testing.TB, pid int) {
	t.Helper()
	WaitFor(t, "process "+strconv.Itoa(pid)+" to end", func() bool { return Gone(pid) })
}

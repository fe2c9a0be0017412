package caddymodule_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	_ "github.com/mcpgate/mcpgate/caddymodule"
	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/testport"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// The Caddy harness shared with cmd/mcpgate's tests.
var (
	startCaddy      = caddytest.Start
	freePort        = testport.Free
	waitForListener = caddytest.WaitForListener
	globalOptions   = caddytest.GlobalOptions
)

// gatewayOptions shapes the gateway site a test runs.
type gatewayOptions struct {
	// policy overrides the mcp_policy block's body; default: the test
	// policy.
	policy string
	// global adds lines to the global options block.
	global []string
	// sites adds site blocks to the Caddyfile.
	sites string
	// before adds directives to the gateway's site (e.g. basic_auth).
	before string
}

// startGateway runs the gateway in front of upstream and returns its URL.
func startGateway(t testing.TB, upstream string, opts gatewayOptions) string {
	t.Helper()
	policyBlock := opts.policy
	if policyBlock == "" {
		policyBlock = "policy testdata/policy\n\t\tserver test"
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // tool pins go to Caddy's data directory
	port := freePort(t)
	startCaddy(t, globalOptions(t, opts.global...)+opts.sites+fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	%s
	mcp_policy {
		%s
	}
	reverse_proxy %s
}
`, port, opts.before, policyBlock, strings.TrimPrefix(upstream, "http://")))
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	waitForListener(t, port)
	return url
}

// defaultTools are the test upstream's tools, name to annotations.
var defaultTools = []*mcp.Tool{
	{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
	{Name: "slow", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
	{Name: "delete_issue"},
	{Name: "create_issue"},
}

// newUpstream starts an upstream serving defaultTools in mode.
func newUpstream(t testing.TB, mode upstreamtest.Mode) *upstreamtest.Upstream {
	t.Helper()
	return upstreamtest.New(t, mode, defaultTools, 0)
}

// connect opens a go-sdk client session to the gateway.
func connect(t testing.TB, url string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, opts)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connecting to the gateway at %s: %v", url, err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

// resultText joins the text contents of a tool result.
func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if text, ok := c.(*mcp.TextContent); ok {
			b.WriteString(text.Text)
		}
	}
	return b.String()
}

// warningsLog returns a global option that logs warnings and errors, as
// JSON, to a file, and the file's path: how a test sees the warnings a
// configuration gets as it loads (GlobalOptions logs errors alone).
func warningsLog(t testing.TB) (option, path string) {
	path = filepath.Join(t.TempDir(), "warnings.log")
	return fmt.Sprintf("log warnings {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel WARN\n\t}", path), path
}

// loadedWarnings loads sites, after the global options, with warnings
// logged, and returns the warnings whose message starts with prefix.
func loadedWarnings(t *testing.T, sites, prefix string) []map[string]any {
	t.Helper()
	logOption, logPath := warningsLog(t)
	if err := loadCaddyfile(t, globalOptions(t, logOption)+sites); err != nil {
		t.Fatalf("loading: %v; want it loaded", err)
	}
	return warningsIn(t, logPath, prefix)
}

// warningsIn returns the entries of the log at logPath (see warningsLog)
// whose message starts with prefix.
func warningsIn(t *testing.T, logPath, prefix string) []map[string]any {
	t.Helper()
	entries, err := logEntries(logPath)
	if err != nil {
		t.Fatalf("reading the log: %v", err)
	}
	var warned []map[string]any
	for _, e := range entries {
		if msg, _ := e["msg"].(string); strings.HasPrefix(msg, prefix) {
			warned = append(warned, e)
		}
	}
	return warned
}

package stdiomodule_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/mcpgate/mcpgate/caddymodule"
	_ "github.com/mcpgate/mcpgate/caddymodule/stdiomodule"
	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/stdiotest"
	"github.com/mcpgate/mcpgate/internal/testport"
)

// TestMain lets the test binary be the stdio server that mcp_stdio starts
// (see stdiotest.Main).
func TestMain(m *testing.M) {
	stdiotest.Main()
	if caddyfile := os.Getenv(envRunCaddy); caddyfile != "" {
		// A test's Caddy in a process of its own (see runCaddy).
		os.Args = []string{"caddy", "run", "--adapter", "caddyfile", "--config", caddyfile}
		caddycmd.Main()
		return
	}
	os.Exit(m.Run())
}

// envRunCaddy, set to a Caddyfile's path, makes the test binary run
// Caddy with it, as the caddy command does (signals included).
const envRunCaddy = "MCPGATE_STDIOMODULE_CADDYFILE"

// runCaddy runs Caddy with caddyfile in a process of its own (the test
// binary again), killed when the test ends if still running, and waits
// until it listens on port.
func runCaddy(t *testing.T, caddyfile string, port int) *exec.Cmd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRunCaddy+"="+path, "XDG_DATA_HOME="+t.TempDir())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	caddytest.WaitForListener(t, port)
	return cmd
}

// permissions is the gateway's table in these tests: the one the issue
// asks for.
const permissions = `permissions {
			read_only allow
			write needs_approval
			destructive block
		}`

// site returns a Caddyfile site on port with mcp_policy (server "stdio",
// the permissions table) in front of mcp_stdio running the test binary
// in mode, with extra lines in the mcp_stdio block.
func site(t testing.TB, port int, mode string, extra ...string) string {
	t.Helper()
	return policySite(t, port, "", mode, extra...)
}

// policySite is site with policyLines too in the mcp_policy block.
func policySite(t testing.TB, port int, policyLines, mode string, extra ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_policy {
		server stdio
		%s
		%s
	}
	mcp_stdio {
		command %q
		env %s %s
		%s
	}
}
`, port, policyLines, permissions, self, stdiotest.EnvMode, mode, strings.Join(extra, "\n\t\t"))
}

// startGateway runs Caddy with one site (see site) until the test ends,
// and returns the site's URL.
func startGateway(t testing.TB, mode string, extra ...string) string {
	t.Helper()
	return startPolicyGateway(t, "", mode, extra...)
}

// startPolicyGateway is startGateway with policyLines in the mcp_policy
// block (see policySite).
func startPolicyGateway(t testing.TB, policyLines, mode string, extra ...string) string {
	t.Helper()
	return startGatewayWith(t, "", policyLines, mode, extra...)
}

// startGatewayWith is startPolicyGateway with global, lines of Caddy's
// global options.
func startGatewayWith(t testing.TB, global, policyLines, mode string, extra ...string) string {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // mcp_policy keeps tool pins in Caddy's data directory
	port := testport.Free(t)
	caddytest.Start(t, caddytest.GlobalOptions(t, global)+policySite(t, port, policyLines, mode, extra...))
	caddytest.WaitForListener(t, port)
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
}

// reload loads another Caddyfile into the running Caddy, as a config
// reload does.
func reload(t testing.TB, caddyfile string) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("reloading Caddy: %v", err)
	}
}

// rawPost posts one JSON-RPC message the way an MCP client does.
func rawPost(t testing.TB, url, session, body string) *http.Response {
	t.Helper()
	header := http.Header{"Mcp-Protocol-Version": {"2025-06-18"}, "Mcp-Session-Id": {session}}
	resp, err := http.DefaultClient.Do(clienttest.NewRequest(t, http.MethodPost, url, header, strings.NewReader(body)))
	if err != nil {
		t.Fatalf("posting %s: %v", body, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readAll reads a response body.
func readAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return string(body)
}

// nextEvent reads the next SSE event's data.
func nextEvent(t testing.TB, events *bufio.Reader) string {
	t.Helper()
	var data bytes.Buffer
	for {
		line, err := events.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the event stream: %v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "" && data.Len() > 0:
			return data.String()
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`

// Package caddytest runs Caddy inside a test process, on loopback ports,
// for mcpgate's end-to-end tests and benchmarks.
package caddytest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
)

// Start runs Caddy in this process with the given Caddyfile until the test
// ends. Caddy's configuration is process-wide, so tests that call it must
// not run in parallel.
func Start(t testing.TB, caddyfile string) {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	for _, w := range warnings {
		t.Logf("caddyfile warning: %s", w.String())
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading Caddy config: %v", err)
	}
	// A load that replaces a running config closes the old servers' idle
	// keep-alive connections; a client POST on one of them would fail with
	// EOF (Go retries only idempotent requests), which is the client's to
	// retry, not a test's subject.
	http.DefaultClient.CloseIdleConnections()
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
}

// GlobalOptions returns a Caddyfile global options block for tests:
// nothing persisted, storage in a temporary folder, and only errors
// logged, plus the extra lines given. Unless an extra line configures the
// admin endpoint, it is off.
func GlobalOptions(t testing.TB, extra ...string) string {
	lines := strings.Join(extra, "\n\t")
	if !strings.Contains(lines, "admin ") {
		lines = "admin off\n\t" + lines
	}
	return fmt.Sprintf(`{
	%s
	persist_config off
	storage file_system %q
	log {
		level ERROR
	}
}
`, lines, t.TempDir())
}

// WaitForListener waits until something accepts connections on
// 127.0.0.1:port.
func WaitForListener(t testing.TB, port int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing listens on 127.0.0.1:%d", port)
}

// AdminSocket puts Caddy's admin endpoint on a unix socket in a temporary
// folder, as operators do to keep mcpgate's operator routes from other
// processes: it returns the global option to give GlobalOptions, the
// socket's address as `mcpgate` commands take it (unix//path), and an
// HTTP client whose every request (to any http:// URL, for example
// http://admin/config/) reaches that endpoint.
func AdminSocket(t testing.TB) (option, address string, client *http.Client) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mcpgate-admin")
	if err != nil {
		t.Fatalf("making a folder for the admin socket: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "admin.sock")
	client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	return "admin unix/" + path, "unix/" + path, client
}

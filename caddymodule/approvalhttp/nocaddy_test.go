package approvalhttp_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// caddyPrefix is where Caddy's packages live.
const caddyPrefix = "github.com/caddyserver/"

// TestNoCaddyImports: approvalhttp serves approvals without Caddy, which
// only the glue in caddymodule may import; nothing the package imports,
// directly or through another package, may be Caddy's.
func TestNoCaddyImports(t *testing.T) {
	goCommand, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not available: %v", err)
	}
	out, err := exec.Command(goCommand, "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, ".").Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("go list -deps: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	if !strings.Contains(string(out), "github.com/mcpgate/mcpgate/caddymodule/approvalhttp ") {
		t.Fatalf("go list -deps did not list approvalhttp; output %q", out)
	}
	// Where a package not Caddy's imports one of Caddy's is where the
	// dependency comes in.
	var entries []string
	for line := range strings.Lines(string(out)) {
		pkg, imports, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(pkg, caddyPrefix) {
			continue
		}
		for imported := range strings.FieldsSeq(imports) {
			if strings.HasPrefix(imported, caddyPrefix) {
				entries = append(entries, pkg+" imports "+imported)
			}
		}
	}
	if len(entries) > 0 {
		t.Errorf("approvalhttp must not depend on Caddy, but %s", strings.Join(entries, "; "))
	}
}

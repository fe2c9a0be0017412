package caddymodule_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// caddyPrefix is where Caddy's packages live.
const caddyPrefix = "github.com/caddyserver/"

// caddyGlue are the packages of caddymodule that may import Caddy: the
// glue that makes Caddy modules of the rest. Every other package under
// caddymodule is the Caddy-free core.
var caddyGlue = map[string]bool{
	"github.com/mcpgate/mcpgate/caddymodule":              true,
	"github.com/mcpgate/mcpgate/caddymodule/demo":         true,
	"github.com/mcpgate/mcpgate/caddymodule/stdiomodule":  true,
	"github.com/mcpgate/mcpgate/caddymodule/subdirective": true,
}

// TestCoreImportsNoCaddy: the core (the gateway's pipeline and every
// package it is made of, the approvals HTTP handler, the permissions
// table, ...) works without Caddy, which only the glue may import;
// nothing a core package imports, directly or through another package,
// may be Caddy's.
func TestCoreImportsNoCaddy(t *testing.T) {
	goCommand, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not available: %v", err)
	}
	cmd := exec.Command(goCommand, "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("go list -deps: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	imports, _ := parseDeps(string(out))
	core := 0
	for pkg := range imports {
		if !strings.HasPrefix(pkg, "github.com/mcpgate/mcpgate/caddymodule/") || caddyGlue[pkg] {
			continue
		}
		core++
		if chain := importChain(imports, pkg, caddyPrefix); chain != nil {
			t.Errorf("%s must not depend on Caddy, but %s", pkg, strings.Join(chain, " imports "))
		}
	}
	if core < 10 {
		t.Errorf("go list found %d core packages under caddymodule; output %q", core, out)
	}
}

// parseDeps reads the lines `go list -deps -f '{{.ImportPath}} {{join
// .Imports " "}}'` prints: each package and what it imports. root is the
// package listed last, the one listed for: -deps lists dependencies
// first.
func parseDeps(out string) (imports map[string][]string, root string) {
	imports = make(map[string][]string)
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		root = fields[0]
		imports[root] = fields[1:]
	}
	return imports, root
}

// importChain returns the shortest chain of imports from root to a
// package whose path starts with prefix, root first; nil when there is
// none.
func importChain(imports map[string][]string, root, prefix string) []string {
	from := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		if strings.HasPrefix(pkg, prefix) {
			var chain []string
			for p := pkg; p != ""; p = from[p] {
				chain = append([]string{p}, chain...)
			}
			return chain
		}
		for _, imported := range imports[pkg] {
			if _, seen := from[imported]; !seen {
				from[imported] = pkg
				queue = append(queue, imported)
			}
		}
	}
	return nil
}

// TestImportChain checks the chain TestCoreImportsNoCaddy reports, on a
// made-up graph: the shortest, from the package to Caddy.
func TestImportChain(t *testing.T) {
	const root = "example.com/gateway"
	tests := []struct {
		name    string
		listing string
		want    []string
	}{
		{"no Caddy", "fmt\nexample.com/mcpmsg fmt\n" + root + " fmt example.com/mcpmsg\n", nil},
		{"imported directly", caddyPrefix + "caddy/v2\n" + root + " fmt " + caddyPrefix + "caddy/v2\n",
			[]string{root, caddyPrefix + "caddy/v2"}},
		{"through other packages, shortest chain", "" +
			caddyPrefix + "caddy/v2\n" +
			caddyPrefix + "caddy/v2/modules/caddyhttp " + caddyPrefix + "caddy/v2\n" +
			"example.com/deep example.com/deeper\n" +
			"example.com/deeper " + caddyPrefix + "caddy/v2\n" +
			"example.com/glue " + caddyPrefix + "caddy/v2/modules/caddyhttp\n" +
			root + " example.com/deep example.com/glue\n",
			[]string{root, "example.com/glue", caddyPrefix + "caddy/v2/modules/caddyhttp"}},
		{"an import cycle without Caddy", "example.com/a example.com/b\nexample.com/b example.com/a\n" + root + " example.com/a\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			imports, gotRoot := parseDeps(tt.listing)
			if gotRoot != root {
				t.Fatalf("root = %q, want %q, the package listed last", gotRoot, root)
			}
			chain := importChain(imports, root, caddyPrefix)
			if strings.Join(chain, " > ") != strings.Join(tt.want, " > ") {
				t.Errorf("chain = %q, want %q", chain, tt.want)
			}
		})
	}
}

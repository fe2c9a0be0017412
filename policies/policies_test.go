// This Go test runs the library's Rego tests with OPA's own test runner, so
// `go test ./...` covers them, and checks what Library embeds.
package policies_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/mcpgate/mcpgate/policies"
)

func TestRegoLibrary(t *testing.T) {
	results, err := tester.Run(context.Background(), ".")
	if err != nil {
		t.Fatalf("running the Rego tests: %v", err)
	}
	if len(results) == 0 {
		t.Fatal("no Rego tests found")
	}
	for _, r := range results {
		t.Run(r.Package+"."+r.Name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Errorf("%s: error: %v", r.Location, r.Error)
			case r.Fail:
				t.Errorf("%s: failed", r.Location)
			}
		})
	}
}

// TestLibrary checks that Library holds exactly the folder's non-test Rego
// files, as they are on disk, and that they compile on their own.
func TestLibrary(t *testing.T) {
	onDisk, err := filepath.Glob("*.rego")
	if err != nil {
		t.Fatal(err)
	}
	onDisk = slices.DeleteFunc(onDisk, func(name string) bool { return strings.HasSuffix(name, "_test.rego") })
	library := policies.Library()
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range library {
			if !yield(name) {
				return
			}
		}
	})
	if !slices.Equal(names, onDisk) {
		t.Fatalf("Library() has %v, want the non-test Rego files %v", names, onDisk)
	}
	modules := make(map[string]*ast.Module, len(library))
	for name, source := range library {
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if source != string(want) {
			t.Errorf("Library()[%q] differs from the file on disk", name)
		}
		if modules[name], err = ast.ParseModule(name, source); err != nil {
			t.Fatalf("parsing %s: %v", name, err)
		}
	}
	compiler := ast.NewCompiler()
	if compiler.Compile(modules); compiler.Failed() {
		t.Errorf("compiling Library(): %v", compiler.Errors)
	}
}

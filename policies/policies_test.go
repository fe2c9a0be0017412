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

// TestRegoLibrary runs the library's Rego tests with built-in errors
// raised, as the gateway evaluates, and as `mcpgate policy test` runs them.
func TestRegoLibrary(t *testing.T) {
	modules, store, err := tester.Load([]string{"."}, nil)
	if err != nil {
		t.Fatalf("loading the Rego tests: %v", err)
	}
	results, err := tester.NewRunner().SetStore(store).RaiseBuiltinErrors(true).SetModules(modules).RunTests(context.Background(), nil)
	if err != nil {
		t.Fatalf("running the Rego tests: %v", err)
	}
	n := 0
	for r := range results {
		n++
		t.Run(r.Package+"."+r.Name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Errorf("%s: error: %v", r.Location, r.Error)
			case r.Fail:
				t.Errorf("%s: failed", r.Location)
			}
		})
	}
	if n == 0 {
		t.Fatal("no Rego tests found")
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

// Package examples_test proves every example: its Rego tests run with the
// shipped library, and a table written as a Caddyfile permissions block is
// the one its tests check.
package examples_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"

	_ "github.com/mcpgate/mcpgate"
)

// libraryPath is the shipped library every example runs with.
const libraryPath = "../policies"

// exampleDirs returns the folders that hold an example (a Caddyfile).
func exampleDirs(t *testing.T) []string {
	t.Helper()
	caddyfiles, err := filepath.Glob("*/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, caddyfile := range caddyfiles {
		dirs = append(dirs, filepath.Dir(caddyfile))
	}
	if len(dirs) == 0 {
		t.Fatal("no examples found")
	}
	return dirs
}

// regoTests returns the Rego test files in dir.
func regoTests(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.rego"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestExamples runs each example's Rego tests, with the library's own,
// over the library and the example's folder, as
// `mcpgate policy test ./policies ./examples/<name>` does.
func TestExamples(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			if len(regoTests(t, dir)) == 0 {
				t.Fatalf("%s has no Rego tests: every example proves what it claims", dir)
			}
			modules, store, err := tester.Load([]string{libraryPath, dir}, nil)
			if err != nil {
				t.Fatalf("loading the Rego tests of %s: %v", dir, err)
			}
			// Built-in errors are raised, as the gateway evaluates, and as
			// `mcpgate policy test` runs the tests.
			results, err := tester.NewRunner().SetStore(store).RaiseBuiltinErrors(true).SetModules(modules).RunTests(context.Background(), nil)
			if err != nil {
				t.Fatalf("running the Rego tests of %s: %v", dir, err)
			}
			own, all := 0, 0
			for r := range results {
				all++
				if r.Location != nil && filepath.Dir(r.Location.File) == dir {
					own++
				}
				switch {
				case r.Error != nil:
					t.Errorf("%s: %s.%s: error: %v", r.Location, r.Package, r.Name, r.Error)
				case r.Fail:
					t.Errorf("%s: %s.%s: failed", r.Location, r.Package, r.Name)
				}
			}
			if own == 0 {
				t.Errorf("%s: none of the %d tests run is the example's own", dir, all)
			}
		})
	}
}

// TestCaddyfileTablesAreTested checks, for each example whose Caddyfile
// holds a permissions block, that the block adapts to exactly the table
// its Rego tests use: `table` in the test package.
func TestCaddyfileTablesAreTested(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			path := filepath.Join(dir, "Caddyfile")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(raw), "permissions {") {
				t.Skipf("%s has no permissions block", path)
			}
			adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(raw, map[string]any{"filename": path})
			if err != nil {
				t.Fatalf("adapting %s: %v", path, err)
			}
			var config any
			if err := json.Unmarshal(adapted, &config); err != nil {
				t.Fatal(err)
			}
			handlers := mcpPolicyHandlers(config)
			if len(handlers) != 1 {
				t.Fatalf("%s adapts to %d mcp_policy handlers, want 1", path, len(handlers))
			}
			got, ok := handlers[0]["permissions"]
			if !ok {
				t.Fatalf("the mcp_policy handler of %s has no permissions: %s", path, adapted)
			}
			want := testedTable(t, dir)
			if !reflect.DeepEqual(withoutEmptyTools(got), withoutEmptyTools(want)) {
				t.Errorf("%s's permissions block is %v, but its Rego tests check the table %v", path, got, want)
			}
		})
	}
}

// mcpPolicyHandlers finds the mcp_policy handlers anywhere in a JSON
// config.
func mcpPolicyHandlers(v any) []map[string]any {
	var found []map[string]any
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == "mcp_policy" {
			found = append(found, v)
		}
		for _, member := range v {
			found = append(found, mcpPolicyHandlers(member)...)
		}
	case []any:
		for _, element := range v {
			found = append(found, mcpPolicyHandlers(element)...)
		}
	}
	return found
}

// testedTable evaluates `table` in the package of dir's Rego tests.
func testedTable(t *testing.T, dir string) any {
	t.Helper()
	files := regoTests(t, dir)
	if len(files) != 1 {
		t.Fatalf("%s has %d Rego test files, want one that defines table", dir, len(files))
	}
	source, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	module, err := ast.ParseModule(files[0], string(source))
	if err != nil {
		t.Fatal(err)
	}
	query := module.Package.Path.Append(ast.StringTerm("table")).String()
	rs, err := rego.New(rego.Query(query), rego.ParsedModule(module), rego.Load([]string{libraryPath}, nil)).Eval(context.Background())
	if err != nil {
		t.Fatalf("evaluating %s: %v", query, err)
	}
	if len(rs) != 1 {
		t.Fatalf("%s is undefined in %s", query, files[0])
	}
	return rs[0].Expressions[0].Value
}

// withoutEmptyTools drops an empty tools member, which the JSON config
// leaves out.
func withoutEmptyTools(table any) any {
	object, ok := table.(map[string]any)
	if !ok {
		return table
	}
	if tools, ok := object["tools"].(map[string]any); ok && len(tools) == 0 {
		trimmed := make(map[string]any, len(object))
		for key, value := range object {
			if key != "tools" {
				trimmed[key] = value
			}
		}
		return trimmed
	}
	return object
}

// Package policies holds mcpgate's shipped Rego library (package mcp): the
// decision every message gets (mcp.rego) and the tool permissions it reads
// from the organization's permissions table (permissions.rego). The
// gateway loads it from here when a permissions table is configured
// without any policy path.
package policies

import (
	"embed"
	"io/fs"
	"strings"
)

//go:embed *.rego
var files embed.FS

// Library returns the library's Rego modules, file name to source. Its
// tests (*_test.rego) are left out.
func Library() map[string]string {
	names, err := fs.Glob(files, "*.rego")
	if err != nil {
		// The pattern is a constant and valid.
		panic(err)
	}
	modules := make(map[string]string, len(names))
	for _, name := range names {
		if strings.HasSuffix(name, "_test.rego") {
			continue
		}
		source, err := files.ReadFile(name)
		if err != nil {
			// Unreachable: the name comes from the embedded files.
			panic(err)
		}
		modules[name] = string(source)
	}
	return modules
}

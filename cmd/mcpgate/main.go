// Command mcpgate is Caddy with its standard modules plus mcpgate's MCP
// policy gateway modules. Use it as you would use caddy:
//
//	mcpgate run                 # serves ./Caddyfile
//	mcpgate run --config my.Caddyfile
package main

import (
	"runtime/debug"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/mcpgate/mcpgate"
)

// binaryName is the root command's name in help, usage lines and shell
// completions.
const binaryName = "mcpgate"

// longDescription is the root command's help text, above its usage.
// Caddy's examples follow it, written for a binary named caddy: caddycmd
// builds them without CustomBinaryName, and no exported API replaces them.
const longDescription = `mcpgate is a policy gateway for MCP servers. It is Caddy, with Caddy's
standard modules, plus mcpgate's modules, which parse every MCP message a
client sends, have a Rego policy decide it, and either forward it to the
server or answer it with the policy's reason.

'mcpgate run' serves ./Caddyfile, 'mcpgate run --config <file>' another
config. policy, tools and approvals are mcpgate's own commands; the others
are Caddy's and work as they do in caddy, as do the examples below, which
are written for caddy.`

// main names the root command mcpgate, with mcpgate's own help text and
// version, through the variables Caddy reads when it builds its command
// line in caddycmd.Main, and runs it.
func main() {
	caddy.CustomBinaryName = binaryName
	caddy.CustomLongDescription = longDescription
	// caddy.Version() puts CustomVersion in front of Caddy's full version
	// (what `mcpgate version` and --version print); its short version,
	// used in User-Agent headers and metrics, stays Caddy's. Without build
	// information Caddy would print CustomVersion alone, so it is left
	// unset then.
	if info, ok := debug.ReadBuildInfo(); ok {
		caddy.CustomVersion = binaryName + " " + mcpgateVersion(info) + " on caddy"
	}
	caddycmd.Main()
}

// mcpgateVersion is mcpgate's version as the Go toolchain recorded it in
// info: the main module's version (from a checkout, Go records a
// pseudo-version naming the commit, +dirty when it had changes), and when
// it recorded "(devel)" with a VCS revision (as toolchains before Go 1.24
// did), the revision beside it, marked +modified when the checkout had
// uncommitted changes.
func mcpgateVersion(info *debug.BuildInfo) string {
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	if version != "(devel)" {
		return version
	}
	var revision, modified string
	for _, setting := range info.Settings {
		switch setting.Key {
		case "vcs.revision":
			revision = setting.Value
		case "vcs.modified":
			if setting.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if revision == "" {
		return version
	}
	return version + " " + revision + modified
}

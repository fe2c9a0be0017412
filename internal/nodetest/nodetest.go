// Package nodetest gives tests the node programs they run (the MCP
// TypeScript SDK, the reference filesystem server, the MCP Inspector),
// installed from the lockfile pinned next to them.
package nodetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Node returns the path of the node binary, after installing the packages
// of dir from its package-lock.json if dir's file installed (a path
// relative to dir, such as "node_modules/.bin/mcp-inspector") is missing.
// Without node, or when the install fails, the test is skipped on a
// developer's machine and fails when CI is set, where it must run.
//
// The install is `npm install --no-save` rather than `npm ci`: both take
// every version from the lockfile, but `npm ci` refuses a lockfile that
// lacks an optional dependency the registry cannot serve (vite's
// napi-windows-process-start-time, for the Inspector), which npm install
// skips as the optional dependency it is.
func Node(t testing.TB, dir, installed string) string {
	t.Helper()
	unavailable := t.Skipf
	if os.Getenv("CI") != "" {
		unavailable = t.Fatalf
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable("node is not installed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, installed)); err == nil {
		return node
	}
	install := exec.Command("npm", "install", "--no-save", "--no-audit", "--no-fund")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		unavailable("installing the node packages of %s: %v\n%s", dir, err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, installed)); err != nil {
		unavailable("installing the node packages of %s left no %s: %v", dir, installed, err)
	}
	return node
}

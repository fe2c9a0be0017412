package stdiomodule_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/nodetest"
	"github.com/mcpgate/mcpgate/internal/stdiotest"
	"github.com/mcpgate/mcpgate/internal/testport"
)

// filesystemDir holds the reference filesystem MCP server, pinned by its
// package-lock.json.
const filesystemDir = "testdata/filesystem"

// filesystemServer returns node and the filesystem server's script,
// installing the server first if need be.
func filesystemServer(t *testing.T) (node, script string) {
	t.Helper()
	installed := filepath.Join("node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	node = nodetest.Node(t, filesystemDir, installed)
	script, err := filepath.Abs(filepath.Join(filesystemDir, installed))
	if err != nil {
		t.Fatal(err)
	}
	return node, script
}

// TestFilesystemServer runs the reference filesystem MCP server (a node
// program, annotated tools) behind mcp_policy and mcp_stdio, with the
// permissions table as it stands: reading runs, creating a folder (a
// write) needs approval and is refused without it, writing and moving
// files (destructive) are blocked and hidden.
func TestFilesystemServer(t *testing.T) {
	node, script := filesystemServer(t)
	root := t.TempDir()
	notes := filepath.Join(root, "notes.txt")
	if err := os.WriteFile(notes, []byte("keep calm"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Setenv("XDG_DATA_HOME", t.TempDir())
	port := testport.Free(t)
	caddytest.Start(t, caddytest.GlobalOptions(t)+fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_policy {
		server files
		%s
	}
	mcp_stdio {
		command %q %q %q
	}
}
`, port, permissions, node, script, root))
	caddytest.WaitForListener(t, port)
	session := stdiotest.Connect(t, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)

	tests := []struct {
		tool    string
		args    map[string]any
		want    string
		isError bool
	}{
		{"read_text_file", map[string]any{"path": notes}, "keep calm", false},
		{"create_directory", map[string]any{"path": filepath.Join(root, "new")}, "needs approval", true},
		{"write_file", map[string]any{"path": notes, "content": "panic"}, "Blocked by policy", true},
		{"move_file", map[string]any{"source": notes, "destination": filepath.Join(root, "moved.txt")}, "Blocked by policy", true},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			text, isError := stdiotest.Call(t, session, tt.tool, tt.args)
			if isError != tt.isError || !strings.Contains(text, tt.want) {
				t.Errorf("%s answered %q (isError %v), want %q (isError %v)", tt.tool, text, isError, tt.want, tt.isError)
			}
		})
	}
	if content, err := os.ReadFile(notes); err != nil || string(content) != "keep calm" {
		t.Errorf("notes.txt holds %q (%v) after the refused calls, want it untouched", content, err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Errorf("the refused calls changed the folder: %v", entries)
	}

	names := stdiotest.ToolNames(t, session)
	for _, hidden := range []string{"write_file", "edit_file", "move_file"} {
		if slices.Contains(names, hidden) {
			t.Errorf("tools/list shows the blocked %s: %q", hidden, names)
		}
	}
	if !slices.Contains(names, "read_text_file") || !slices.Contains(names, "create_directory") {
		t.Errorf("tools/list gave %q, want read_text_file and create_directory among them", names)
	}
}

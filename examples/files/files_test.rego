# Proves examples/files: read files, never create or edit them. table is
# the Caddyfile's permissions block in the shape the gateway gives the
# policy (examples_test.go checks that the two say the same).
package files_test

import rego.v1

import data.mcp

table := {
	"read_only": "allow",
	"write": "block",
	"destructive": "block",
	"tools": {
		"read_file": "allow",
		"read_text_file": "allow",
		"read_media_file": "allow",
		"read_multiple_files": "allow",
		"list_directory": "allow",
		"list_directory_with_sizes": "allow",
		"list_allowed_directories": "allow",
		"directory_tree": "allow",
		"search_files": "allow",
		"get_file_info": "allow",
		"write_file": "block",
		"edit_file": "block",
		"create_directory": "block",
		"move_file": "block",
	},
}

call(name, category, arguments) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": arguments},
	"direction": "client_to_server",
	"tool": {"name": name, "arguments": arguments, "annotations": {}, "category": category, "changed": false},
	"server": "files",
}

test_reading_is_allowed if {
	every name in ["read_file", "read_text_file", "read_media_file", "read_multiple_files", "list_directory", "list_directory_with_sizes", "list_allowed_directories", "directory_tree", "search_files", "get_file_info"] {
		d := mcp.decision with input as call(name, "read_only", {"path": "/srv/docs/a.md"}) with data.mcp.permissions as table
		d == {"action": "allow", "reason": sprintf("tool %q is set to allow", [name])}
	}
}

test_reading_is_allowed_without_annotations if {
	# Tools without annotations are destructive by MCP's defaults; the
	# per-tool lines keep reading possible on such a server.
	mcp.decision.action == "allow" with input as call("read_text_file", "destructive", {"path": "/srv/a"}) with data.mcp.permissions as table
}

test_creating_and_editing_are_blocked if {
	every name in ["write_file", "edit_file", "create_directory", "move_file"] {
		d := mcp.decision with input as call(name, "write", {"path": "/srv/docs/a.md"}) with data.mcp.permissions as table
		d == {"action": "block", "reason": sprintf("tool %q is set to block", [name])}
	}
}

test_editing_is_blocked_whatever_the_server_claims if {
	mcp.decision.action == "block" with input as call("edit_file", "read_only", {"path": "/srv/a"}) with data.mcp.permissions as table
	mcp.tool_permission.action == "block" with input as call("write_file", "read_only", {}) with data.mcp.permissions as table
}

test_unknown_changes_are_blocked if {
	every category in ["write", "destructive"] {
		mcp.decision.action == "block" with input as call("chmod", category, {"path": "/srv/a"}) with data.mcp.permissions as table
	}
}

test_unknown_read_only_tools_are_allowed if {
	mcp.decision.action == "allow" with input as call("read_file", "read_only", {"path": "/srv/a"}) with data.mcp.permissions as table
}

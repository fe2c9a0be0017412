# Proves examples/stdio: the reference filesystem server over stdio, where
# reading runs, writing waits for approval, and moving (and anything else
# destructive) is blocked. table is the Caddyfile's permissions block in
# the shape the gateway gives the policy (examples_test.go checks that the
# two say the same). The categories are those the server's annotations
# give: write_file, edit_file and move_file are destructive, and
# create_directory is a write.
package stdio_test

import rego.v1

import data.mcp

table := {
	"read_only": "allow",
	"write": "needs_approval",
	"destructive": "block",
	"tools": {
		"write_file": "needs_approval",
		"edit_file": "needs_approval",
		"move_file": "block",
	},
}

call(name, category) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": {"path": "examples/stdio/shared/hello.txt"}},
	"direction": "client_to_server",
	"tool": {"name": name, "arguments": {"path": "examples/stdio/shared/hello.txt"}, "annotations": {}, "category": category, "changed": false},
	"server": "files",
}

test_reading_runs if {
	every name in ["read_text_file", "read_multiple_files", "list_directory", "directory_tree", "search_files", "get_file_info"] {
		mcp.decision.action == "allow" with input as call(name, "read_only") with data.mcp.permissions as table
	}
}

test_writing_waits_for_approval if {
	every name in ["write_file", "edit_file"] {
		d := mcp.decision with input as call(name, "destructive") with data.mcp.permissions as table
		d == {"action": "needs_approval", "reason": sprintf("tool %q is set to needs_approval", [name])}
	}
	mcp.decision.action == "needs_approval" with input as call("create_directory", "write") with data.mcp.permissions as table
}

test_moving_is_blocked if {
	d := mcp.decision with input as call("move_file", "destructive") with data.mcp.permissions as table
	d == {"action": "block", "reason": "tool \"move_file\" is set to block"}
}

test_moving_is_blocked_whatever_the_server_claims if {
	mcp.decision.action == "block" with input as call("move_file", "read_only") with data.mcp.permissions as table
}

test_other_destructive_tools_are_blocked if {
	mcp.decision.action == "block" with input as call("delete_file", "destructive") with data.mcp.permissions as table
}

test_the_server_may_not_ask_for_roots if {
	request := {
		"kind": "request",
		"method": "roots/list",
		"params": {},
		"direction": "server_to_client",
		"server": "files",
	}
	d := mcp.decision with input as request with data.mcp.permissions as table
	d == {"action": "block", "reason": "the filesystem server keeps the folders it was started with: it may not ask its client for roots"}
}

test_other_servers_may_ask_for_roots if {
	request := {"kind": "request", "method": "roots/list", "params": {}, "direction": "server_to_client", "server": "other"}
	mcp.decision.action == "allow" with input as request with data.mcp.permissions as table
}

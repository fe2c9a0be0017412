# Proves examples/edge's table: read-only tools run, write tools wait for a
# person, destructive ones never run. table is the Caddyfile's permissions
# block in the shape the gateway gives the policy (examples_test.go checks
# that the two say the same).
package edge_test

import rego.v1

import data.mcp

table := {
	"read_only": "allow",
	"write": "needs_approval",
	"destructive": "block",
	"tools": {},
}

call(name, category) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": {}},
	"direction": "client_to_server",
	"tool": {"name": name, "arguments": {}, "annotations": {}, "category": category, "changed": false},
	"server": "tracker",
}

action(name, category) := a if {
	a := mcp.decision.action with input as call(name, category) with data.mcp.permissions as table
}

test_read_only_runs if action("search", "read_only") == "allow"

test_write_needs_approval if action("create_ticket", "write") == "needs_approval"

test_destructive_never_runs if action("delete_ticket", "destructive") == "block"

test_unannotated_tool_is_destructive if action("anything", "destructive") == "block"

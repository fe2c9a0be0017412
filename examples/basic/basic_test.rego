# Proves examples/basic: the category table alone. table is the
# Caddyfile's permissions block in the shape the gateway gives the policy
# (examples_test.go checks that the two say the same).
package basic_test

import rego.v1

import data.mcp

table := {"read_only": "allow", "write": "needs_approval", "destructive": "block"}

call(name, category) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": {}},
	"tool": {"name": name, "arguments": {}, "annotations": {}, "category": category, "changed": false},
	"server": "127.0.0.1",
}

test_categories if {
	mcp.decision.action == "allow" with input as call("list_issues", "read_only") with data.mcp.permissions as table
	mcp.decision.action == "needs_approval" with input as call("create_issue", "write") with data.mcp.permissions as table
	mcp.decision.action == "block" with input as call("delete_issue", "destructive") with data.mcp.permissions as table
}

test_protocol_messages_allowed if {
	mcp.decision.action == "allow" with input as {"kind": "request", "method": "initialize"} with data.mcp.permissions as table
}

# Proves examples/operations' table: the demo tracker's read-only tools
# run, its writes and deletes are blocked. table is the Caddyfile's
# permissions block in the shape the gateway gives the policy
# (examples_test.go checks that the two say the same); what the rest of
# the Caddyfile does (logs, header, rate limit, spans, audit) is run by
# cmd/mcpgate/operations_test.go.
package operations_test

import rego.v1

import data.mcp

table := {
	"read_only": "allow",
	"write": "block",
	"destructive": "block",
}

call(name, category) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": {}},
	"direction": "client_to_server",
	"server": "tracker",
	"tool": {"name": name, "arguments": {}, "annotations": {}, "category": category, "changed": false},
}

test_reads_run if {
	mcp.decision.action == "allow" with input as call("list_issues", "read_only") with data.mcp.permissions as table
}

test_writes_and_deletes_blocked if {
	every name_category in [["create_issue", "write"], ["update_status", "write"], ["delete_issue", "destructive"]] {
		mcp.decision.action == "block" with input as call(name_category[0], name_category[1]) with data.mcp.permissions as table
	}
}

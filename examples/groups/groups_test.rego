# Proves examples/groups: destructive tools for eng-admins only, write
# tools for eng, reads for everyone. table is the Caddyfile's permissions
# block (examples_test.go checks that the two say the same).
package groups_test

import rego.v1

import data.mcp

table := {
	"read_only": "allow",
	"write": "allow",
	"destructive": "allow",
	"tools": {},
}

call(category, groups) := {
	"kind": "request",
	"method": "tools/call",
	"direction": "client_to_server",
	"tool": {"name": "t", "arguments": {}, "annotations": {}, "category": category, "changed": false},
	"server": "engineering",
	"user": {"id": "u", "claims": {"groups": groups}},
}

action(category, groups) := a if {
	a := mcp.decision.action with input as call(category, groups) with data.mcp.permissions as table
}

test_admins_may_destroy if action("destructive", ["eng-admins"]) == "allow"

test_others_may_not_destroy if {
	action("destructive", ["eng"]) == "block"
	action("destructive", []) == "block"
}

test_eng_may_write if action("write", ["eng"]) == "allow"

test_outsiders_may_not_write if action("write", ["sales"]) == "block"

test_everyone_reads if action("read_only", []) == "allow"

test_anonymous_caller_cannot_destroy if {
	mcp.decision.action == "block" with input as object.remove(call("destructive", []), ["user"])
		with data.mcp.permissions as table
}

test_reason_names_the_group if {
	d := mcp.decision with input as call("destructive", ["eng"]) with data.mcp.permissions as table
	contains(d.reason, "eng-admins")
}

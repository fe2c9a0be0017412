# Proves examples/tracker: view issues, never create them or change their
# status. table is the Caddyfile's permissions block in the shape the
# gateway gives the policy (examples_test.go checks that the two say the
# same); the tools and categories are the demo tracker's.
package tracker_test

import rego.v1

import data.mcp

table := {
	"read_only": "allow",
	"write": "block",
	"destructive": "block",
	"tools": {
		"list_issues": "allow",
		"get_issue": "allow",
		"search_issues": "allow",
		"create_issue": "block",
		"update_status": "block",
		"delete_issue": "block",
	},
}

call(name, category, arguments) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": arguments},
	"direction": "client_to_server",
	"tool": {"name": name, "arguments": arguments, "annotations": {}, "category": category, "changed": false},
	"server": "tracker",
}

decision(name, category, arguments) := d if {
	d := mcp.decision with input as call(name, category, arguments) with data.mcp.permissions as table
}

test_viewing_issues_is_allowed if {
	decision("list_issues", "read_only", {"status": "open"}).action == "allow"
	decision("get_issue", "read_only", {"id": 3}).action == "allow"
	decision("search_issues", "read_only", {"query": "csv"}).action == "allow"
}

test_creating_issues_is_blocked if {
	decision("create_issue", "write", {"title": "x"}) == {"action": "block", "reason": `tool "create_issue" is set to block`}
}

test_changing_status_is_blocked if {
	every status in ["open", "closed", "in_progress"] {
		decision("update_status", "write", {"id": 1, "status": status}).action == "block"
	}
}

test_deleting_is_blocked if {
	decision("delete_issue", "destructive", {"id": 1}).action == "block"
}

test_blocked_tools_are_hidden_from_tools_list if {
	# The gateway hides the tools whose tool_permission is block.
	hidden := {name |
		some [name, category] in [
			["list_issues", "read_only"], ["get_issue", "read_only"], ["search_issues", "read_only"],
			["create_issue", "write"], ["update_status", "write"], ["delete_issue", "destructive"],
		]
		p := mcp.tool_permission with input as call(name, category, {}) with data.mcp.permissions as table
		p.action == "block"
	}
	hidden == {"create_issue", "update_status", "delete_issue"}
}

test_mislabelled_tools_stay_blocked if {
	decision("update_status", "read_only", {"id": 1, "status": "closed"}).action == "block"
}

test_new_tools_that_change_things_are_blocked if {
	decision("assign_issue", "write", {"id": 1, "to": "sam"}).action == "block"
	decision("purge", "destructive", {}).action == "block"
}

test_a_changed_tool_is_blocked if {
	changed := json.patch(call("list_issues", "read_only", {}), [{"op": "replace", "path": "/tool/changed", "value": true}])
	d := mcp.decision with input as changed with data.mcp.permissions as table
	d.action == "block"
	contains(d.reason, "mcpgate tools show --server tracker --tool list_issues")
}

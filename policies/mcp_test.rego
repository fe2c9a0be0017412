package mcp_test

import rego.v1

import data.mcp

tool_call(name) := {"kind": "request", "method": "tools/call", "tool": {"name": name, "arguments": {}}}

test_read_only_tools_allowed if {
	every name in ["list_issues", "get_issue", "search_issues"] {
		mcp.decision.action == "allow" with input as tool_call(name)
	}
}

test_create_needs_approval if {
	mcp.decision.action == "needs_approval" with input as tool_call("create_issue")
}

test_status_change_blocked_with_reason if {
	d := mcp.decision with input as tool_call("update_status")
	d.action == "block"
	contains(d.reason, "people in the tracker")
}

test_delete_blocked if {
	mcp.decision.action == "block" with input as tool_call("delete_issue")
}

test_unknown_tool_blocked if {
	d := mcp.decision with input as tool_call("format_disk")
	d.action == "block"
	contains(d.reason, "format_disk")
}

test_bad_table_entry_blocked if {
	mcp.decision.action == "block" with input as tool_call("list_issues")
		with data.mcp.tools.list_issues as "yes please"
}

test_protocol_methods_allowed if {
	every method in ["initialize", "tools/list", "ping"] {
		mcp.decision.action == "allow" with input as {"kind": "request", "method": method}
	}
}

test_notifications_and_responses_allowed if {
	mcp.decision.action == "allow" with input as {"kind": "notification", "method": "notifications/initialized"}
	mcp.decision.action == "allow" with input as {"kind": "response", "method": ""}
}

test_unknown_method_blocked if {
	d := mcp.decision with input as {"kind": "request", "method": "admin/shutdown"}
	d.action == "block"
	contains(d.reason, "admin/shutdown")
}

test_request_disguised_as_notification_blocked if {
	mcp.decision.action == "block" with input as {"kind": "request", "method": "notifications/initialized"}
}

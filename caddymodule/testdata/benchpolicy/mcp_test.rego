package mcp_test

import rego.v1

import data.mcp

tool_call(name, arguments) := {"kind": "request", "method": "tools/call", "tool": {"name": name, "arguments": arguments}}

test_echo_in_acme_allowed if {
	mcp.decision.action == "allow" with input as tool_call("echo", {"text": "hi", "repo": "acme/widgets"})
}

test_repo_outside_prefix_blocked if {
	d := mcp.decision with input as tool_call("echo", {"text": "hi", "repo": "evil/widgets"})
	d.action == "block"
	contains(d.reason, "acme/")
}

test_repo_missing_blocked if {
	mcp.decision.action == "block" with input as tool_call("tool_0000", {})
}

test_tool_without_repo_rule_allowed if {
	mcp.decision.action == "allow" with input as tool_call("tool_0001", {})
}

test_table_actions if {
	d := mcp.decision with input as tool_call("tool_0007", {})
	d == {"action": "block", "reason": "tool_0007 writes outside the sandbox"}
	mcp.decision.action == "needs_approval" with input as tool_call("tool_0003", {})
}

test_unknown_tool_blocked if {
	d := mcp.decision with input as tool_call("tool_1000", {})
	d.action == "block"
	contains(d.reason, "not in this gateway")
}

test_other_methods_allowed if {
	mcp.decision.action == "allow" with input as {"kind": "request", "method": "tools/list"}
	mcp.decision.action == "allow" with input as {"kind": "notification", "method": "notifications/initialized"}
}

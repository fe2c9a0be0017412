package mcp_test

import rego.v1

import data.mcp

server_request(name, params) := {
	"kind": "request",
	"method": name,
	"params": params,
	"direction": "server_to_client",
	"server": "tracker",
	"session": "S1",
	"protocol_version": "2025-06-18",
	"request": {"remote_ip": "127.0.0.1", "host": "gateway", "path": "/mcp", "headers": {}},
}

sampling := server_request("sampling/createMessage", {
	"messages": [{"role": "user", "content": {"type": "text", "text": "Summarise issue 7"}}],
	"maxTokens": 100,
})

# Client features are allowed by default: the client answers them itself.
test_client_features_allowed if {
	every name in ["sampling/createMessage", "elicitation/create", "roots/list", "ping", "tasks/get"] {
		mcp.decision == {"action": "allow", "reason": "client feature"} with input as server_request(name, {})
	}
}

# Anything else a server asks of a client is blocked, including methods
# that are fine the other way round.
test_other_server_requests_blocked if {
	every name in ["tools/call", "initialize", "tools/list", "resources/read", "shell/exec"] {
		d := mcp.decision with input as server_request(name, {"name": "echo"})
		d.action == "block"
		contains(d.reason, sprintf("%q", [name]))
	}
}

# A server-to-client tools/call never reaches the tool table.
test_server_tool_call_ignores_the_table if {
	d := mcp.decision with input as server_request("tools/call", {"name": "list_issues"})
		with data.mcp.permissions as {"read_only": "allow"}
	d.action == "block"
}

# The organization's rules narrow server requests as they narrow calls.
test_custom_rule_blocks_sampling if {
	d := mcp.decision with input as sampling
		with data.mcp.block as {"no sampling on the tracker"}
	d == {"action": "block", "reason": "no sampling on the tracker"}
}

# Notifications from a server are not evaluated by the gateway; were one
# given to the policy, it would be blocked, not taken for a request.
test_server_notification_blocked if {
	d := mcp.decision with input as object.union(server_request("notifications/progress", {}), {"kind": "notification"})
	d.action == "block"
}

# Messages a client posts are decided as before.
test_client_direction_unchanged if {
	mcp.decision.action == "allow" with input as {"kind": "request", "method": "ping", "direction": "client_to_server"}
	mcp.decision.action == "block" with input as {"kind": "request", "method": "sampling/createMessage", "direction": "client_to_server"}
}

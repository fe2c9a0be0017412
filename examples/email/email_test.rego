# Proves examples/email: search and summarize email, never send it. The
# table is the one in permissions.json, loaded beside these tests.
package email_test

import rego.v1

import data.mcp

call(name, category, arguments) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": arguments},
	"direction": "client_to_server",
	"tool": {"name": name, "arguments": arguments, "annotations": {}, "category": category, "changed": false},
	"server": "mail",
}

test_reading_is_allowed if {
	every name in ["search_messages", "read_message", "summarize_thread", "list_labels"] {
		mcp.decision.action == "allow" with input as call(name, "read_only", {"query": "invoice"})
	}
}

test_other_read_only_tools_are_allowed if {
	mcp.decision.action == "allow" with input as call("get_attachment", "read_only", {"id": "m1"})
}

test_sending_is_blocked if {
	every name in ["send_message", "send_draft", "reply", "forward"] {
		mcp.decision == {"action": "block", "reason": "assistants never send email"} with input as call(name, "write", {"to": "a@example.com"})
	}
}

test_sending_is_blocked_whatever_the_server_claims if {
	# A server that annotates send_message as read-only does not get it
	# past the per-tool line.
	mcp.decision.action == "block" with input as call("send_message", "read_only", {"to": "a@example.com"})
	mcp.tool_permission.action == "block" with input as call("reply", "read_only", {})
}

test_drafts_need_approval if {
	every name in ["create_draft", "update_draft"] {
		d := mcp.decision with input as call(name, "write", {"body": "hello"})
		d == {"action": "needs_approval", "reason": "a person reviews every draft an assistant writes"}
	}
}

test_other_changes_are_blocked if {
	d := mcp.decision with input as call("delete_message", "destructive", {"id": "m1"})
	d == {"action": "block", "reason": `tool "delete_message" is a destructive tool, and destructive tools are set to block`}
	mcp.decision.action == "block" with input as call("add_label", "write", {"id": "m1", "label": "x"})
}

test_tools_without_a_category_are_blocked if {
	mcp.decision.action == "block" with input as call("mystery", "", {})
}

test_changed_search_tool_is_blocked_until_accepted if {
	changed := json.patch(call("search_messages", "read_only", {}), [{"op": "replace", "path": "/tool/changed", "value": true}])
	d := mcp.decision with input as changed
	d.action == "block"
	contains(d.reason, "mcpgate tools show --server mail --tool search_messages")
}

test_protocol_messages_are_allowed if {
	mcp.decision.action == "allow" with input as {"kind": "request", "method": "tools/list", "server": "mail"}
}

# METADATA
# title: mcpgate's shipped decision
# description: |
#   data.mcp.decision for every MCP message a client posts. Protocol
#   messages that any client needs are allowed; each tool call is decided by
#   the tool table in data.mcp.tools (see tools.json); a tool missing from
#   the table, and any method not listed here, is blocked.
package mcp

import rego.v1

# Requests that carry no tool call and that a client needs to use MCP.
protocol_methods := {
	"initialize",
	"ping",
	"server/discover",
	"tools/list",
	"resources/list",
	"resources/templates/list",
	"resources/read",
	"resources/subscribe",
	"resources/unsubscribe",
	"prompts/list",
	"prompts/get",
	"completion/complete",
	"logging/setLevel",
}

# The actions a tool table entry may name.
actions := {"allow", "needs_approval", "block"}

default decision := {"action": "block", "reason": "no rule of the policy allows this message"}

decision := tool_decision if input.method == "tools/call"

decision := method_decision if input.method != "tools/call"

method_decision := {"action": "allow", "reason": "protocol message"} if {
	protocol_message
} else := {"action": "block", "reason": sprintf("method %q is not allowed by this gateway's policy", [input.method])}

# Responses to server requests and notifications carry no tool call.
protocol_message if input.kind == "response"

protocol_message if {
	input.kind == "notification"
	startswith(input.method, "notifications/")
}

protocol_message if {
	input.kind == "request"
	input.method in protocol_methods
}

# tool_decision reads the tool's entry: either an action, or an object with
# an action and a reason.
tool_decision := {"action": entry, "reason": sprintf("tool %q is set to %s", [input.tool.name, entry])} if {
	entry := data.mcp.tools[input.tool.name]
	is_string(entry)
	entry in actions
} else := {"action": entry.action, "reason": entry.reason} if {
	entry := data.mcp.tools[input.tool.name]
	entry.action in actions
	is_string(entry.reason)
} else := {"action": "block", "reason": sprintf("tool %q is not in this gateway's tool table", [input.tool.name])}

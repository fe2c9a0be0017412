# The policy the end-to-end tests run: protocol messages are allowed, echo
# and slow run, delete_issue is blocked with a reason, create_issue needs
# approval, and anything else is blocked.
package mcp

import rego.v1

default decision := {"action": "block", "reason": "not on the test allowlist"}

decision := {"action": "allow", "reason": "protocol"} if {
	input.method != "tools/call"
	input.method != "resources/read"
}

decision := {"action": "block", "reason": "reading resources is off in tests"} if input.method == "resources/read"

decision := {"action": "allow", "reason": "test tool"} if {
	input.method == "tools/call"
	input.tool.name in {"echo", "slow"}
}

decision := {"action": "block", "reason": "deleting issues is not allowed here"} if {
	input.method == "tools/call"
	input.tool.name == "delete_issue"
}

decision := {"action": "needs_approval", "reason": "creating issues needs a human"} if {
	input.method == "tools/call"
	input.tool.name == "create_issue"
}

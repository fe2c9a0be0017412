# For TestCallerAnswerOutlivedByPolicy: create_issue is confirmed by the
# person who makes the call, unless the request carries X-Escalate, when
# only admin:alice may approve it.
package mcp

import rego.v1

needs_approval contains "issues are confirmed" if input.tool.name == "create_issue"

approvers contains "caller" if {
	input.tool.name == "create_issue"
	not input.request.headers["x-escalate"]
}

approvers contains "admin:alice" if {
	input.tool.name == "create_issue"
	input.request.headers["x-escalate"]
}

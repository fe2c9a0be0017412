# METADATA
# title: mcpgate's shipped decision
# description: |
#   data.mcp.decision for every MCP message a client posts: the most
#   restrictive of the base decision and the organization's own rules.
#
#   The base decision allows the protocol messages any client needs,
#   notifications and responses; decides each tools/call by
#   data.mcp.tool_permission, and each request that reads the server's
#   resources or prompts by data.mcp.feature_permission (permissions.rego);
#   and blocks every other method. Requests a server sends a client (input.direction
#   "server_to_client") are allowed for the client features MCP defines
#   (sampling, elicitation, roots, and ping and tasks around them), which
#   the client answers with its own consent, and blocked otherwise.
#
#   The organization's rules are partial set rules in package mcp, in its
#   own files, each contributing a reason:
#
#     block contains reason if { ... }
#     needs_approval contains reason if { ... }
#
#   They can make a decision stricter (block over needs_approval over
#   allow), never looser. When one of them is the most restrictive, its
#   reason is the decision's (several are joined with "; "). Who may
#   approve what needs_approval asks for is another partial set rule:
#
#     approvers contains "group:security" if { ... }
package mcp

import rego.v1

# Requests that carry no tool call and that a client needs to use MCP.
# subscriptions/listen opens the stream of the server's notifications
# (2026-07-28). The requests that follow a task are decided by
# task_decision.
protocol_methods := {
	"initialize",
	"ping",
	"server/discover",
	"subscriptions/listen",
	"tools/list",
	"logging/setLevel",
}

# The requests that follow a task a decided tools/call started: its status,
# its result, cancelling it. The gateway relays them only for a task a
# call of the same caller and session started, and gives them that call's
# tool (input.tool, without arguments). The organization's rules decide
# them as they decide a call of the tool: one that needs approval is
# allowed by the gateway when the call that started the task was
# approved, and refused otherwise. tasks/list is not among them: an
# upstream may list every caller's tasks. Nor is tasks/update (the
# 2026-07-28 tasks extension): it brings the server answers to what a task
# asked the client, which may have reached the client in a
# notifications/tasks that no policy decides, and the gateway does not bind
# them to what it relayed, as it binds a retried call's.
task_methods := {"tasks/get", "tasks/result", "tasks/cancel"}

# Requests a server may send a client: the client features of MCP, each
# answered by the client itself (a sampling or elicitation request is shown
# to its user), and the ping and task requests that go with them.
server_request_methods := {
	"ping",
	"sampling/createMessage",
	"elicitation/create",
	"roots/list",
	"tasks/get",
	"tasks/result",
	"tasks/list",
	"tasks/cancel",
}

# The actions a decision, and a permissions entry, may name.
actions := {"allow", "needs_approval", "block"}

default decision := {"action": "block", "reason": "no rule of the policy allows this message"}

decision := block if {
	block := organization_block
} else := base_decision if {
	base_decision.action == "block"
} else := base_decision if {
	not organization_asks_approval
} else := {"action": "block", "reason": approvers_conflict_reason} if {
	organization_asks_approval
	approvers_conflict
} else := object.union(
	{"action": "needs_approval", "reason": concat("; ", custom_approval_reasons)},
	approval_approvers_member,
) if {
	organization_asks_approval
} else := base_decision

# organization_block is the decision when the organization's rules block
# whatever the message: rules written as something other than sets, or
# block reasons. Like organization_asks_approval, it reads no input unless
# the organization's rules do, so the gateway computes it once per loaded
# policy.
organization_block := {"action": "block", "reason": concat("; ", malformed_rules)} if {
	count(malformed_rules) > 0
} else := {"action": "block", "reason": concat("; ", custom_block_reasons)} if {
	count(custom_block_reasons) > 0
}

# organization_asks_approval: the organization's needs_approval rules
# give a reason.
organization_asks_approval if count(custom_approval_reasons) > 0

# base_decision is what the library alone decides.
base_decision := server_request_decision if {
	input.direction == "server_to_client"
} else := tool_permission if {
	input.kind == "request"
	input.method == "tools/call"
} else := task_decision if {
	input.kind == "request"
	input.method in task_methods
} else := feature_permission if {
	input.kind == "request"
	feature
} else := {"action": "allow", "reason": "protocol message"} if {
	protocol_message
} else := {"action": "block", "reason": sprintf("method %q is not allowed by this gateway's policy", [input.method])}

# server_request_decision decides a request the server sends the client.
server_request_decision := {"action": "allow", "reason": "client feature"} if {
	input.kind == "request"
	input.method in server_request_methods
} else := {"action": "block", "reason": sprintf("servers may not send %q requests to clients through this gateway", [input.method])}

# task_decision decides a request that follows a task: what its tool's
# permission blocks now (the table changed since the task started, or a
# rule of the organization's reads who asks) is blocked; anything else
# reaches the task, whose call was decided when it was made. Without its
# tool (a policy evaluated outside the gateway), it is blocked.
task_decision := {"action": "block", "reason": tool_permission.reason} if {
	tool_permission.action == "block"
} else := {"action": "allow", "reason": "task of a decided call"}

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

# The reasons of the organization's rules. They are read through data so
# that a policy without such rules needs no empty ones.
custom_block_reasons := {reason_text(reason) | some reason in data.mcp.block}

custom_approval_reasons := {reason_text(reason) | some reason in data.mcp.needs_approval}

# custom_approvers are who may approve what the organization's
# needs_approval rules ask for: its own partial set rule
#
#   approvers contains "group:security" if { ... }
#
# ("caller" to ask the person who made the call; see the approvals docs).
# None: any reviewer.
custom_approvers := {approver | some approver in data.mcp.approvers}

# table_approvers are who the base decision lets approve, when it is
# needs_approval with approvers (a permissions entry's).
table_approvers := {approver | some approver in base_decision.approvers} if {
	base_decision.action == "needs_approval"
} else := set()

# table_any_reviewer: the base decision holds the call for any reviewer
# (needs_approval without approvers), which the caller alone never is.
table_any_reviewer if {
	base_decision.action == "needs_approval"
	count(table_approvers) == 0
}

# approval_approvers are who may approve when the organization's
# needs_approval rules decide. A rule can only narrow who approves: with
# approvers named both by its approvers rules and by the base decision,
# those named by both; with the base decision's any reviewer, the
# organization's but the caller; with its own approvers only, those;
# with the base decision's only, those but the caller (a rule that names
# none holds the call for a reviewer, who is never the caller alone, as it
# does a call the table allows); neither: any reviewer.
approval_approvers := custom_approvers & table_approvers if {
	count(custom_approvers) > 0
	count(table_approvers) > 0
} else := custom_approvers - {"caller"} if {
	count(custom_approvers) > 0
	table_any_reviewer
} else := custom_approvers if {
	count(custom_approvers) > 0
} else := table_approvers - {"caller"}

# approvers_conflict: the organization's approvers and the base
# decision's name nobody in common, so nobody may approve.
approvers_conflict if {
	count(custom_approvers) > 0
	count(table_approvers) > 0
	count(custom_approvers & table_approvers) == 0
}

approvers_conflict if {
	count(custom_approvers) > 0
	table_any_reviewer
	count(custom_approvers - {"caller"}) == 0
}

approvers_conflict if {
	count(custom_approvers) == 0
	count(table_approvers) > 0
	count(table_approvers - {"caller"}) == 0
}

approvers_conflict_reason := sprintf(
	"this call needs approval (%s) by a reviewer, who is never the caller alone, but the permissions table lets only its caller approve it, so nobody may: name reviewers beside caller in the table's entry",
	[concat("; ", custom_approval_reasons)],
) if {
	count(custom_approvers) == 0
} else := sprintf(
	"this call needs approval (%s), but the organization's approvers %v and the permissions table's %s name nobody in common, so nobody may approve it",
	[concat("; ", custom_approval_reasons), sort(custom_approvers), table_approvers_text],
)

# table_approvers_text says who the base decision lets approve.
table_approvers_text := "any reviewer (never the caller alone)" if {
	table_any_reviewer
} else := sprintf("%v", [sort(table_approvers)])

approval_approvers_member := {"approvers": sort(approval_approvers)} if {
	count(approval_approvers) > 0
} else := {}

# malformed_rules are the organization's rules written as something other
# than the sets the library reads (`block if { ... }` makes a boolean, not
# a set of reasons): each blocks every message, with what to write
# instead, rather than be silently ignored.
malformed_rules contains rule_shape_reason("block", data.mcp.block) if not is_collection(data.mcp.block)

malformed_rules contains rule_shape_reason("needs_approval", data.mcp.needs_approval) if not is_collection(data.mcp.needs_approval)

malformed_rules contains rule_shape_reason("approvers", data.mcp.approvers) if not is_collection(data.mcp.approvers)

rule_shape_reason(name, value) := sprintf(
	"the policy's %s rule is a %s, not a set: write it as `%s contains ... if { ... }`; until then every message is blocked",
	[name, type_name(value), name],
)

is_collection(value) if is_set(value)

is_collection(value) if is_array(value)

is_collection(value) if is_object(value)

# reason_text lets a rule contribute something other than a string and
# still be heard.
reason_text(reason) := reason if {
	is_string(reason)
} else := json.marshal(reason)

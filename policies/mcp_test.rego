package mcp_test

import rego.v1

import data.mcp

table := {
	"read_only": "allow",
	"write": "needs_approval",
	"destructive": "block",
	"tools": {"delete_issue": {"action": "block", "reason": "deleting issues is never allowed through assistants"}},
}

tool_call(name, category) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": {}},
	"direction": "client_to_server",
	"tool": {"name": name, "arguments": {}, "annotations": {}, "category": category, "changed": false},
	"server": "tracker",
}

push(arguments) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": "push", "arguments": arguments},
	"tool": {"name": "push", "arguments": arguments, "annotations": {}, "category": "write", "changed": false},
	"server": "org-rules-test",
	"request": {"headers": {}},
}

method(kind, name) := {"kind": kind, "method": name, "server": "tracker"}

# Tool calls

test_tool_calls_follow_tool_permission if {
	every name_category in [["list_issues", "read_only"], ["create_issue", "write"], ["drop_all", "destructive"], ["delete_issue", "read_only"]] {
		[name, category] := name_category
		d := mcp.decision with input as tool_call(name, category) with data.mcp.permissions as table
		p := mcp.tool_permission with input as tool_call(name, category) with data.mcp.permissions as table
		d == p
	}
}

test_tool_call_decisions if {
	mcp.decision.action == "allow" with input as tool_call("list_issues", "read_only") with data.mcp.permissions as table
	mcp.decision.action == "needs_approval" with input as tool_call("create_issue", "write") with data.mcp.permissions as table
	mcp.decision == {"action": "block", "reason": "deleting issues is never allowed through assistants"} with input as tool_call("delete_issue", "destructive")
		with data.mcp.permissions as table
}

test_changed_tool_call_blocked if {
	changed := json.patch(tool_call("list_issues", "read_only"), [{"op": "replace", "path": "/tool/changed", "value": true}])
	d := mcp.decision with input as changed with data.mcp.permissions as table
	d.action == "block"
	contains(d.reason, "mcpgate tools show --server tracker --tool list_issues")
}

test_tool_call_without_tool_blocked if {
	d := mcp.decision with input as method("request", "tools/call") with data.mcp.permissions as table
	d.action == "block"
}

test_tool_call_as_notification_blocked if {
	d := mcp.decision with input as object.union(tool_call("list_issues", "read_only"), {"kind": "notification"})
		with data.mcp.permissions as table
	d.action == "block"
}

# Other methods

test_protocol_methods_allowed if {
	every name in mcp.protocol_methods {
		mcp.decision == {"action": "allow", "reason": "protocol message"} with input as method("request", name)
	}
}

# The stream of notifications can be opened.
test_subscription_allowed if {
	mcp.decision == {"action": "allow", "reason": "protocol message"} with input as method("request", "subscriptions/listen")
}

# task_request is a request following a task a call of tool started, as
# the gateway gives it: the tool without arguments.
task_request(name, tool, category) := object.union(method("request", name), {
	"params": {"taskId": "t-1"},
	"tool": {"name": tool, "annotations": {}, "category": category, "changed": false},
})

# A task a decided call started can be followed, read and cancelled, while
# its tool is not blocked; whatever its tool needs besides (an approval)
# was given to the call that started it.
test_task_requests_follow_their_tool if {
	every name in mcp.task_methods {
		d := mcp.decision with input as task_request(name, "list_issues", "read_only") with data.mcp.permissions as table
		d == {"action": "allow", "reason": "task of a decided call"}
		mcp.decision.action == "allow" with input as task_request(name, "create_issue", "write") with data.mcp.permissions as table
		blocked := mcp.decision with input as task_request(name, "delete_issue", "read_only") with data.mcp.permissions as table
		blocked == {"action": "block", "reason": "deleting issues is never allowed through assistants"}
		mcp.decision.action == "block" with input as method("request", name) with data.mcp.permissions as table
	}
}

# The organization's approval rules decide a task's requests as they
# decide a call of its tool (the gateway lets those of an approved call
# through).
test_task_requests_follow_organization_approval if {
	every name in mcp.task_methods {
		d := mcp.decision with input as task_request(name, "list_issues", "read_only")
			with data.mcp.permissions as table
			with data.mcp.needs_approval as {"issues are reviewed"}
		d == {"action": "needs_approval", "reason": "issues are reviewed"}
	}
}

# The organization's rules decide who may follow a task, as who may call.
test_task_requests_follow_organization_rules if {
	d := mcp.decision with input as task_request("tasks/result", "list_issues", "read_only")
		with data.mcp.permissions as table
		with data.mcp.block as {"issues are read in the tracker this week"}
	d.action == "block"
}

test_task_list_and_update_blocked if {
	every name in {"tasks/list", "tasks/update"} {
		mcp.decision.action == "block" with input as method("request", name)
	}
}

test_protocol_methods_need_no_table if {
	mcp.decision.action == "allow" with input as method("request", "tools/list") with data.mcp.permissions as {}
}

test_notifications_and_responses_allowed if {
	mcp.decision.action == "allow" with input as method("notification", "notifications/initialized")
	mcp.decision.action == "allow" with input as method("notification", "notifications/cancelled")
	mcp.decision.action == "allow" with input as method("response", "")
}

test_unknown_method_blocked if {
	d := mcp.decision with input as method("request", "admin/shutdown")
	d == {"action": "block", "reason": `method "admin/shutdown" is not allowed by this gateway's policy`}
}

test_request_disguised_as_notification_blocked if {
	mcp.decision.action == "block" with input as method("request", "notifications/initialized")
}

test_notification_outside_notifications_blocked if {
	mcp.decision.action == "block" with input as method("notification", "tools/list")
}

test_empty_input_blocked if {
	mcp.decision.action == "block" with input as {}
}

# The organization's rules (org_rules_test.rego, and `with` stand-ins)

test_custom_block_narrows_allow if {
	d := mcp.decision with input as tool_call("list_issues", "read_only")
		with data.mcp.permissions as table
		with data.mcp.block as {"issues are read in the tracker this week"}
	d == {"action": "block", "reason": "issues are read in the tracker this week"}
}

test_custom_block_narrows_needs_approval if {
	d := mcp.decision with input as tool_call("create_issue", "write")
		with data.mcp.permissions as table
		with data.mcp.block as {"no new issues"}
	d == {"action": "block", "reason": "no new issues"}
}

test_custom_block_reason_wins_over_base_block if {
	d := mcp.decision with input as tool_call("delete_issue", "destructive")
		with data.mcp.permissions as table
		with data.mcp.block as {"the tracker is read-only today"}
	d == {"action": "block", "reason": "the tracker is read-only today"}
}

test_custom_needs_approval_narrows_allow if {
	d := mcp.decision with input as tool_call("list_issues", "read_only")
		with data.mcp.permissions as table
		with data.mcp.needs_approval as {"reads are reviewed"}
	d == {"action": "needs_approval", "reason": "reads are reviewed"}
}

test_custom_needs_approval_reason_wins_over_base_needs_approval if {
	d := mcp.decision with input as tool_call("create_issue", "write")
		with data.mcp.permissions as table
		with data.mcp.needs_approval as {"new issues are reviewed by triage"}
	d == {"action": "needs_approval", "reason": "new issues are reviewed by triage"}
}

test_custom_needs_approval_cannot_widen_block if {
	d := mcp.decision with input as tool_call("delete_issue", "destructive")
		with data.mcp.permissions as table
		with data.mcp.needs_approval as {"deletes are reviewed"}
	d == {"action": "block", "reason": "deleting issues is never allowed through assistants"}
}

test_custom_rules_cannot_allow_unknown_methods if {
	d := mcp.decision with input as method("request", "admin/shutdown")
		with data.mcp.needs_approval as {"shutdowns are reviewed"}
	d.action == "block"
}

test_custom_block_beats_custom_needs_approval if {
	d := mcp.decision with input as tool_call("list_issues", "read_only")
		with data.mcp.permissions as table
		with data.mcp.block as {"b"}
		with data.mcp.needs_approval as {"n"}
	d == {"action": "block", "reason": "b"}
}

test_several_reasons_joined if {
	d := mcp.decision with input as tool_call("list_issues", "read_only")
		with data.mcp.permissions as table
		with data.mcp.block as {"second", "first"}
	d == {"action": "block", "reason": "first; second"}
}

test_custom_reason_that_is_not_text_still_blocks if {
	d := mcp.decision with input as tool_call("list_issues", "read_only")
		with data.mcp.permissions as table
		with data.mcp.block as {{"code": 7}}
	d == {"action": "block", "reason": `{"code":7}`}
}

test_custom_rules_apply_to_other_methods if {
	d := mcp.decision with input as method("request", "initialize")
		with data.mcp.block as {"this client may not connect"}
	d == {"action": "block", "reason": "this client may not connect"}
}

test_org_rule_allows_our_repositories if {
	d := mcp.decision with input as push({"repo": "acme/widgets", "branch": "feature"})
		with data.mcp.permissions as {"write": "allow"}
	d == {"action": "allow", "reason": `tool "push" is a write tool, and write tools are set to allow`}
}

test_org_rule_blocks_other_repositories if {
	d := mcp.decision with input as push({"repo": "evil/widgets", "branch": "feature"})
		with data.mcp.permissions as {"write": "allow"}
	d == {"action": "block", "reason": `repository "evil/widgets" is not one of ours`}
}

test_org_rules_reasons_joined if {
	d := mcp.decision with input as push({"repo": "evil/widgets", "branch": "main"})
		with data.mcp.permissions as {"write": "allow"}
	d == {"action": "block", "reason": `pushing to main is done by the release process; repository "evil/widgets" is not one of ours`}
}

test_org_needs_approval_rule if {
	call := json.patch(push({"repo": "acme/widgets"}), [{"op": "add", "path": "/request/headers/x-after-hours", "value": "1"}])
	d := mcp.decision with input as call with data.mcp.permissions as {"write": "allow"}
	d == {"action": "needs_approval", "reason": "pushes outside working hours are reviewed"}
}

test_org_rules_cannot_widen if {
	# The table blocks write tools on this server; the org's allow set and
	# its needs_approval rule change nothing.
	call := json.patch(push({"repo": "acme/widgets"}), [{"op": "add", "path": "/request/headers/x-after-hours", "value": "1"}])
	d := mcp.decision with input as call with data.mcp.permissions as {"write": "block"}
	d == {"action": "block", "reason": `tool "push" is a write tool, and write tools are set to block`}
	mcp.decision.action == "block" with input as {"kind": "request", "method": "admin/shutdown", "server": "org-rules-test"}
}

test_org_rules_on_other_methods if {
	d := mcp.decision with input as {"kind": "request", "method": "prompts/get", "server": "org-rules-test"}
		with data.mcp.permissions as {"prompts": "allow"}
	d == {"action": "needs_approval", "reason": "every prompt on this server is reviewed"}
}

test_org_rules_do_not_change_tool_permission if {
	p := mcp.tool_permission with input as push({"repo": "evil/widgets"}) with data.mcp.permissions as {"write": "allow"}
	p.action == "allow"
}

test_custom_approvers_name_who_approves if {
	d := mcp.decision with input as {"kind": "request", "method": "tools/call", "direction": "client_to_server", "tool": {"name": "t", "category": "read_only", "changed": false}, "server": "s"}
		with data.mcp.permissions as {"read_only": "allow"}
		with data.mcp.needs_approval as {"t needs a look"}
		with data.mcp.approvers as {"group:security", "caller"}
	d == {"action": "needs_approval", "reason": "t needs a look", "approvers": ["caller", "group:security"]}
}

test_argument_member_reads_nested_names_as_upstreams_do if {
	filter := {"Owner ": "acme", "state": "open"}
	mcp.argument_member(filter, "owner") == "acme"
	mcp.argument_member(filter, "OWNER") == "acme"
	mcp.argument_member(filter, "state") == "open"
	not mcp.argument_member(filter, "missing")
	not mcp.argument_member(["owner"], "owner")
	tool := {"arguments": {"Filter": filter}, "argument_names": {"filter": "Filter"}}
	mcp.argument_member(mcp.argument(tool, "filter"), "owner") == "acme"
}

test_argument_reads_names_as_upstreams_do if {
	tool := {"arguments": {"Repo ": "acme/x", "n": 1}, "argument_names": {"repo": "Repo ", "n": "n"}}
	mcp.argument(tool, "repo") == "acme/x"
	mcp.argument(tool, "REPO") == "acme/x"
	mcp.argument(tool, "n") == 1
	not mcp.argument(tool, "missing")
}

# An organization's needs_approval rule on a call the table already holds
# for named approvers keeps those approvers; its own approvers rule can
# only narrow them (those named by both), and naming nobody in common
# blocks: it never opens the call to more people.
test_custom_needs_approval_narrows_table_approvers if {
	call := {"kind": "request", "method": "tools/call", "direction": "client_to_server", "tool": {"name": "t", "category": "write", "changed": false}, "server": "s"}
	table := {"tools": {"t": {"action": "needs_approval", "approvers": ["inbox:alice", "group:security"]}}}
	kept := mcp.decision with input as call
		with data.mcp.permissions as table
		with data.mcp.needs_approval as {"t needs a look"}
	kept == {"action": "needs_approval", "reason": "t needs a look", "approvers": ["group:security", "inbox:alice"]}
	narrowed := mcp.decision with input as call
		with data.mcp.permissions as table
		with data.mcp.needs_approval as {"t needs a look"}
		with data.mcp.approvers as {"group:security", "caller"}
	narrowed == {"action": "needs_approval", "reason": "t needs a look", "approvers": ["group:security"]}
	apart := mcp.decision with input as call
		with data.mcp.permissions as table
		with data.mcp.needs_approval as {"t needs a look"}
		with data.mcp.approvers as {"caller"}
	apart.action == "block"
	contains(apart.reason, "name nobody in common")
	any_reviewer := mcp.decision with input as call
		with data.mcp.permissions as {"write": "needs_approval"}
		with data.mcp.needs_approval as {"t needs a look"}
	not any_reviewer.approvers
	named := mcp.decision with input as call
		with data.mcp.permissions as {"write": "allow"}
		with data.mcp.needs_approval as {"t needs a look"}
		with data.mcp.approvers as {"caller"}
	named.approvers == ["caller"]
}

# A rule that names no approvers holds a call for a reviewer, never the
# caller alone, whatever the table says: a table that asks the caller
# (stricter than one that allows) never lets the caller's own click
# answer the rule. The table's other approvers stay; with none, nobody
# may approve, and the call is blocked with what to change.
test_custom_needs_approval_never_answered_by_the_caller_alone if {
	call := {"kind": "request", "method": "tools/call", "direction": "client_to_server", "tool": {"name": "t", "category": "write", "changed": false}, "server": "s"}
	caller_only := mcp.decision with input as call
		with data.mcp.permissions as {"write": {"action": "needs_approval", "approvers": ["caller"]}}
		with data.mcp.needs_approval as {"t needs a look"}
	caller_only.action == "block"
	contains(caller_only.reason, "lets only its caller approve it")
	contains(caller_only.reason, "t needs a look")
	with_a_reviewer := mcp.decision with input as call
		with data.mcp.permissions as {"write": {"action": "needs_approval", "approvers": ["caller", "inbox:alice"]}}
		with data.mcp.needs_approval as {"t needs a look"}
	with_a_reviewer == {"action": "needs_approval", "reason": "t needs a look", "approvers": ["inbox:alice"]}
	# Without the rule, the table's caller approves as before.
	table_alone := mcp.decision with input as call
		with data.mcp.permissions as {"write": {"action": "needs_approval", "approvers": ["caller"]}}
	table_alone.approvers == ["caller"]
}

# A table that holds a call for any reviewer never lets the caller
# approve it alone: the organization's approvers narrow within the
# reviewers (the caller taken out), and naming only the caller blocks.
test_custom_approvers_never_open_a_reviewed_call_to_its_caller if {
	call := {"kind": "request", "method": "tools/call", "direction": "client_to_server", "tool": {"name": "t", "category": "write", "changed": false}, "server": "s"}
	caller_only := mcp.decision with input as call
		with data.mcp.permissions as {"write": "needs_approval"}
		with data.mcp.needs_approval as {"t needs a look"}
		with data.mcp.approvers as {"caller"}
	caller_only.action == "block"
	contains(caller_only.reason, "any reviewer (never the caller alone)")
	with_reviewers := mcp.decision with input as call
		with data.mcp.permissions as {"write": "needs_approval"}
		with data.mcp.needs_approval as {"t needs a look"}
		with data.mcp.approvers as {"caller", "group:security"}
	with_reviewers == {"action": "needs_approval", "reason": "t needs a look", "approvers": ["group:security"]}
}

# Rules written as something other than sets (`block if { ... }` is a
# boolean) block every message with what to write, rather than be
# ignored and let the call through.
test_malformed_rules_block if {
	call := {"kind": "request", "method": "tools/call", "direction": "client_to_server", "tool": {"name": "t", "category": "read_only", "changed": false}, "server": "s"}
	p := {"read_only": "allow"}
	boolean_block := mcp.decision with input as call with data.mcp.permissions as p with data.mcp.block as true
	string_block := mcp.decision with input as call with data.mcp.permissions as p with data.mcp.block as "x"
	boolean_approval := mcp.decision with input as call with data.mcp.permissions as p with data.mcp.needs_approval as true
	string_approvers := mcp.decision with input as call with data.mcp.permissions as p with data.mcp.approvers as "admin:alice"
	every d in [boolean_block, string_block] {
		d.action == "block"
		contains(d.reason, "the policy's block rule is a")
	}
	boolean_approval.action == "block"
	contains(boolean_approval.reason, "the policy's needs_approval rule is a boolean")
	string_approvers.action == "block"
	contains(string_approvers.reason, "the policy's approvers rule is a string")
	fine := mcp.decision with input as call
		with data.mcp.permissions as {"read_only": "allow"}
		with data.mcp.block as set()
		with data.mcp.approvers as ["caller"]
	fine.action == "allow"
}

# METADATA
# title: the benchmarks' policy
# description: |
#   A realistic data.mcp.decision for the benchmarks in bench_test.go: every
#   method but tools/call is allowed, and each tool call is decided by a
#   1,000-entry tool table (tools.json) plus an argument rule. A table entry
#   is an action, or an object with an action, an optional reason and an
#   optional repo_prefix; a tool with a repo_prefix may only be called with
#   a string "repo" argument under that prefix. A tool missing from the
#   table is blocked.
package mcp

import rego.v1

# The actions a tool table entry may name.
actions := {"allow", "needs_approval", "block"}

default decision := {"action": "block", "reason": "no rule of the policy allows this message"}

decision := {"action": "allow", "reason": "not a tool call"} if input.method != "tools/call"

decision := tool_decision if input.method == "tools/call"

# entry is the tool's table entry as an object.
entry := {"action": e} if {
	e := data.mcp.tools[input.tool.name]
	is_string(e)
} else := e if {
	e := data.mcp.tools[input.tool.name]
	is_object(e)
}

tool_decision := {"action": "block", "reason": sprintf("tool %q is not in this gateway's tool table", [input.tool.name])} if {
	not known_tool
} else := {"action": "block", "reason": sprintf("tool %q may only be used on repositories under %q", [input.tool.name, entry.repo_prefix])} if {
	not repo_allowed
} else := {"action": entry.action, "reason": entry.reason} if {
	is_string(entry.reason)
} else := {"action": entry.action, "reason": sprintf("tool %q is set to %s", [input.tool.name, entry.action])}

# known_tool holds when the table has an entry with a valid action for the
# tool.
known_tool if entry.action in actions

# repo_allowed holds when the tool has no repo rule, or its repo argument
# is a string under the tool's prefix.
repo_allowed if not entry.repo_prefix

repo_allowed if {
	repo := input.tool.arguments.repo
	is_string(repo)
	startswith(repo, entry.repo_prefix)
}

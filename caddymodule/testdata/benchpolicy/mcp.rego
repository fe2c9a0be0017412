# METADATA
# title: the benchmarks' policy
# description: |
#   A realistic data.mcp.decision for the benchmarks in bench_test.go: every
#   method but tools/call is allowed, and each tool call is decided by a
#   1,000-entry tool table (tools.json) plus an argument rule. Each table
#   entry is an object with an action and a reason; a tool with a
#   repo_prefix may only be called with a "repo" argument under that prefix
#   (repo_reason says why otherwise). A tool missing from the table is
#   blocked. Written the way a security team would write a table that is
#   evaluated on every call: one lookup, reasons kept in the data.
package mcp

import rego.v1

default decision := {"action": "block", "reason": "no rule of the policy allows this message"}

decision := {"action": "allow", "reason": "not a tool call"} if input.method != "tools/call"

decision := tool_decision if input.method == "tools/call"

# entry is the tool's row of the table.
entry := data.mcp.tools[input.tool.name]

tool_decision := {"action": "block", "reason": sprintf("tool %q is not in this gateway's tool table", [input.tool.name])} if {
	not entry
} else := {"action": "block", "reason": entry.repo_reason} if {
	not repo_allowed
} else := {"action": entry.action, "reason": entry.reason}

# repo_allowed holds when the tool has no repo rule, or its repo argument
# is a string under the tool's prefix.
repo_allowed if not entry.repo_prefix

repo_allowed if {
	repo := input.tool.arguments.repo
	is_string(repo)
	startswith(repo, entry.repo_prefix)
}

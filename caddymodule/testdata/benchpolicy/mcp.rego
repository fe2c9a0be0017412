# METADATA
# title: the benchmarks' policy
# description: |
#   A realistic data.mcp.decision for the benchmarks in bench_test.go: every
#   method but tools/call is allowed, and each tool call is decided by a
#   1,000-entry tool table (tools.json) plus an argument rule. Each entry
#   holds its verdict ({"action", "reason"}) and a repo_prefix: the tool may
#   only be called with a "repo" argument under that prefix (repo_reason
#   says why otherwise; "" for the tools the rule does not concern). A tool missing from the table is blocked. Written
#   the way a table evaluated on every call should be: one lookup, verdicts
#   and reasons kept in the data, rules indexed on the method.
package mcp

import rego.v1

default decision := {"action": "block", "reason": "no rule of the policy allows this message"}

decision := {"action": "allow", "reason": "not a tool call"} if input.method != "tools/call"

decision := checked(object.get(data.mcp.tools, input.tool.name, unknown_tool), object.get(input.tool.arguments, "repo", "")) if {
	input.method == "tools/call"
}

# unknown_tool is the entry of every tool the table does not name.
unknown_tool := {"verdict": {"action": "block", "reason": "the tool is not in this gateway's tool table"}, "repo_prefix": ""}

# checked applies the argument rule: a tool runs only on repositories
# under its repo_prefix ("" for tools without the rule). (A repo that is not
# a string is a built-in error, which the gateway's strict evaluation turns
# into a block.)
checked(entry, repo) := entry.verdict if {
	startswith(repo, entry.repo_prefix)
} else := {"action": "block", "reason": entry.repo_reason}

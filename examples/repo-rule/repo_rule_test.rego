# Proves examples/repo-rule: on server github, reading is open, changes are
# limited to acme's repositories, merges need a person, deleting a
# repository never happens. The table is permissions.yaml, loaded beside
# these tests; the rule is our_repositories.rego.
package repo_rule_test

import rego.v1

import data.mcp

call(name, category, arguments) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": arguments},
	"direction": "client_to_server",
	"tool": {
		"name": name, "arguments": arguments, "annotations": {}, "category": category, "changed": false,
		# As the gateway folds them (mcpmsg.FoldName); lower for these names.
		"argument_names": {lower(trim_space(key)): key | some key, _ in arguments},
	},
	"server": "github",
}

test_names_spelled_otherwise_are_read_as_upstreams_read_them if {
	every arguments in [
		{"Owner": "evil", "repo": "widgets"},
		{"OWNER ": "evil", "repo": "widgets"},
		{"owner": "acme", "Repo": "evil/widgets"},
	] {
		d := mcp.decision with input as call("create_pull_request", "write", arguments)
		d.action == "block"
		contains(d.reason, "evil")
	}
}

test_changes_to_our_repositories_are_allowed if {
	every arguments in [
		{"owner": "acme", "repo": "widgets", "title": "Fix", "head": "fix", "base": "main"},
		{"owner": "ACME", "repo": "widgets", "title": "Fix", "head": "fix", "base": "main"},
		{"repo": "acme/widgets", "title": "Fix", "head": "fix", "base": "main"},
		{"owner": "acme", "repo": "acme/widgets", "title": "Fix", "head": "fix", "base": "main"},
	] {
		d := mcp.decision with input as call("create_pull_request", "write", arguments)
		d == {"action": "allow", "reason": `tool "create_pull_request" is a write tool, and write tools are set to allow`}
	}
	mcp.decision.action == "allow" with input as call("push_files", "write", {"owner": "acme", "repo": "widgets", "branch": "fix", "files": []})
}

test_changes_to_other_repositories_are_blocked if {
	d := mcp.decision with input as call("create_pull_request", "write", {"owner": "evil", "repo": "widgets"})
	d == {"action": "block", "reason": `tool "create_pull_request" may only change repositories of acme, not of "evil"`}
	mcp.decision.action == "block" with input as call("push_files", "write", {"repo": "evil/widgets", "files": []})
}

test_an_owner_hidden_in_repo_is_blocked if {
	d := mcp.decision with input as call("create_branch", "write", {"owner": "acme", "repo": "evil/widgets", "branch": "x"})
	d == {"action": "block", "reason": `tool "create_branch" may only change repositories of acme, not of "evil"`}
}

test_a_path_that_leaves_our_repositories_is_blocked if {
	every repo in ["acme/../../evil/widgets", "acme/./widgets", "acme/widgets/../../evil/x", "acme//widgets", "../evil", "acme/", `widgets\..\..\evil\widgets`, "acme%2F..%2F..%2Fevil%2Fwidgets", "acme/widgets?x=1", "acme/wid gets", ".."] {
		d := mcp.decision with input as call("create_pull_request", "write", {"owner": "acme", "repo": repo})
		d.action == "block"
		contains(d.reason, "which is not \"name\" or \"owner/name\"")
	}
}

test_an_owner_that_is_not_text_is_blocked if {
	mcp.decision.action == "block" with input as call("create_branch", "write", {"owner": ["acme"], "repo": "widgets"})
}

test_changes_that_do_not_say_whose_are_blocked if {
	d := mcp.decision with input as call("create_pull_request", "write", {"repo": "widgets"})
	d.action == "block"
	contains(d.reason, "does not say whose")
}

test_mislabelled_changes_are_still_checked if {
	# create_or_update_file annotated read-only is still a change.
	mcp.decision.action == "block" with input as call("create_or_update_file", "read_only", {"owner": "evil", "repo": "x", "path": "a"})
	mcp.decision.action == "allow" with input as call("create_or_update_file", "read_only", {"owner": "acme", "repo": "x", "path": "a"})
}

test_reading_any_repository_is_allowed if {
	every owner in ["acme", "torvalds", "evil"] {
		mcp.decision.action == "allow" with input as call("get_file_contents", "read_only", {"owner": owner, "repo": "x", "path": "README.md"})
	}
	mcp.decision.action == "allow" with input as call("search_repositories", "read_only", {"query": "mcp"})
}

test_merges_need_approval_in_our_repositories_only if {
	d := mcp.decision with input as call("merge_pull_request", "write", {"owner": "acme", "repo": "widgets", "pullNumber": 7})
	d == {"action": "needs_approval", "reason": "a person merges what an assistant proposes"}

	# The rule cannot be widened past the table, nor the table past the rule.
	mcp.decision.action == "block" with input as call("merge_pull_request", "write", {"owner": "evil", "repo": "widgets", "pullNumber": 7})
}

test_deleting_repositories_is_blocked_even_ours if {
	d := mcp.decision with input as call("delete_repository", "destructive", {"owner": "acme", "repo": "widgets"})
	d == {"action": "block", "reason": "repositories are never deleted through assistants"}
	mcp.decision.action == "block" with input as call("delete_file", "destructive", {"owner": "acme", "repo": "widgets", "path": "a"})
}

test_the_rule_leaves_other_servers_alone if {
	d := mcp.decision with input as object.union(call("create_pull_request", "write", {"owner": "evil", "repo": "x"}), {"server": "gitea"})
	d.action == "allow"
}

test_the_rule_does_not_hide_tools if {
	# tools/list shows what the table allows; the rule judges each call.
	p := mcp.tool_permission with input as call("create_pull_request", "write", {"owner": "evil", "repo": "x"})
	p.action == "allow"
}

test_the_rule_leaves_other_methods_alone if {
	mcp.decision.action == "allow" with input as {"kind": "request", "method": "tools/list", "server": "github"}
}

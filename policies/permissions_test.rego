package mcp_permissions_test

import rego.v1

import data.mcp

# A table with every kind of entry: categories, tools, a reason, and
# per-server sections.
table := {
	"read_only": "allow",
	"write": "needs_approval",
	"destructive": "block",
	"tools": {
		"create_issue": "block",
		"update_status": {"action": "needs_approval", "reason": "status changes are reviewed"},
		"archive_issue": {"action": "allow"},
	},
	"servers": {
		"tracker": {
			"write": "block",
			"tools": {"create_issue": "allow", "get_issue": "needs_approval"},
		},
		"wiki": {"read_only": "needs_approval"},
	},
}

tool(name, category, server) := {
	"kind": "request",
	"method": "tools/call",
	"params": {"name": name, "arguments": {}},
	"direction": "client_to_server",
	"tool": {"name": name, "arguments": {}, "annotations": {}, "category": category, "changed": false},
	"server": server,
}

permission(name, category, server) := p if {
	p := mcp.tool_permission with input as tool(name, category, server)
		with data.mcp.permissions as table
}

test_categories_apply_to_tools_without_entries if {
	permission("list_issues", "read_only", "crm") == {
		"action": "allow",
		"reason": `tool "list_issues" is a read-only tool, and read-only tools are set to allow`,
	}
	permission("add_label", "write", "crm").action == "needs_approval"
	permission("drop_table", "destructive", "crm") == {
		"action": "block",
		"reason": `tool "drop_table" is a destructive tool, and destructive tools are set to block`,
	}
}

test_tool_entry_beats_its_category if {
	# create_issue is a write tool (needs_approval) but is set to block.
	permission("create_issue", "write", "crm") == {"action": "block", "reason": `tool "create_issue" is set to block`}

	# A per-tool line wins even when it is looser than the category:
	# annotations are only the server's hints.
	permission("archive_issue", "destructive", "crm") == {"action": "allow", "reason": `tool "archive_issue" is set to allow`}
}

test_tool_entry_reason if {
	permission("update_status", "write", "crm") == {"action": "needs_approval", "reason": "status changes are reviewed"}
}

test_server_tool_entry_beats_tool_entry if {
	permission("create_issue", "write", "tracker") == {
		"action": "allow",
		"reason": `tool "create_issue" is set to allow on server "tracker"`,
	}
}

test_server_tool_entry_beats_server_category if {
	permission("get_issue", "read_only", "tracker").action == "needs_approval"
	permission("get_issue", "read_only", "crm").action == "allow"
}

test_tool_entry_beats_server_category if {
	# tracker blocks write tools, but update_status has its own line.
	permission("update_status", "write", "tracker") == {"action": "needs_approval", "reason": "status changes are reviewed"}
}

test_server_category_beats_category if {
	permission("add_label", "write", "tracker") == {
		"action": "block",
		"reason": `tool "add_label" is a write tool, and write tools are set to block on server "tracker"`,
	}
	permission("page_search", "read_only", "wiki").action == "needs_approval"
}

test_server_section_silent_on_a_category_falls_back if {
	permission("list_issues", "read_only", "tracker").action == "allow"
	permission("delete_page", "destructive", "wiki").action == "block"
}

test_silent_table_blocks if {
	p := mcp.tool_permission with input as tool("add_label", "write", "crm")
		with data.mcp.permissions as {"read_only": "allow"}
	p == {
		"action": "block",
		"reason": `tool "add_label" is a write tool, and the permissions table sets nothing for write tools`,
	}
}

test_empty_table_blocks_everything if {
	every category in mcp.categories {
		p := mcp.tool_permission with input as tool("t", category, "crm") with data.mcp.permissions as {}
		p.action == "block"
	}
}

test_unknown_category_only_tool_entries_apply if {
	permission("create_issue", "", "tracker").action == "allow"
	p := permission("list_issues", "", "crm")
	p == {"action": "block", "reason": `tool "list_issues" has no known category and no entry in the permissions table`}
}

test_category_cannot_name_other_table_members if {
	# "tools" and "servers" are members of the table, not categories.
	every category in ["tools", "servers", "Read_Only"] {
		p := permission("list_issues", category, "crm")
		p.action == "block"
		contains(p.reason, "no known category")
	}
}

test_missing_category_blocks if {
	p := mcp.tool_permission with input as {"kind": "request", "method": "tools/call", "tool": {"name": "list_issues", "arguments": {}}}
		with data.mcp.permissions as table
	p.action == "block"
}

test_malformed_entries_block if {
	every entry in [
		"yes please",
		"Allow",
		"",
		true,
		false,
		1,
		null,
		["allow"],
		{},
		{"action": "maybe"},
		{"action": "allow", "reason": 7},
		{"action": "allow", "reason": "fine", "until": "friday"},
		{"reason": "no action"},
	] {
		p := mcp.tool_permission with input as tool("list_issues", "read_only", "crm")
			with data.mcp.permissions as {"read_only": "allow", "tools": {"list_issues": entry}}
		p.action == "block"
		contains(p.reason, `the permissions entry tools["list_issues"] is`)
	}
}

test_malformed_category_entry_blocks if {
	p := mcp.tool_permission with input as tool("page_search", "read_only", "wiki")
		with data.mcp.permissions as {"read_only": "allow", "servers": {"wiki": {"read_only": "sometimes"}}}
	p.action == "block"
	contains(p.reason, `servers["wiki"].read_only is "sometimes"`)
}

test_malformed_table_blocks if {
	every bad in [
		"allow",
		["allow"],
		false,
		{"read_only": "allow", "tool": {"list_issues": "allow"}},
		{"read_only": "allow", "tools": ["list_issues"]},
		{"read_only": "allow", "servers": "crm"},
		{"read_only": "allow", "servers": {"crm": "allow"}},
		{"read_only": "allow", "servers": {"crm": {"read-only": "allow"}}},
		{"read_only": "allow", "servers": {"crm": {"tools": "list_issues"}}},
	] {
		p := mcp.tool_permission with input as tool("list_issues", "read_only", "crm")
			with data.mcp.permissions as bad
		p.action == "block"
		contains(p.reason, "the permissions table")
	}
}

test_unknown_member_is_named if {
	p := mcp.tool_permission with input as tool("list_issues", "read_only", "crm")
		with data.mcp.permissions as {"read_only": "allow", "tool": {"list_issues": "block"}}
	p.reason == `tool "list_issues" is blocked: the permissions table has an unknown member "tool" (want destructive, prompts, read_only, resources, servers, tools, write)`
}

test_other_servers_sections_are_not_read if {
	p := mcp.tool_permission with input as tool("list_issues", "read_only", "crm")
		with data.mcp.permissions as {"read_only": "allow", "servers": {"wiki": "block"}}
	p.action == "allow"
}

test_changed_tool_blocks_whatever_the_table_says if {
	changed := object.union(tool("create_issue", "write", "tracker"), {"tool": {"changed": true}})
	p := mcp.tool_permission with input as changed with data.mcp.permissions as table
	p.action == "block"
	contains(p.reason, `the definition of tool "create_issue" changed since an operator accepted it`)
	contains(p.reason, "mcpgate tools show --server tracker --tool create_issue")
}

test_changed_tool_blocks_even_with_a_malformed_table if {
	changed := object.union(tool("list_issues", "read_only", "crm"), {"tool": {"changed": true}})
	p := mcp.tool_permission with input as changed with data.mcp.permissions as "allow"
	p.action == "block"
	contains(p.reason, "changed since an operator accepted it")
}

test_unchanged_tool_follows_the_table if {
	unchanged := json.remove(tool("list_issues", "read_only", "crm"), ["tool/changed"])
	not unchanged.tool.changed
	mcp.tool_permission.action == "allow" with input as unchanged with data.mcp.permissions as table
}

test_arguments_do_not_matter if {
	every arguments in [{}, {"id": 1}, {"query": "x", "tool": "delete_issue"}] {
		call := object.union(tool("list_issues", "read_only", "crm"), {"tool": {"arguments": arguments}})
		p := mcp.tool_permission with input as call with data.mcp.permissions as table
		p.action == "allow"
	}
}

test_no_tool_blocks if {
	p := mcp.tool_permission with input as {"kind": "request", "method": "tools/list"} with data.mcp.permissions as table
	p.action == "block"
}

test_hostile_tool_names_are_quoted if {
	p := permission("x%s\"y", "write", "crm")
	p.reason == `tool "x%s\"y" is a write tool, and write tools are set to needs_approval`
}

test_changed_tool_blocks_without_a_server if {
	changed := json.remove(tool("list_issues", "read_only", "crm"), ["server"])
	p := mcp.tool_permission with input as json.patch(changed, [{"op": "replace", "path": "/tool/changed", "value": true}])
		with data.mcp.permissions as table
	p.action == "block"
	contains(p.reason, "changed since an operator accepted it")
}

test_entry_approvers_reach_the_decision if {
	entries := {"tools": {
		"create_issue": {"action": "needs_approval", "approvers": ["caller"]},
		"merge": {"action": "needs_approval", "reason": "merges are reviewed", "approvers": ["group:leads", "admin"]},
	}}
	p := mcp.tool_permission with input as tool("create_issue", "write", "crm") with data.mcp.permissions as entries
	p == {"action": "needs_approval", "reason": `tool "create_issue" is set to needs_approval`, "approvers": ["caller"]}
	m := mcp.tool_permission with input as tool("merge", "write", "crm") with data.mcp.permissions as entries
	m == {"action": "needs_approval", "reason": "merges are reviewed", "approvers": ["group:leads", "admin"]}
}

test_malformed_approvers_block if {
	every entry in [
		{"action": "allow", "approvers": ["caller"]},
		{"action": "needs_approval", "approvers": "caller"},
		{"action": "needs_approval", "approvers": [1]},
	] {
		p := mcp.tool_permission with input as tool("t", "write", "crm") with data.mcp.permissions as {"tools": {"t": entry}}
		p.action == "block"
		contains(p.reason, "approvers with needs_approval only")
	}
}

# Resources and prompts

feature_request(method, params, server) := {"kind": "request", "method": method, "params": params, "direction": "client_to_server", "server": server}

# Every request that reads resources or prompts is decided by the table:
# its feature's own entry, on the server or for all, else the read_only
# entry it follows; nothing found blocks.
test_feature_permissions if {
	cases := [
		# [method, params, table, action, reason]
		["resources/read", {"uri": "file:///etc/passwd"}, {"read_only": "allow"}, "allow", "resources/read reads the server's resources, which follow read-only tools, set to allow"],
		["resources/read", {"uri": "file:///etc/passwd"}, {"read_only": "block"}, "block", "resources/read reads the server's resources, which follow read-only tools, set to block"],
		["resources/list", {}, {"read_only": "allow", "resources": "block"}, "block", "resources/list reads the server's resources, which are set to block"],
		["resources/templates/list", {}, {"read_only": "block", "resources": "allow"}, "allow", "resources/templates/list reads the server's resources, which are set to allow"],
		["resources/subscribe", {"uri": "x"}, {"resources": {"action": "block", "reason": "no resources here"}}, "block", "no resources here"],
		["resources/unsubscribe", {"uri": "x"}, {}, "block", "resources/unsubscribe reads the server's resources, and the permissions table sets nothing for resources (nor for read-only tools, which they follow without an entry of their own)"],
		["prompts/get", {"name": "leak"}, {"read_only": "allow", "prompts": "block"}, "block", "prompts/get reads the server's prompts, which are set to block"],
		["prompts/list", {}, {"read_only": "allow", "servers": {"crm": {"prompts": "block"}}}, "block", `prompts/list reads the server's prompts, which are set to block on server "crm"`],
		["prompts/list", {}, {"read_only": "block", "servers": {"crm": {"read_only": "allow"}}}, "allow", `prompts/list reads the server's prompts, which follow read-only tools, set to allow on server "crm"`],
		["completion/complete", {"ref": {"type": "ref/prompt", "name": "leak"}}, {"read_only": "allow", "prompts": "block"}, "block", "completion/complete reads the server's prompts, which are set to block"],
		["completion/complete", {"ref": {"type": "ref/resource", "uri": "x"}}, {"prompts": "block", "resources": "allow"}, "allow", "completion/complete reads the server's resources, which are set to allow"],
		["resources/read", {"uri": "x"}, {"read_only": "needs_approval"}, "block", "resources/read reads the server's resources, which follow read-only tools, set to needs_approval, and the gateway holds only tool calls for approval: set resources and prompts to allow or block"],
		["resources/read", {"uri": "x"}, {"read_only": {"action": "needs_approval", "approvers": ["inbox"]}}, "block", "resources/read reads the server's resources, which follow read-only tools, set to needs_approval, and the gateway holds only tool calls for approval: set resources and prompts to allow or block"],
		["resources/read", {"uri": "x"}, {"read_only": {"action": "allow", "reason": "reads are fine"}}, "allow", "resources/read reads the server's resources, which follow read-only tools, set to allow"],
		["subscriptions/listen", {"notifications": {"resourceSubscriptions": ["secret://db"]}}, {"read_only": "allow", "resources": "block"}, "block", "subscriptions/listen reads the server's resources, which are set to block"],
		["subscriptions/listen", {"notifications": {"resourceSubscriptions": ["secret://db"]}}, {"read_only": "allow"}, "allow", "subscriptions/listen reads the server's resources, which follow read-only tools, set to allow"],
		["subscriptions/listen", {"notifications": {"toolsListChanged": true, "resourceSubscriptions": []}}, {"resources": "block"}, "allow", "protocol message"],
		["subscriptions/listen", {"notifications": {"toolsListChanged": true, "resourceSubscriptions": null}}, {"resources": "block"}, "allow", "protocol message"],
		["subscriptions/listen", {"notifications": {"resourceSubscriptions": "secret://db"}}, {"read_only": "allow", "resources": "block"}, "block", "subscriptions/listen reads the server's resources, which are set to block"],
		["resources/read", {"uri": "x"}, {"read_only": {"action": "allow", "approvers": ["inbox"]}}, "block", `resources/read is blocked: the permissions entry read_only is {"action":"allow","approvers":["inbox"]}, want allow, needs_approval, block, or {"action": ..., "reason": ..., "approvers": [...]} (approvers with needs_approval only)`],
		["resources/read", {"uri": "x"}, {"read_only": {"action": "allow", "reason": 5}}, "block", `resources/read is blocked: the permissions entry read_only is {"action":"allow","reason":5}, want allow, needs_approval, block, or {"action": ..., "reason": ..., "approvers": [...]} (approvers with needs_approval only)`],
		["prompts/get", {"name": "x"}, {"read_only": "block", "servers": {"crm": {"read_only": {"action": "allow", "approvers": "inbox"}}}}, "block", `prompts/get is blocked: the permissions entry servers["crm"].read_only is {"action":"allow","approvers":"inbox"}, want allow, needs_approval, block, or {"action": ..., "reason": ..., "approvers": [...]} (approvers with needs_approval only)`],
		["resources/read", {"uri": "x"}, {"resources": "maybe"}, "block", `resources/read is blocked: the permissions entry resources is "maybe", want allow or block, or {"action": ..., "reason": ...}`],
		["resources/read", {"uri": "x"}, {"resources": {"action": "allow", "approvers": ["inbox"]}}, "block", `resources/read is blocked: the permissions entry resources is {"action":"allow","approvers":["inbox"]}, want allow or block, or {"action": ..., "reason": ...}`],
	]
	every c in cases {
		[method, params, table, action, reason] := c
		d := mcp.decision with input as feature_request(method, params, "crm") with data.mcp.permissions as table
		d == {"action": action, "reason": reason}
	}
}

# A completion of anything else, and a table with problems, block.
test_feature_permission_blocks_the_unknown if {
	d := mcp.decision with input as feature_request("completion/complete", {"ref": {"type": "ref/other"}}, "crm") with data.mcp.permissions as {"resources": "allow", "prompts": "allow"}
	d.action == "block"
	p := mcp.decision with input as feature_request("resources/read", {"uri": "x"}, "crm") with data.mcp.permissions as {"resources": "allow", "resource": "block"}
	p.action == "block"
	contains(p.reason, `unknown member "resource"`)
	n := mcp.decision with input as feature_request("resources/read", {"uri": "x"}, "crm") with data.mcp.permissions as "allow"
	n == {"action": "block", "reason": `resources/read is blocked: the permissions table is "allow", want an object`}
}

# mcpgate's tool permissions: data.mcp.tool_permission, from the
# organization's permissions table, data.mcp.permissions.
package mcp

import rego.v1

# The categories the gateway files tools under, from their annotations.
categories := {"read_only", "write", "destructive"}

# The server features besides tools that the table governs: requests that
# read a server's resources, and its prompts.
features := {"resources", "prompts"}

# The members a permissions table, and a server's section of it, may have.
table_keys := (categories | features) | {"tools", "servers"}

server_section_keys := (categories | features) | {"tools"}

# The members an object entry may have.
entry_keys := {"action", "reason", "approvers"}

# METADATA
# title: tool permission
# scope: document
# description: |
#   data.mcp.tool_permission: what the organization's permissions table
#   (data.mcp.permissions) says about input.tool. The table sets an action
#   (allow, needs_approval or block) per category of tools and per tool,
#   for every server and per server:
#
#     {"read_only": "allow", "write": "needs_approval", "destructive": "block",
#      "tools": {"create_issue": "block",
#                "update_status": {"action": "needs_approval", "reason": "..."}},
#      "servers": {"tracker": {"write": "block", "tools": {...}}}}
#
#   For a tool on server S the first entry found wins:
#   servers[S].tools[name], tools[name], servers[S][category], [category].
#   Nothing found blocks, and so does anything malformed on the way. A tool
#   whose definition changed since an operator accepted it blocks whatever
#   the table says. The rule reads no arguments: the gateway also uses it to
#   hide blocked tools from tools/list. (It names the members of input.tool
#   it reads, input.tool.name rather than input.tool, so that the gateway
#   builds, and keys its decision cache by, those alone.)
default tool_permission := {"action": "block", "reason": "no tool permission applies to this message"}

# The first entry found wins, in the order above. The entries that name a
# tool are resolved into permissions ahead (tool_entry_permissions,
# server_tool_entry_permissions: they read no input, so the gateway
# computes them once per loaded policy), and a call only looks its tool up
# in them; an entry for a category is read per call, since its reason
# names the tool.
tool_permission := {"action": "block", "reason": changed_reason} if {
	input.tool.changed == true
} else := {"action": "block", "reason": sprintf("tool %q is blocked: %s", [input.tool.name, concat("; ", table_problems)])} if {
	input.tool.name
	table_has_problems
} else := permission if {
	permission := server_tool_entry_permissions[input.server][input.tool.name]
} else := permission if {
	permission := tool_entry_permissions[input.tool.name]
} else := entry_permission(found) if {
	found := category_entry
} else := {"action": "block", "reason": no_entry_reason} if {
	input.tool.name
}

changed_reason := sprintf(
	"the definition of tool %q changed since an operator accepted it; it stays blocked until an operator reviews and accepts it again (mcpgate tools show --server %s --tool %s, then mcpgate tools accept with --hash)",
	[input.tool.name, object.get(input, "server", ""), input.tool.name],
)

no_entry_reason := sprintf(
	"tool %q is a %s tool, and the permissions table sets nothing for %s tools",
	[input.tool.name, category_label, category_label],
) if {
	input.tool.category in categories
} else := sprintf("tool %q has no known category and no entry in the permissions table", [input.tool.name])

# category_label is the tool's category as prose: "read-only", "write",
# "destructive".
category_label := replace(input.tool.category, "_", "-")

# server_section is this server's section of the table, when it has one.
server_section := data.mcp.permissions.servers[input.server]

# tool_entry_permissions are the permissions of the table's entries for
# tools on every server, by tool name.
tool_entry_permissions := {name: entry_permission({
	"entry": entry,
	"where": sprintf("tools[%q]", [name]),
	"names_tool": true,
	"on_server": false,
	"tool": name,
}) |
	some name, entry in data.mcp.permissions.tools
}

# server_tool_entry_permissions are the permissions of the entries for
# tools in each server's section, by server and tool name.
server_tool_entry_permissions := {server: {name: entry_permission({
	"entry": entry,
	"where": sprintf("servers[%q].tools[%q]", [server, name]),
	"names_tool": true,
	"on_server": true,
	"tool": name,
	"server": server,
}) |
	some name, entry in section.tools
} |
	some server, section in data.mcp.permissions.servers
}

# category_entry is the entry for the tool's category that applies to it,
# on this server or on every server, where in the table it is, and the
# tool it is read for.
category_entry := {
	"entry": entry,
	"where": sprintf("servers[%q].%s", [input.server, input.tool.category]),
	"names_tool": false,
	"on_server": true,
	"tool": input.tool.name,
	"server": input.server,
	"label": category_label,
} if {
	input.tool.category in categories
	entry := server_section[input.tool.category]
} else := {
	"entry": entry,
	"where": input.tool.category,
	"names_tool": false,
	"on_server": false,
	"tool": input.tool.name,
	"label": category_label,
} if {
	input.tool.category in categories
	entry := data.mcp.permissions[input.tool.category]
}

# entry_permission reads the entry found: an action, or an object with an
# action and optionally a reason (which then replaces the generated one)
# and, for needs_approval, approvers (who may approve, as a decision's
# approvers). Anything else blocks, with a reason that says what is wrong.
entry_permission(found) := {"action": found.entry, "reason": entry_reason(found, found.entry)} if {
	is_string(found.entry)
	found.entry in actions
} else := object.union(
	{"action": found.entry.action, "reason": object.get(found.entry, "reason", entry_reason(found, found.entry.action))},
	entry_approvers(found.entry),
) if {
	valid_object_entry(found.entry)
} else := {"action": "block", "reason": sprintf(
	"tool %q is blocked: the permissions entry %s is %s, want allow, needs_approval, block, or {\"action\": ..., \"reason\": ..., \"approvers\": [...]} (approvers with needs_approval only)",
	[found.tool, found.where, json.marshal(found.entry)],
)}

# valid_object_entry: entry is a well-formed entry written as an object:
# an action, and optionally a reason and (with needs_approval) approvers.
valid_object_entry(entry) if {
	is_object(entry)
	entry.action in actions
	every key, _ in entry {
		key in entry_keys
	}
	valid_entry_reason(entry)
	valid_entry_approvers(entry)
}

valid_entry_reason(entry) if not "reason" in object.keys(entry)

valid_entry_reason(entry) if is_string(entry.reason)

valid_entry_approvers(entry) if not "approvers" in object.keys(entry)

valid_entry_approvers(entry) if {
	entry.action == "needs_approval"
	is_array(entry.approvers)
	every approver in entry.approvers {
		is_string(approver)
	}
}

# entry_approvers is the approvers member a decision takes from an entry.
entry_approvers(entry) := {"approvers": entry.approvers} if {
	count(object.get(entry, "approvers", [])) > 0
} else := {}

entry_reason(found, action) := sprintf("tool %q is set to %s%s", [found.tool, action, server_note(found)]) if {
	found.names_tool
} else := sprintf(
	"tool %q is a %s tool, and %s tools are set to %s%s",
	[found.tool, found.label, found.label, action, server_note(found)],
)

server_note(found) := sprintf(" on server %q", [found.server]) if {
	found.on_server
} else := ""

# table_problems says what is wrong with the parts of the table a decision
# on this tool reads: the table itself and this server's section. Entries
# are checked where they are used, by entry_permission. Both kinds of
# problems read no input: they are found once per loaded policy, and a
# call only looks its server up.
table_problems := table_own_problems | server_problems

# table_has_problems: table_problems is not empty.
table_has_problems if count(table_own_problems) > 0

table_has_problems if input.server in servers_with_problems

# servers_with_problems are the servers whose section has problems.
servers_with_problems := {server | some server, problems in server_section_problems; count(problems) > 0}

default server_problems := set()

server_problems := server_section_problems[input.server]

# table_own_problems are the problems of the table itself.
table_own_problems contains "no permissions table (data.mcp.permissions) is configured" if {
	not data.mcp.permissions
}

table_own_problems contains sprintf("the permissions table is %s, want an object", [json.marshal(table)]) if {
	table := data.mcp.permissions
	not is_object(table)
}

table_own_problems contains sprintf("the permissions table has an unknown member %q (want %s)", [key, concat(", ", table_keys)]) if {
	is_object(data.mcp.permissions)
	some key, _ in data.mcp.permissions
	not key in table_keys
}

table_own_problems contains sprintf("the permissions table's %s is %s, want an object", [key, json.marshal(section)]) if {
	some key in {"tools", "servers"}
	section := data.mcp.permissions[key]
	not is_object(section)
}

# server_section_problems are the problems of each server's section of
# the table, by server name.
server_section_problems := {server: section_problems(server, section) |
	some server, section in data.mcp.permissions.servers
}

section_problems(server, section) := (({sprintf("the permissions table's section for server %q is %s, want an object", [server, json.marshal(section)]) |
	not is_object(section)
} | {sprintf("the permissions table's section for server %q has an unknown member %q (want %s)", [server, key, concat(", ", server_section_keys)]) |
	is_object(section)
	some key, _ in section
	not key in server_section_keys
}) | {sprintf("the permissions table's tools for server %q is %s, want an object", [server, json.marshal(tools)]) |
	tools := section.tools
	not is_object(tools)
})

# METADATA
# title: feature permission
# scope: document
# description: |
#   data.mcp.feature_permission: what the permissions table says about a
#   request that reads a server's resources (resources/list,
#   resources/templates/list, resources/read, resources/subscribe,
#   resources/unsubscribe, and completion/complete of a resource
#   template's argument) or prompts (prompts/list, prompts/get, and
#   completion/complete of a prompt's argument); a 2026-07-28
#   subscriptions/listen naming resources
#   (notifications.resourceSubscriptions) counts as resources/subscribe.
#   The table's "resources" and "prompts" entries (allow or block) apply, for every server and per
#   server; without one, the feature follows the read_only entry, since
#   resources and prompts only ever read: an organization that blocks
#   read-only tools blocks reading through resources and prompts too. A
#   read_only of needs_approval blocks them (the gateway holds tool calls
#   alone), and so does a feature's own needs_approval.
#
#   For a request on server S the first entry found wins:
#   servers[S][feature], [feature], servers[S].read_only, read_only.
#   Nothing found blocks, and so does anything malformed on the way.
default feature_permission := {"action": "block", "reason": "no feature permission applies to this message"}

feature_permission := {"action": "block", "reason": sprintf("%s is blocked: %s", [input.method, concat("; ", table_problems)])} if {
	feature
	table_has_problems
} else := feature_entry_permission(found) if {
	found := feature_entry
} else := {"action": "block", "reason": sprintf(
	"%s reads the server's %s, and the permissions table sets nothing for %s (nor for read-only tools, which they follow without an entry of their own)",
	[input.method, feature, feature],
)} if {
	feature
}

# The requests that read a server's resources, and its prompts.
resource_methods := {"resources/list", "resources/templates/list", "resources/read", "resources/subscribe", "resources/unsubscribe"}

prompt_methods := {"prompts/list", "prompts/get"}

# feature is what the request reads: "resources" or "prompts"; undefined
# for any other request (a completion of anything but a prompt's or a
# resource template's argument among them). A 2026-07-28
# subscriptions/listen that names resources to hear of (what
# resources/subscribe did before) reads resources; one that asks for the
# lists' changes alone is a protocol message.
feature := "resources" if {
	input.method in resource_methods
} else := "resources" if {
	input.method == "subscriptions/listen"
	subscriptions := object.get(input, ["params", "notifications", "resourceSubscriptions"], null)
	not subscriptions in {null, []}
} else := "prompts" if {
	input.method in prompt_methods
} else := "resources" if {
	input.method == "completion/complete"
	input.params.ref.type == "ref/resource"
} else := "prompts" if {
	input.method == "completion/complete"
	input.params.ref.type == "ref/prompt"
}

# feature_entry is the entry that applies to the request's feature, where
# in the table it is, and whether it is the read_only entry it follows.
feature_entry := {"entry": entry, "where": sprintf("servers[%q].%s", [input.server, feature]), "follows": false, "on_server": true} if {
	entry := server_section[feature]
} else := {"entry": entry, "where": feature, "follows": false, "on_server": false} if {
	entry := data.mcp.permissions[feature]
} else := {"entry": entry, "where": sprintf("servers[%q].read_only", [input.server]), "follows": true, "on_server": true} if {
	feature
	entry := server_section.read_only
} else := {"entry": entry, "where": "read_only", "follows": true, "on_server": false} if {
	feature
	entry := data.mcp.permissions.read_only
}

# feature_entry_permission reads the entry found: allow or block, as a
# string or an object with an action and optionally a reason (which then
# replaces the generated one); the read_only entry it follows is read as
# a tool entry, and only its action counts. needs_approval blocks: the
# gateway holds tool calls alone. Anything malformed blocks, with a reason
# that says what is wrong.
feature_entry_permission(found) := {"action": "block", "reason": sprintf(
	"%s is blocked: the permissions entry %s is %s, want %s",
	[input.method, found.where, json.marshal(found.entry), feature_entry_want(found)],
)} if {
	not valid_feature_entry(found)
} else := {"action": "block", "reason": feature_entry_reason(found, "needs_approval", ", and the gateway holds only tool calls for approval: set resources and prompts to allow or block")} if {
	feature_entry_action(found.entry) == "needs_approval"
} else := {"action": found.entry.action, "reason": found.entry.reason} if {
	not found.follows
	is_string(found.entry.reason)
} else := {"action": action, "reason": feature_entry_reason(found, action, "")} if {
	action := feature_entry_action(found.entry)
}

# valid_feature_entry: the entry found is well-formed: an action; or, as a
# feature's own entry, an object of an action and optionally a reason; or,
# as the read_only entry it follows, any well-formed tool entry.
valid_feature_entry(found) if {
	is_string(found.entry)
	found.entry in actions
}

valid_feature_entry(found) if {
	not found.follows
	is_object(found.entry)
	found.entry.action in actions
	every key, _ in found.entry {
		key in {"action", "reason"}
	}
	valid_entry_reason(found.entry)
}

valid_feature_entry(found) if {
	found.follows
	valid_object_entry(found.entry)
}

feature_entry_want(found) := "allow, needs_approval, block, or {\"action\": ..., \"reason\": ..., \"approvers\": [...]} (approvers with needs_approval only)" if {
	found.follows
} else := "allow or block, or {\"action\": ..., \"reason\": ...}"

# feature_entry_action is a well-formed entry's action.
feature_entry_action(entry) := entry if {
	is_string(entry)
} else := entry.action

feature_entry_reason(found, action, note) := sprintf(
	"%s reads the server's %s, which are set to %s%s%s",
	[input.method, feature, action, feature_server_note(found), note],
) if {
	not found.follows
} else := sprintf(
	"%s reads the server's %s, which follow read-only tools, set to %s%s%s",
	[input.method, feature, action, feature_server_note(found), note],
)

feature_server_note(found) := sprintf(" on server %q", [input.server]) if {
	found.on_server
} else := ""

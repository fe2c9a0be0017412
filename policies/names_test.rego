package mcp_names_test

import rego.v1

import data.mcp

message(method, params) := {"kind": "request", "method": method, "params": params}

test_prompt_name_of_every_door if {
	every case in [
		[message("prompts/get", {"name": "quarterly"}), "quarterly"],
		[message("completion/complete", {"ref": {"type": "ref/prompt", "name": "quarterly"}, "argument": {"name": "q", "value": "1"}}), "quarterly"],
	] {
		mcp.prompt_name == case[1] with input as case[0]
	}
}

test_prompt_name_undefined_elsewhere if {
	every m in [
		message("tools/call", {"name": "quarterly", "arguments": {}}),
		message("completion/complete", {"ref": {"type": "ref/resource", "uri": "file:///{x}"}, "argument": {"name": "x", "value": "1"}}),
		message("prompts/list", {}),
	] {
		not mcp.prompt_name with input as m
	}
}

test_resource_uris_of_every_door if {
	every case in [
		[message("resources/read", {"uri": "secret://db"}), {"secret://db"}],
		[message("resources/subscribe", {"uri": "secret://db"}), {"secret://db"}],
		[message("resources/unsubscribe", {"uri": "secret://db"}), {"secret://db"}],
		[message("completion/complete", {"ref": {"type": "ref/resource", "uri": "secret://{name}"}, "argument": {"name": "name", "value": "d"}}), {"secret://{name}"}],
		[message("subscriptions/listen", {"notifications": {"resourceSubscriptions": ["secret://db", "file:///a"]}}), {"secret://db", "file:///a"}],
		[message("subscriptions/listen", {"notifications": {"resourceSubscriptions": "secret://db"}}), {"secret://db"}],
		[message("subscriptions/listen", {"notifications": {"toolsListChanged": true}}), set()],
		[message("subscriptions/listen", {"notifications": {"resourceSubscriptions": null}}), set()],
		[message("subscriptions/listen", {"notifications": {"resourceSubscriptions": {"secret://db": true}}}), {{"secret://db": true}}],
		[message("tools/call", {"name": "read", "arguments": {"uri": "secret://db"}}), set()],
		[message("resources/list", {}), set()],
	] {
		mcp.resource_uris == case[1] with input as case[0]
	}
}

# An organization's allow-list on resources, written with the helpers,
# refuses a blocked resource at every door.
test_allow_list_closes_every_door if {
	rule_blocks := {m |
		some m in [
			message("resources/read", {"uri": "secret://db"}),
			message("resources/subscribe", {"uri": "secret://db"}),
			message("completion/complete", {"ref": {"type": "ref/resource", "uri": "secret://{name}"}, "argument": {"name": "name", "value": "d"}}),
			message("subscriptions/listen", {"notifications": {"resourceSubscriptions": ["secret://db"]}}),
		]
		some uri in mcp.resource_uris with input as m
		not startswith(uri, "file:///public/")
	}
	count(rule_blocks) == 4
}

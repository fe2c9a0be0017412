# Reading which prompt or resources a message names, whatever its method.
#
#   A prompt is named by prompts/get and by the completion of its
#   arguments (completion/complete, ref/prompt); a resource by
#   resources/read, resources/subscribe and resources/unsubscribe, by the
#   completion of its URI template's arguments (ref/resource), and by a
#   subscriptions/listen that asks to hear of it. A rule on
#   input.params.name or input.params.uri alone judges one of those
#   doors and leaves the others open; these read them all:
#
#     block contains "the quarterly prompt is for finance" if {
#         mcp.prompt_name == "quarterly"
#         not "finance" in input.user.claims.groups
#     }
#
#     block contains sprintf("resource %q is not public", [uri]) if {
#         some uri in mcp.resource_uris
#         not startswith(uri, "file:///public/")
#     }
#
#   Servers resolve URIs their own way (a template may match a spelling
#   its handler decodes: secret://d%62 for secret://db), so rules on
#   resources are best written as allow-lists, as above.
package mcp

import rego.v1

# prompt_name is the name of the prompt the message names: the name of a
# prompts/get, the prompt whose argument a completion/complete completes.
# Undefined for any other message.
prompt_name := input.params.name if {
	input.method == "prompts/get"
} else := input.params.ref.name if {
	input.method == "completion/complete"
	input.params.ref.type == "ref/prompt"
}

# resource_uris is the set of the resources the message names: the uri of
# a resources/read, resources/subscribe or resources/unsubscribe; the URI
# template whose argument a completion/complete completes; the resources
# a subscriptions/listen asks to hear of (its members as they are, so an
# allow-list refuses a member that is no URI). Empty for any other
# message.
default resource_uris := set()

resource_uris := {input.params.uri} if {
	input.method in {"resources/read", "resources/subscribe", "resources/unsubscribe"}
} else := {input.params.ref.uri} if {
	input.method == "completion/complete"
	input.params.ref.type == "ref/resource"
} else := {uri | some uri in input.params.notifications.resourceSubscriptions} if {
	input.method == "subscriptions/listen"
	is_array(input.params.notifications.resourceSubscriptions)
} else := {input.params.notifications.resourceSubscriptions} if {
	# Any other form (the gateway refuses all but an array of strings;
	# `mcpgate policy eval` may be given one): as it is, so that an
	# allow-list of URIs does not pass what it cannot read.
	input.method == "subscriptions/listen"
	not input.params.notifications.resourceSubscriptions in {null, []}
}

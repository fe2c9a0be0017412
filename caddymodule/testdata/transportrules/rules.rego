# The organization's rules that the transport tests add to the shipped
# library (../../policies): what a server may ask a client, and what a
# retried multi-round-trip call may carry, and which resources a client
# may read (an allow-list, as policy.md advises).
package mcp

import data.mcp
import rego.v1

block contains "sampling that asks for secrets is blocked" if {
	input.direction == "server_to_client"
	input.method == "sampling/createMessage"
	contains(lower(json.marshal(input.params.messages)), "secret")
}

block contains "elicitation of passwords is blocked" if {
	input.direction == "server_to_client"
	input.method == "elicitation/create"
	contains(lower(input.params.message), "password")
}

block contains "the user declined, so the call may not go on" if {
	input.method == "tools/call"
	some response in input.params.inputResponses
	response.action == "decline"
}

block contains "url elicitation only for clients that declared it" if {
	input.direction == "server_to_client"
	input.method == "elicitation/create"
	input.params.mode == "url"
	not input.client.capabilities.elicitation.url
}

block contains sprintf("resource %q is not public", [uri]) if {
	some uri in mcp.resource_uris
	not startswith(uri, "file:///public/")
}

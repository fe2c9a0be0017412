# The organization's rules that the transport tests add to the shipped
# library (../../policies): what a server may ask a client, and what a
# retried multi-round-trip call may carry.
package mcp

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

# The filesystem server asks its client for roots as a session starts, and
# replaces the folders it was started with by the ones listed: a client
# could widen its reach beyond ./examples/stdio/shared. The gateway
# refuses that request on the client's behalf, so the server keeps its own
# folders.
package mcp

import rego.v1

block contains "the filesystem server keeps the folders it was started with: it may not ask its client for roots" if {
	input.server == "files"
	input.direction == "server_to_client"
	input.method == "roots/list"
}

# A rule for TestRefusedServerRequest: servers may not ask their clients
# for roots.
package mcp

import rego.v1

block contains "servers may not ask for roots here" if {
	input.direction == "server_to_client"
	input.method == "roots/list"
}

# Per-user rules on top of the permissions table: only members of the
# eng-admins group (a claim of the caller's verified token) may call
# destructive tools, and nobody outside eng may change anything, on the
# "engineering" server (rules name the servers they govern).
package mcp

import rego.v1

caller_groups := object.get(input, ["user", "claims", "groups"], [])

block contains "only members of eng-admins may call destructive tools" if {
	input.server == "engineering"
	input.tool.category == "destructive"
	not "eng-admins" in caller_groups
}

block contains "only members of eng may call write tools" if {
	input.server == "engineering"
	input.tool.category == "write"
	not "eng" in caller_groups
	not "eng-admins" in caller_groups
}

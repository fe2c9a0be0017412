# Per-user decisions for the identity tests: everyone may echo; only
# members of eng-admins may delete issues.
package mcp

import rego.v1

default decision := {"action": "block", "reason": "not allowed"}

decision := {"action": "allow", "reason": "protocol"} if input.method != "tools/call"

decision := {"action": "allow", "reason": sprintf("echo for %s", [input.user.id])} if input.tool.name == "echo"

decision := {"action": "allow", "reason": "eng-admins may delete"} if {
	input.tool.name == "delete_issue"
	"eng-admins" in input.user.claims.groups
}

decision := {"action": "block", "reason": sprintf("%s is not in eng-admins", [input.user.id])} if {
	input.tool.name == "delete_issue"
	not "eng-admins" in input.user.claims.groups
}

# A policy for the binding tests: protocol messages pass, and every tool
# call is refused with a reason naming input.server, so a test can see
# which server name the gateway gave the policy.
package mcp

import rego.v1

decision := {"action": "allow", "reason": "protocol"} if input.method != "tools/call"

decision := {"action": "block", "reason": sprintf("server is %s", [input.server])} if input.method == "tools/call"

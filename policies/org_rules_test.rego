# An organization's own rules, as a security team would write them in its
# own file, for mcp_test.rego. They only speak for server "org-rules-test",
# so they leave every other test (and example) alone; being a _test.rego
# file, the gateway never loads them.
package mcp

import rego.v1

block contains sprintf("repository %q is not one of ours", [input.tool.arguments.repo]) if {
	input.server == "org-rules-test"
	input.tool.name == "push"
	not startswith(input.tool.arguments.repo, "acme/")
}

block contains "pushing to main is done by the release process" if {
	input.server == "org-rules-test"
	input.tool.name == "push"
	input.tool.arguments.branch == "main"
}

needs_approval contains "pushes outside working hours are reviewed" if {
	input.server == "org-rules-test"
	input.tool.name == "push"
	input.request.headers["x-after-hours"] == "1"
}

needs_approval contains "every prompt on this server is reviewed" if {
	input.server == "org-rules-test"
	input.method == "prompts/get"
}

# A rule that tries to widen: the library reads no "allow" set, so it
# changes nothing.
allow contains "everything goes" if input.server == "org-rules-test"

# Reading a call's arguments as upstreams read them.
#
#   input.tool.arguments.repo sees only an argument named exactly "repo",
#   but an upstream may match argument names more loosely: Go's
#   encoding/json ignores case, and servers trim or normalise names. A
#   rule on input.tool.arguments.repo would not see "Repo", "REPO" or
#   "repo " that such an upstream reads as repo. argument reads an
#   argument as they do:
#
#     repo := mcp.argument(input.tool, "repo")
#
#   The gateway refuses calls in which two argument names fold alike, so
#   one name can only mean one argument.
package mcp

import rego.v1

# argument is the value of the argument of tool (input.tool) named name,
# however the call spells it: input.tool.argument_names maps every name,
# folded (lower case, Unicode compatibility forms, no surrounding space),
# to the name as sent. Write name folded: ASCII letters in lower case
# (lowercasing and trimming is the whole fold for ASCII, and is done
# here); other letters in their folded form ("strasse" for "straße"),
# which lower cannot give. Undefined when the call has no such argument.
argument(tool, name) := tool.arguments[tool.argument_names[lower(trim_space(name))]]

# argument_member is the value of the member of object (an argument's value, or a
# member's, at any depth) named name, in any case and with surrounding
# space, as upstreams read nested names:
#
#   owner := mcp.argument_member(mcp.argument(input.tool, "filter"), "owner")
#
# Lowercasing and trimming fold nested names fully: the gateway refuses
# calls with a nested name that full folding reads otherwise ("\u017fort",
# fullwidth letters), and with two nested names that fold alike. Undefined
# when object has no such member.
argument_member(object, name) := value if {
	some key, value in object
	is_string(key)
	lower(trim_space(key)) == lower(trim_space(name))
}

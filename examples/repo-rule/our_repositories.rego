# An organization's own rule, beside the shipped library: on server github,
# a tool that changes a repository may only change one of ours. It can only
# make decisions stricter; the permissions table (permissions.yaml) still
# decides everything else.
package mcp

import rego.v1

import data.mcp

our_organization := "acme"

# Tools that change a repository, whatever their annotations say; any
# other tool that is not read-only counts too.
repository_changes := {
	"create_or_update_file",
	"push_files",
	"delete_file",
	"create_branch",
	"create_pull_request",
	"update_pull_request",
	"merge_pull_request",
	"create_issue",
	"update_issue",
	"add_issue_comment",
	"create_release",
}

changes_a_repository if input.tool.name in repository_changes

changes_a_repository if {
	input.tool
	input.tool.category != "read_only"
}

# repository_owners are the owners a call names: its owner argument, and
# the part before the slash of a repo or repository argument written
# "owner/name". The upstream could read either, so every one must be ours.
# mcp.argument reads them however the call spells their names ("Owner",
# "REPO ", ...), as an upstream that matches names loosely would.
repository_owners contains lower(owner) if {
	owner := mcp.argument(input.tool, "owner")
	is_string(owner)
}

repository_owners contains json.marshal(owner) if {
	owner := mcp.argument(input.tool, "owner")
	not is_string(owner)
}

repository_owners contains lower(owner) if {
	some key in ["repo", "repository"]
	repo := mcp.argument(input.tool, key)
	is_string(repo)
	contains(repo, "/")
	owner := split(repo, "/")[0]
}

block contains sprintf("tool %q may only change repositories of %s, not of %q", [input.tool.name, our_organization, owner]) if {
	input.server == "github"
	changes_a_repository
	some owner in repository_owners
	owner != our_organization
}

# A repo or repository argument other than "name" or "owner/name" (more
# slashes, "." or ".." segments, backslashes, percent-encoding: a server
# building a URL path from it could be led to another owner's repository,
# acme/../../evil/widgets being evil/widgets, and so widgets\..\..\evil\widgets
# to a URL parser that takes a backslash for a slash) is refused whatever
# its first part says.
block contains sprintf("tool %q names the repository %q, which is not \"name\" or \"owner/name\"", [input.tool.name, repo]) if {
	input.server == "github"
	changes_a_repository
	some key in ["repo", "repository"]
	repo := mcp.argument(input.tool, key)
	is_string(repo)
	not plain_repository(repo)
}

# plain_repository: "name" or "owner/name", each part made of the
# characters GitHub allows in names (letters, digits, "-", "_", "."), and
# neither "." nor "..". An allowlist, not a list of what is refused: a
# URL parser reads more than "/" as a separator ("\\", "%2F").
plain_repository(repo) if {
	regex.match(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$`, repo)
	every part in split(repo, "/") {
		not part in {".", ".."}
	}
}

block contains sprintf("tool %q changes a repository but does not say whose (want an owner argument, or repo as \"owner/name\")", [input.tool.name]) if {
	input.server == "github"
	changes_a_repository
	count(repository_owners) == 0
}

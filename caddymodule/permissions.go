package caddymodule

import (
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/open-policy-agent/opa/v1/loader"

	"github.com/mcpgate/mcpgate/caddymodule/permissions"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// unmarshalPermissions parses a permissions block:
//
//	permissions {
//		read_only    allow
//		write        needs_approval [<approver>...]
//		destructive  block
//		tool <name>  <action> [<approver>...]
//		resources    allow|block
//		prompts      allow|block
//	}
func unmarshalPermissions(d *caddyfile.Dispenser) (*permissions.Table, error) {
	p := &permissions.Table{Tools: map[string]permissions.Entry{}}
	named := map[string]*permissions.Entry{
		"read_only": &p.ReadOnly, "write": &p.Write, "destructive": &p.Destructive,
		"resources": &p.Resources, "prompts": &p.Prompts,
	}
	seen := map[string]bool{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		args := d.RemainingArgs()
		if slices.Contains(args, "") {
			return nil, d.Errf("permissions: %s: an empty argument (an action, a name or an approver is required)", key)
		}
		switch key {
		case "read_only", "write", "destructive", "resources", "prompts":
			feature := key == "resources" || key == "prompts"
			switch {
			case feature && len(args) != 1:
				return nil, d.Errf("permissions: %s takes one action, allow or block", key)
			case len(args) < 1:
				return nil, d.Errf("permissions: %s takes an action, and approvers after needs_approval", key)
			case seen[key]:
				return nil, d.Errf("permissions: %s given twice", key)
			}
			seen[key] = true
			*named[key] = permissions.Entry{Action: policy.Action(args[0]), Approvers: args[1:]}
		case "tool":
			if len(args) < 2 {
				return nil, d.Errf("permissions: tool takes a name and an action, and approvers after needs_approval")
			}
			if _, dup := p.Tools[args[0]]; dup {
				return nil, d.Errf("permissions: tool %s given twice", args[0])
			}
			p.Tools[args[0]] = permissions.Entry{Action: policy.Action(args[1]), Approvers: args[2:]}
		default:
			return nil, d.Errf("permissions: unrecognized line %q (want read_only, write, destructive, tool, resources or prompts)", key)
		}
	}
	if err := p.Validate(); err != nil {
		return nil, d.Err(err.Error())
	}
	return p, nil
}

// tableNames are the names a handler's permissions table gives, for the
// checks made as its configuration starts: the approvers its entries name
// outside server sections, and those of each server's section, by server
// name.
type tableNames struct {
	approvers []string
	servers   map[string][]string
}

// approversFor returns the approvers the table names for calls on
// server, sorted and without repeats.
func (t tableNames) approversFor(server string) []string {
	approvers := slices.Concat(t.approvers, t.servers[server])
	slices.Sort(approvers)
	return slices.Compact(approvers)
}

// permissionsNames returns the names the handler's permissions table
// gives: the configured table's, or else the one in the data files of the
// policy's paths (data.mcp.permissions), which alone may have server
// sections. A table from a bundle arrives only once the gateway runs, and
// one made by Rego rules is never data: neither is checked.
func (h *Handler) permissionsNames(paths []string) (tableNames, error) {
	if h.Permissions != nil {
		return tableNames{approvers: h.Permissions.Approvers()}, nil
	}
	if len(paths) == 0 {
		return tableNames{}, nil
	}
	// The engine has loaded the same files (a policy that does not load
	// never gets here); they are read again for their data alone, the
	// Rego modules left unparsed.
	policyFiles := policy.LoadFilter(false)
	dataFiles := func(path string, info fs.FileInfo, depth int) bool {
		return policyFiles(path, info, depth) || !info.IsDir() && filepath.Ext(info.Name()) == ".rego"
	}
	loaded, err := loader.NewFileLoader().Filtered(paths, dataFiles)
	if err != nil {
		return tableNames{}, fmt.Errorf("reading the permissions table in the policy data of %s: %w", strings.Join(paths, ", "), err)
	}
	table, _ := dataMember(loaded.Documents, "mcp", "permissions").(map[string]any)
	names := tableNames{approvers: sectionApprovers(table), servers: map[string][]string{}}
	servers, _ := table["servers"].(map[string]any)
	for _, server := range slices.Sorted(maps.Keys(servers)) {
		section, _ := servers[server].(map[string]any)
		names.servers[server] = sectionApprovers(section)
	}
	return names, nil
}

// dataMember returns the member of data at path, or nil.
func dataMember(data any, path ...string) any {
	for _, name := range path {
		object, ok := data.(map[string]any)
		if !ok {
			return nil
		}
		data = object[name]
	}
	return data
}

// sectionApprovers returns the approvers the entries of a table or of a
// server's section name, as the shipped library reads them (an entry is
// an action, or an object whose "approvers" is an array of strings); what
// is malformed names none (the library blocks the calls it decides).
func sectionApprovers(section map[string]any) []string {
	entries := []any{section["read_only"], section["write"], section["destructive"]}
	tools, _ := section["tools"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(tools)) {
		entries = append(entries, tools[name])
	}
	var approvers []string
	for _, entry := range entries {
		list, _ := dataMember(entry, "approvers").([]any)
		for _, approver := range list {
			if name, ok := approver.(string); ok {
				approvers = append(approvers, name)
			}
		}
	}
	return approvers
}

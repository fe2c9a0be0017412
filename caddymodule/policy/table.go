package policy

import (
	"fmt"
	"maps"
	"slices"
)

// tableNames are the names a permissions table in data
// (data.mcp.permissions, from the configuration or the policy's own data
// files) gives tools, servers and approvers: tools[name] and the
// approvers of its entries, and servers[S] with its section's. A tool or
// server the upstream does not use applies to no call; an approver nobody
// can hold lets no call it is asked for run.
type tableNames struct {
	// all are the names the table's every-server entries give.
	all sectionNames
	// servers are the servers the table has sections for, each with the
	// names its section gives.
	servers map[string]sectionNames
}

// sectionNames are the names the entries of a table, or of a server's
// section of it, give: the tools named one by one, and the entries that
// name approvers.
type sectionNames struct {
	tools     []string
	approvers []TableApprovers
}

// TableApprovers are the approvers one entry of a permissions table
// names: any one of them may decide the calls it holds.
type TableApprovers struct {
	// Where is the entry in the table: write, tools["send_email"],
	// servers["tracker"].write, ...
	Where string
	// Approvers are the approvers it names, as written.
	Approvers []string
	// AnyServer is set for an entry of a tool on every server
	// (tools[name]) in the policy's own data, which a table shared by
	// several configurations may hold for a tool that only another's
	// server lists; never for the configuration's own table.
	AnyServer bool
}

// tableNamesOf reads the names a permissions table in data gives; none
// when data has no table, or only members of the wrong shape (which the
// library refuses on its own terms). shared says the table is the
// policy's own data (its files or bundle), which several configurations
// may share, rather than the configuration's (see
// TableApprovers.AnyServer).
func tableNamesOf(data map[string]any, shared bool) tableNames {
	found, _ := dataAt(data, []string{"mcp", "permissions"})
	table, _ := found.(map[string]any)
	names := tableNames{all: sectionNamesOf(table, "", shared)}
	if sections, ok := table["servers"].(map[string]any); ok {
		names.servers = make(map[string]sectionNames, len(sections))
		for server, section := range sections {
			object, _ := section.(map[string]any)
			names.servers[server] = sectionNamesOf(object, fmt.Sprintf("servers[%q].", server), false)
		}
	}
	return names
}

// sectionNamesOf reads the names a table, or a server's section (at
// where), gives, as the shipped library reads its entries (an action, or
// an object whose "approvers" is an array of strings); what is malformed
// names nothing (the library blocks the calls it decides). anyServer says
// its tools' entries are for tools on every server, in a table several
// configurations may share.
func sectionNamesOf(section map[string]any, where string, anyServer bool) sectionNames {
	tools, _ := section["tools"].(map[string]any)
	names := sectionNames{tools: slices.Sorted(maps.Keys(tools))}
	add := func(entry any, at string, anyServer bool) {
		object, _ := entry.(map[string]any)
		list, _ := object["approvers"].([]any)
		var approvers []string
		for _, approver := range list {
			if name, ok := approver.(string); ok {
				approvers = append(approvers, name)
			}
		}
		if len(approvers) > 0 {
			names.approvers = append(names.approvers, TableApprovers{Where: where + at, Approvers: approvers, AnyServer: anyServer})
		}
	}
	for _, category := range []string{"read_only", "write", "destructive"} {
		add(section[category], category, false)
	}
	for _, name := range names.tools {
		add(tools[name], fmt.Sprintf("tools[%q]", name), anyServer)
	}
	return names
}

// TableTools returns the tools the permissions table of the policy in
// force names one by one for server (data.mcp.permissions: tools, and
// servers[server].tools), sorted, each once: from the configuration or
// from the policy's own data, as it stands after the last reload.
func (e *Engine) TableTools(server string) []string {
	table := e.queries.Load().table
	tools := append(slices.Clone(table.all.tools), table.servers[server].tools...)
	slices.Sort(tools)
	return slices.Compact(tools)
}

// TableApprovers returns the entries of the permissions table of the
// policy in force that name approvers for calls on server (its
// every-server entries and server's section), each with its approvers.
func (e *Engine) TableApprovers(server string) []TableApprovers {
	table := e.queries.Load().table
	return slices.Concat(table.all.approvers, table.servers[server].approvers)
}

// TableServers returns the servers the permissions table of the policy in
// force has sections for (data.mcp.permissions.servers), sorted.
func (e *Engine) TableServers() []string {
	return slices.Sorted(maps.Keys(e.queries.Load().table.servers))
}

package caddymodule

import (
	"slices"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

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

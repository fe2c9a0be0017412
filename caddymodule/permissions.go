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
		case "read_only", "write", "destructive":
			if len(args) < 1 {
				return nil, d.Errf("permissions: %s takes an action, and approvers after needs_approval", key)
			}
			if seen[key] {
				return nil, d.Errf("permissions: %s given twice", key)
			}
			seen[key] = true
			entry := permissions.Entry{Action: policy.Action(args[0]), Approvers: args[1:]}
			switch key {
			case "read_only":
				p.ReadOnly = entry
			case "write":
				p.Write = entry
			default:
				p.Destructive = entry
			}
		case "resources", "prompts":
			if len(args) != 1 {
				return nil, d.Errf("permissions: %s takes one action, allow or block", key)
			}
			if seen[key] {
				return nil, d.Errf("permissions: %s given twice", key)
			}
			seen[key] = true
			if key == "resources" {
				p.Resources = permissions.Entry{Action: policy.Action(args[0])}
			} else {
				p.Prompts = permissions.Entry{Action: policy.Action(args[0])}
			}
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

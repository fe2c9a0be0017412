package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// Permissions is the organization's tool table: an action (allow,
// needs_approval or block) for each category of tools and for single tools.
// Per-tool entries win over categories; a category left unset blocks. The
// shipped Rego library reads it as data.mcp.permissions.
type Permissions struct {
	// ReadOnly is the action for tools annotated readOnlyHint: true.
	ReadOnly policy.Action `json:"read_only,omitempty"`
	// Write is the action for tools annotated readOnlyHint: false and
	// destructiveHint: false.
	Write policy.Action `json:"write,omitempty"`
	// Destructive is the action for every other tool, including tools
	// without annotations (the MCP defaults).
	Destructive policy.Action `json:"destructive,omitempty"`
	// Tools maps tool names to actions, overriding their category.
	Tools map[string]policy.Action `json:"tools,omitempty"`
}

// validate checks that every action is one the library knows.
func (p *Permissions) validate() error {
	check := func(what string, a policy.Action) error {
		switch a {
		case "", policy.ActionAllow, policy.ActionNeedsApproval, policy.ActionBlock:
			return nil
		}
		return fmt.Errorf("permissions: %s: action %q is not one of allow, needs_approval, block", what, a)
	}
	for what, a := range map[string]policy.Action{"read_only": p.ReadOnly, "write": p.Write, "destructive": p.Destructive} {
		if err := check(what, a); err != nil {
			return err
		}
	}
	for name, a := range p.Tools {
		if a == "" {
			return fmt.Errorf("permissions: tool %s: an action is required", name)
		}
		if err := check("tool "+name, a); err != nil {
			return err
		}
	}
	return nil
}

// data returns the table in the shape of data.mcp.permissions.
func (p *Permissions) data() map[string]any {
	table := map[string]any{}
	for key, a := range map[string]policy.Action{"read_only": p.ReadOnly, "write": p.Write, "destructive": p.Destructive} {
		if a != "" {
			table[key] = string(a)
		}
	}
	tools := make(map[string]any, len(p.Tools))
	for name, a := range p.Tools {
		tools[name] = string(a)
	}
	table["tools"] = tools
	return map[string]any{"mcp": map[string]any{"permissions": table}}
}

// unmarshalPermissions parses a permissions block:
//
//	permissions {
//		read_only    allow
//		write        needs_approval
//		destructive  block
//		tool <name>  <action>
//	}
func unmarshalPermissions(d *caddyfile.Dispenser) (*Permissions, error) {
	p := &Permissions{Tools: map[string]policy.Action{}}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		args := d.RemainingArgs()
		switch key {
		case "read_only", "write", "destructive":
			if len(args) != 1 {
				return nil, d.Errf("permissions: %s takes one action", key)
			}
			a := policy.Action(args[0])
			switch key {
			case "read_only":
				p.ReadOnly = a
			case "write":
				p.Write = a
			default:
				p.Destructive = a
			}
		case "tool":
			if len(args) != 2 {
				return nil, d.Errf("permissions: tool takes a name and an action")
			}
			if _, dup := p.Tools[args[0]]; dup {
				return nil, d.Errf("permissions: tool %s given twice", args[0])
			}
			p.Tools[args[0]] = policy.Action(args[1])
		default:
			return nil, d.Errf("permissions: unrecognized line %q (want read_only, write, destructive or tool)", key)
		}
	}
	if err := p.validate(); err != nil {
		return nil, d.Err(err.Error())
	}
	return p, nil
}

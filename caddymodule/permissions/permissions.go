// Package permissions is the organization's tool permissions table: what
// happens to calls of each category of tools and of single tools (allow,
// needs_approval with who may approve, or block), its validation, and its
// shape as the policy data the shipped Rego library reads
// (data.mcp.permissions).
package permissions

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// Table is the organization's tool table: what happens to calls of
// each category of tools and of single tools. Per-tool entries win over
// categories; a category left unset blocks. The shipped Rego library
// reads it as data.mcp.permissions.
type Table struct {
	// ReadOnly is for tools annotated readOnlyHint: true.
	ReadOnly Entry `json:"read_only,omitzero"`
	// Write is for tools annotated readOnlyHint: false and
	// destructiveHint: false.
	Write Entry `json:"write,omitzero"`
	// Destructive is for every other tool, including tools without
	// annotations (the MCP defaults).
	Destructive Entry `json:"destructive,omitzero"`
	// Tools maps tool names to their permission, overriding their
	// category.
	Tools map[string]Entry `json:"tools,omitempty"`
	// Resources is for the requests that read the server's resources
	// (resources/list, resources/templates/list, resources/read,
	// resources/subscribe and unsubscribe, completion/complete of a
	// resource template's argument): allow or block. Unset: as ReadOnly
	// says (needs_approval then blocks them: only tool calls are held).
	Resources Entry `json:"resources,omitzero"`
	// Prompts is for prompts/list, prompts/get and completion/complete of
	// a prompt's argument: allow or block. Unset: as ReadOnly says.
	Prompts Entry `json:"prompts,omitzero"`
}

// Entry is one entry of the tool table: an action (allow,
// needs_approval or block), and for needs_approval who may approve. In
// JSON it is the action alone ("allow") or an object ({"action":
// "needs_approval", "approvers": ["caller"]}).
type Entry struct {
	// Action is allow, needs_approval or block.
	Action policy.Action `json:"action"`
	// Approvers name who may approve a needs_approval call: "caller"
	// (the person who made it, in their own client), "inbox",
	// "inbox:<user>", "group:<name>", "webhook", "admin" or
	// "admin:<name>". Empty: any reviewer.
	Approvers []string `json:"approvers,omitempty"`
}

// UnmarshalJSON reads an action alone or an object. Unknown and repeated
// members are refused: a misspelt "approvers" must not leave a table
// entry open to any reviewer.
func (p *Entry) UnmarshalJSON(data []byte) error {
	var action string
	if err := json.Unmarshal(data, &action); err == nil {
		*p = Entry{Action: policy.Action(action)}
		return nil
	}
	type object Entry
	if err := jsonv2.Unmarshal(data, (*object)(p), jsonv2.RejectUnknownMembers(true)); err != nil {
		return fmt.Errorf("permission: %w", err)
	}
	return nil
}

// UnmarshalJSON reads the table, refusing unknown and repeated members: a
// tool named twice must not leave one of its entries unread.
func (p *Table) UnmarshalJSON(data []byte) error {
	// A table decoded twice (a member repeated around it) is the last
	// one, never the two merged.
	*p = Table{}
	type table Table
	if err := jsonv2.Unmarshal(data, (*table)(p), jsonv2.RejectUnknownMembers(true)); err != nil {
		return fmt.Errorf("permissions: %w", err)
	}
	// An entry given without an action ("resources": "") is refused, not
	// taken for one left out: resources and prompts left out follow
	// read_only.
	var given map[string]jsontext.Value
	if err := jsonv2.Unmarshal(data, &given); err != nil {
		return fmt.Errorf("permissions: %w", err)
	}
	for name, entry := range p.namedEntries() {
		if _, ok := given[name]; ok && entry.Action == "" {
			return fmt.Errorf("permissions: %s: an action is required", name)
		}
	}
	return nil
}

// MarshalJSON writes the action alone when there are no approvers.
func (p Entry) MarshalJSON() ([]byte, error) {
	if len(p.Approvers) == 0 {
		return json.Marshal(string(p.Action))
	}
	type object Entry
	return json.Marshal(object(p))
}

// validate checks the action and the approvers.
func (p Entry) validate(what string) error {
	switch p.Action {
	case policy.ActionAllow, policy.ActionNeedsApproval, policy.ActionBlock:
	default:
		return fmt.Errorf("permissions: %s: action %q is not one of allow, needs_approval, block", what, p.Action)
	}
	if len(p.Approvers) > 0 && p.Action != policy.ActionNeedsApproval {
		return fmt.Errorf("permissions: %s: approvers go with needs_approval only", what)
	}
	for _, approver := range p.Approvers {
		if !approval.ValidPrincipal(approver) {
			return fmt.Errorf("permissions: %s: unknown approver %q (want caller, inbox, inbox:<user>, group:<name>, webhook, admin or admin:<name>)", what, approver)
		}
	}
	return nil
}

// data is the entry as data.mcp.permissions holds it.
func (p Entry) data() any {
	if len(p.Approvers) == 0 {
		return string(p.Action)
	}
	return map[string]any{"action": string(p.Action), "approvers": slices.Clone(p.Approvers)}
}

// categories returns the table's category entries by name.
func (p *Table) categories() map[string]Entry {
	return map[string]Entry{"read_only": p.ReadOnly, "write": p.Write, "destructive": p.Destructive}
}

// features returns the table's entries for resources and prompts by name.
func (p *Table) features() map[string]Entry {
	return map[string]Entry{"resources": p.Resources, "prompts": p.Prompts}
}

// namedEntries returns the table's entries that are members of their own
// (categories and features) by name.
func (p *Table) namedEntries() map[string]Entry {
	entries := p.categories()
	maps.Copy(entries, p.features())
	return entries
}

// Validate checks every entry: a known action, approvers only with
// needs_approval, and each approver a principal the gateway knows.
func (p *Table) Validate() error {
	for what, entry := range p.categories() {
		if entry.Action == "" && len(entry.Approvers) == 0 {
			continue
		}
		if err := entry.validate(what); err != nil {
			return err
		}
	}
	for name, entry := range p.Tools {
		if entry.Action == "" {
			return fmt.Errorf("permissions: tool %s: an action is required", name)
		}
		if err := entry.validate("tool " + name); err != nil {
			return err
		}
	}
	for what, entry := range p.features() {
		if entry.Action == "" && len(entry.Approvers) == 0 {
			continue
		}
		if entry.Action != policy.ActionAllow && entry.Action != policy.ActionBlock || len(entry.Approvers) > 0 {
			return fmt.Errorf("permissions: %s: want allow or block (only tool calls are held for approval), got %s", what, entry.describe())
		}
	}
	return nil
}

// describe writes the entry as a Caddyfile line's arguments.
func (p Entry) describe() string {
	return strings.Join(append([]string{string(p.Action)}, p.Approvers...), " ")
}

// Data returns the table as policy data, data.mcp.permissions.
func (p *Table) Data() map[string]any {
	table := map[string]any{}
	for key, entry := range p.namedEntries() {
		if entry.Action != "" {
			table[key] = entry.data()
		}
	}
	tools := make(map[string]any, len(p.Tools))
	for name, entry := range p.Tools {
		tools[name] = entry.data()
	}
	table["tools"] = tools
	return map[string]any{"mcp": map[string]any{"permissions": table}}
}

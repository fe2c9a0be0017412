// Package policy evaluates MCP messages against Rego policies with Open
// Policy Agent. It compiles a policy from files, built-in modules and data,
// or from an OPA bundle server, prepares its queries once per compile
// (reloading when watched files change or a new bundle is activated), and
// turns every evaluation into a Decision, failing closed: anything but a
// well-formed decision is a block.
package policy

import (
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/rego"
)

// Action is what a policy decided to do with a message.
type Action string

// The actions a decision may carry. Anything else is treated as ActionBlock.
const (
	ActionAllow         Action = "allow"
	ActionNeedsApproval Action = "needs_approval"
	ActionBlock         Action = "block"
)

// Decision is the result of evaluating one message: the policy's
// {"action": ..., "reason": ...} object.
type Decision struct {
	Action Action `json:"action"`
	Reason string `json:"reason,omitempty"`
	// Cached reports that the decision was recalled from the decision
	// cache rather than evaluated (see Options.CacheSize).
	Cached bool `json:"-"`
}

// errUndefined reports a decision query with no value, the usual result of a
// policy in which no rule matched and no default was given.
var errUndefined = errors.New("decision is undefined")

// parseDecision turns a query result into a Decision. Only a single object
// with a known action and an optional string reason is accepted; anything
// else is an error, which the caller turns into a block.
func parseDecision(rs rego.ResultSet) (Decision, error) {
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Decision{}, errUndefined
	}
	if len(rs) > 1 || len(rs[0].Expressions) > 1 {
		return Decision{}, fmt.Errorf("decision has %d results, want exactly one", len(rs))
	}
	obj, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("decision is %T, want an object with action and reason", rs[0].Expressions[0].Value)
	}
	for key := range obj {
		if key != "action" && key != "reason" {
			return Decision{}, fmt.Errorf("decision has unknown member %q", key)
		}
	}
	action, ok := obj["action"].(string)
	if !ok {
		return Decision{}, fmt.Errorf("decision action is %T, want a string", obj["action"])
	}
	var d Decision
	switch Action(action) {
	case ActionAllow, ActionNeedsApproval, ActionBlock:
		d.Action = Action(action)
	default:
		return Decision{}, fmt.Errorf("decision action %q is not one of allow, needs_approval, block", action)
	}
	if reason, present := obj["reason"]; present {
		s, ok := reason.(string)
		if !ok {
			return Decision{}, fmt.Errorf("decision reason is %T, want a string", reason)
		}
		d.Reason = s
	}
	return d, nil
}

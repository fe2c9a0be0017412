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

	"github.com/open-policy-agent/opa/v1/ast"
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
// {"action": ..., "reason": ..., "approvers": [...]} object.
type Decision struct {
	Action Action `json:"action"`
	Reason string `json:"reason,omitempty"`
	// Approvers name who may approve a needs_approval decision: "caller"
	// (the person who made the call, asked in their own client), or
	// reviewers ("inbox", "inbox:<user>", "group:<name>", "webhook",
	// "admin", "admin:<name>"). Empty: any reviewer. The policy package
	// checks only that they are strings; the gateway checks the names.
	Approvers []string `json:"approvers,omitempty"`
	// Cached reports that the decision was recalled from the decision
	// cache rather than evaluated (see Options.CacheSize).
	Cached bool `json:"-"`
	// Revision names the policy and data that decided (a hash of their
	// content), for audit records.
	Revision string `json:"-"`
}

// errUndefined reports a decision query with no value, the usual result of a
// policy in which no rule matched and no default was given.
var errUndefined = errors.New("decision is undefined")

// parseDecision turns a query result into a Decision. Only a single object
// with a known action and an optional string reason is accepted; anything
// else is an error, which the caller turns into a block. The result's value
// is OPA's own (the engine evaluates with termResults): a well-formed
// decision is read from it as it is, and anything else is first made a Go
// value, so that what is wrong with it is said alike whatever the policy
// gave.
func parseDecision(rs rego.ResultSet) (Decision, error) {
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Decision{}, errUndefined
	}
	if len(rs) > 1 || len(rs[0].Expressions) > 1 {
		return Decision{}, fmt.Errorf("decision has %d results, want exactly one", len(rs))
	}
	value := rs[0].Expressions[0].Value
	if term, ok := value.(*ast.Term); ok {
		if d, ok := wellFormedDecision(term.Value); ok {
			return d, nil
		}
		if obj, isObject := term.Value.(ast.Object); isObject {
			if approvers := obj.Get(memberApprovers); approvers != nil {
				if _, isSet := approvers.Value.(ast.Set); isSet {
					// ast.JSON would make it an array: refused as
					// the contract says, not read as another type.
					return Decision{}, errors.New("decision approvers is a set, want an array of strings")
				}
			}
		}
		var err error
		if value, err = ast.JSON(term.Value); err != nil {
			return Decision{}, fmt.Errorf("reading the decision: %w", err)
		}
	}
	return decisionOf(value)
}

// termResults makes an evaluation's results OPA's own values, left as
// they are rather than made Go values: parseDecision reads them.
var termResults = rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })

// Decision members, as OPA values.
var (
	memberAction    = ast.StringTerm("action")
	memberReason    = ast.StringTerm("reason")
	memberApprovers = ast.StringTerm("approvers")
)

// wellFormedDecision reads a decision that is in every way what
// decisionOf accepts: an object with a known action, a string reason if
// any, and, with needs_approval, an array of strings as approvers if any.
// ok is false for anything else, which decisionOf then refuses.
func wellFormedDecision(value ast.Value) (d Decision, ok bool) {
	obj, isObject := value.(ast.Object)
	if !isObject {
		return Decision{}, false
	}
	// An action that is not a string reads as "", which is refused.
	action, _ := termString(obj.Get(memberAction))
	switch Action(action) {
	case ActionAllow, ActionNeedsApproval, ActionBlock:
		d.Action = Action(action)
	default:
		return Decision{}, false
	}
	members := 1
	if reason := obj.Get(memberReason); reason != nil {
		var isString bool
		if d.Reason, isString = termString(reason); !isString {
			return Decision{}, false
		}
		members++
	}
	if approvers := obj.Get(memberApprovers); approvers != nil {
		if d.Approvers, ok = approversOf(approvers.Value); !ok || d.Action != ActionNeedsApproval {
			return Decision{}, false
		}
		members++
	}
	return d, obj.Len() == members
}

// termString returns the string a term holds, if it is one.
func termString(term *ast.Term) (string, bool) {
	if term == nil {
		return "", false
	}
	s, ok := term.Value.(ast.String)
	return string(s), ok
}

// approversOf reads an array of strings.
func approversOf(value ast.Value) ([]string, bool) {
	list, isArray := value.(*ast.Array)
	if !isArray {
		return nil, false
	}
	approvers := make([]string, 0, list.Len())
	for i := range list.Len() {
		approver, isString := list.Elem(i).Value.(ast.String)
		if !isString {
			return nil, false
		}
		approvers = append(approvers, string(approver))
	}
	return approvers, true
}

// decisionOf reads a decision made a Go value, and says what is wrong
// with anything but a well-formed one.
func decisionOf(value any) (Decision, error) {
	obj, ok := value.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("decision is %s, want an object with action and reason", jsonKind(value))
	}
	for key := range obj {
		if key != "action" && key != "reason" && key != "approvers" {
			return Decision{}, fmt.Errorf("decision has unknown member %q", key)
		}
	}
	action, ok := obj["action"].(string)
	if !ok {
		return Decision{}, fmt.Errorf("decision action is %s, want a string", jsonKind(obj["action"]))
	}
	var d Decision
	var err error
	switch Action(action) {
	case ActionAllow, ActionNeedsApproval, ActionBlock:
		d.Action = Action(action)
	default:
		return Decision{}, fmt.Errorf("decision action %q is not one of allow, needs_approval, block", action)
	}
	if reason, present := obj["reason"]; present {
		s, ok := reason.(string)
		if !ok {
			return Decision{}, fmt.Errorf("decision reason is %s, want a string", jsonKind(reason))
		}
		d.Reason = s
	}
	if approvers, present := obj["approvers"]; present {
		if d.Approvers, err = parseApprovers(d.Action, approvers); err != nil {
			return Decision{}, err
		}
	}
	return d, nil
}

// parseApprovers reads a decision's approvers: an array of strings, which
// only a needs_approval decision may carry.
func parseApprovers(action Action, value any) ([]string, error) {
	if action != ActionNeedsApproval {
		return nil, fmt.Errorf("decision action %q carries approvers, which only needs_approval may", action)
	}
	list, ok := value.([]any)
	if !ok {
		return nil, fmt.Errorf("decision approvers is %s, want an array of strings", jsonKind(value))
	}
	approvers := make([]string, 0, len(list))
	for _, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("decision approvers holds %s, want strings", jsonKind(item))
		}
		approvers = append(approvers, s)
	}
	return approvers, nil
}

// jsonKind names the JSON type of a value decoded from JSON (as OPA's
// results are), for errors that policy authors read: "a number", not the
// Go type that holds it.
func jsonKind(value any) string {
	switch value.(type) {
	case nil:
		return "null (or missing)"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return "a number"
	}
}

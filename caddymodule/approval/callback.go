package approval

import (
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
)

// ErrBadCallback: a decision callback's body is not a decision for the
// approval it was sent to.
var ErrBadCallback = errors.New("bad decision callback")

// The decisions a callback may carry.
const (
	// DecisionApprove approves the call.
	DecisionApprove = "approve"
	// DecisionDeny denies the call.
	DecisionDeny = "deny"
)

// CallbackDecision is the body of a decision callback.
type CallbackDecision struct {
	// ID is the approval decided; it must be the id in the callback's
	// URL, so that a signed decision decides that approval only.
	ID string `json:"id"`
	// Decision is "approve" or "deny".
	Decision string `json:"decision"`
	// Approver is who the sender says decided: recorded, never trusted.
	Approver string `json:"approver,omitempty"`
	// Reason is given to the client with a denial, and logged.
	Reason string `json:"reason,omitempty"`
}

// ParseCallback reads the body of a decision callback sent for approval
// id (the last segment of the callback's URL). It is as strict as the
// gateway's reading of MCP messages, so that it never reads a decision
// differently from its sender: a JSON object with no member beyond id,
// decision, approver and reason (names match exactly, so "Decision" is
// refused rather than read as decision), none given twice, valid UTF-8,
// nothing after it; id equal to the URL's; decision exactly "approve" or
// "deny". Every error wraps ErrBadCallback.
func ParseCallback(body []byte, id string) (CallbackDecision, error) {
	var d CallbackDecision
	if err := jsonv2.Unmarshal(body, &d, jsonv2.RejectUnknownMembers(true)); err != nil {
		return CallbackDecision{}, fmt.Errorf("%w: %w", ErrBadCallback, err)
	}
	switch {
	case d.ID == "":
		return CallbackDecision{}, fmt.Errorf("%w: id is required", ErrBadCallback)
	case d.ID != id:
		return CallbackDecision{}, fmt.Errorf("%w: id %q is not the approval %q the callback was sent to", ErrBadCallback, d.ID, id)
	case d.Decision != DecisionApprove && d.Decision != DecisionDeny:
		return CallbackDecision{}, fmt.Errorf("%w: decision %q is neither %s nor %s", ErrBadCallback, d.Decision, DecisionApprove, DecisionDeny)
	}
	return d, nil
}

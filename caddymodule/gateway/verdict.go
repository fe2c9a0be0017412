package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/display"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// CodeRefusedByPolicy is the JSON-RPC error code of the errors the gateway
// answers refused requests with (other than tools/call, which get an
// isError result): to clients, and to servers whose requests it refuses
// (see mcpmsg.CodeRefused).
const CodeRefusedByPolicy = mcpmsg.CodeRefused

// verdict is the policy's decision on one message.
type verdict struct {
	message  *mcpmsg.Message
	decision policy.Decision
	// input is what the policy decided on.
	input *policy.Input
	// toolHash names the definition of a tools/call's tool the policy
	// decided on (empty when the upstream did not list it).
	toolHash string
	// approvals is set when the gateway holds calls for approval.
	approvals bool
	// calledAs is the name a renamed tools/call's client called its tool
	// by (renameCalls); empty for a call not renamed.
	calledAs string
	// text, when set, is the whole refusal the client sees, in place of
	// the one the decision makes; code the JSON-RPC error code of a
	// refused request other than tools/call (default
	// CodeRefusedByPolicy).
	text string
	code int
	// rateLimited is set when a rate limit refused the message.
	rateLimited bool
	// policyDecision, once the gateway refused the message for another
	// cause than the policy's (refusedWith), is what the policy decided,
	// for the audit trail; nil otherwise.
	policyDecision *policy.Decision
	// span is the message's trace span, when traced; openSpan the span
	// itself until it ends (endMessageSpans), and evaluated how long the
	// decision took.
	span      trace.SpanContext
	openSpan  trace.Span
	evaluated time.Duration
	// outcome is what the audit trail records of a forwarded message
	// (default "forwarded"), and approval the approval that let it pass.
	outcome  string
	approval *approval.Approval
	// approvedFor is, of a call a person approved, the decision that
	// asked for the approval.
	approvedFor *policy.Decision
}

// allowed reports whether the message goes on to the upstream.
func (v verdict) allowed() bool {
	return v.decision.Action == policy.ActionAllow
}

// forwardsRequest reports whether the message is a request that goes on
// to the upstream: one whose answer the reply may carry.
func (v verdict) forwardsRequest() bool {
	return v.allowed() && v.message.Kind == mcpmsg.KindRequest
}

// approved is the verdict on a call that a person approved: from now on
// an allowed call, whose reply the gateway watches as any other's. The
// audit trail records the outcome (approved, confirmed) and the approval.
func (v verdict) approved(outcome string, a *approval.Approval) verdict {
	asked := v.decision
	v.decision = policy.Decision{Action: policy.ActionAllow, Reason: "approved", Revision: v.decision.Revision}
	v.outcome, v.approval, v.approvedFor = outcome, a, &asked
	return v
}

// refusedOutcome is what the audit trail records of a refused message.
func (v verdict) refusedOutcome() string {
	if v.rateLimited {
		return outcomeRateLimited
	}
	return outcomeRefused
}

// needsApproval reports whether the message is a tools/call the policy
// said needs approval.
func (v verdict) needsApproval() bool {
	return v.decision.Action == policy.ActionNeedsApproval && v.message.Tool != nil
}

// refusalText is the text the client (and, through it, the model and the
// person) sees for a message the gateway did not forward.
func refusalText(d policy.Decision, approvals bool) string {
	reason := shownReason(d.Reason)
	switch d.Action {
	case policy.ActionNeedsApproval:
		text := "This call needs approval, but no approval is configured on this gateway, so it was refused."
		if approvals {
			text = "This message needs approval, which the gateway asks for only for a tools/call sent alone over Streamable HTTP (not in a batch, nor over the legacy HTTP+SSE transport), so it was refused."
		}
		if reason != "" {
			text += " Policy: " + reason
		}
		return text
	default:
		if reason == "" {
			return "Blocked by policy."
		}
		return "Blocked by policy: " + reason
	}
}

// shownReason is a policy's reason as the gateway's own texts show it:
// a reason may quote what a caller or a server wrote, so what could act
// on the display is made visible (as the inbox and the webhooks show
// it), and it is bounded.
func shownReason(reason string) string {
	return display.Cut(display.Line(reason), maxShownReason)
}

// maxShownReason bounds, in bytes, the policy's reason a text shows.
const maxShownReason = 4000

// refusal is the text the client sees for the verdict's message, not
// forwarded. A message that needs approval is refused for where it came
// (a batch, HTTP+SSE, another method than tools/call) when the gateway
// could ask for that approval otherwise: reviewers are configured, or the
// caller may approve, which needs none.
func (v verdict) refusal() string {
	if v.text != "" {
		return v.text
	}
	return refusalText(v.decision, v.approvals || slices.Contains(v.decision.Approvers, approval.PrincipalCaller))
}

// refusedWith is the verdict refusing the message with text.
func (v verdict) refusedWith(text string) verdict {
	if v.policyDecision == nil && v.decision.Action != "" {
		decided := v.decision
		v.policyDecision = &decided
	}
	v.decision = policy.Decision{Action: policy.ActionBlock, Reason: v.decision.Reason, Revision: v.decision.Revision}
	v.text = text
	return v
}

// response is the JSON-RPC response the gateway answers a refused request
// with: a tool result with isError for tools/call, so the model sees the
// reason as the tool's output, and an error for any other method. It is nil
// for notifications and responses, which have nothing to answer.
func (v verdict) response() []byte {
	m := v.message
	switch {
	case m.Kind != mcpmsg.KindRequest:
		return nil
	case m.Tool != nil:
		return mcpmsg.ToolErrorResult(m.ID, v.refusal()+v.calledAsNote())
	default:
		return mcpmsg.ErrorResponse(m.ID, v.errorCode(), v.refusal())
	}
}

// calledAsNote is what the gateway's answers to a renamed tool call end
// with: the policy's reason, and the gateway's, name the server's tool,
// which the caller knows by another name (where tools swap names,
// another tool's). "" for a call not renamed.
func (v verdict) calledAsNote() string {
	if v.calledAs == "" || v.message.Tool == nil {
		return ""
	}
	return fmt.Sprintf("\n\nThe tool %q you called is the server's %q.", display.Line(v.calledAs), display.Line(v.message.Tool.Name))
}

// errorCode is the JSON-RPC error code of the verdict's refusal.
func (v verdict) errorCode() int {
	if v.code != 0 {
		return v.code
	}
	return CodeRefusedByPolicy
}

// writeRefusal answers a single refused message: HTTP 200 with the
// JSON-RPC response for a request, and 403 with an id-less JSON-RPC error
// for a notification or response (the transport's way to say a message
// without id was not accepted).
func writeRefusal(w http.ResponseWriter, v verdict) error {
	if response := v.response(); response != nil {
		mcphttp.WriteJSON(w, http.StatusOK, response)
		return nil
	}
	mcphttp.WriteJSON(w, http.StatusForbidden, mcpmsg.ErrorResponse(nil, v.errorCode(), v.refusal()))
	return nil
}

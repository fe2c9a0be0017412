package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
)

// This file tells a caller whose call waits on reviewers what will, and
// will not, run it. An approval is bound to the call (tool and exact
// arguments), the server and the caller: the identified user when there
// is one, across sessions; without identity, the session. Many clients
// open a new session for every attempt, so an anonymous caller is also
// given a token naming the session the approval was asked in: the same
// call made in another session with the argument "mcpgate_approval" set
// to that token (which the gateway removes before the call goes on) runs
// on the approval. The token is as good as the session it names: whoever
// holds it can run that one call, once approved, and nothing else.

// approvalTokenArgument is the argument that carries an approval token.
const approvalTokenArgument = "mcpgate_approval"

// metaApproval is the _meta key of the pending answer's approval facts.
const metaApproval = "io.mcpgate/approval"

// approvalTokenScope keeps approval tokens apart from session ids.
func (x *exchange) approvalTokenScope() string {
	return x.g.cfg.Upstream + "\x00approval"
}

// pendingAnswer is the result a held call gets when its hold ends before
// a decision: a tool result with isError whose text says what will run
// the call, and _meta with the approval's id, its inbox page and, for an
// anonymous caller, the token.
func (x *exchange) pendingAnswer(a *approval.Approval, call *approval.Call) []byte {
	service := x.g.cfg.Approvals.Service
	who := "any reviewer"
	if len(a.Approvers) > 0 {
		who = strings.Join(a.Approvers, ", ")
	}
	var text strings.Builder
	fmt.Fprintf(&text, "Approval pending (id %s): this call needs a person's approval (%s) and has not run yet.", a.ID, who)
	link := service.InboxLink(a.ID)
	if link != "" {
		fmt.Fprintf(&text, " It can be reviewed at %s.", link)
	}
	meta := map[string]any{"id": a.ID, "state": string(a.State), "approvers": a.Approvers, "expires_at": a.ExpiresAt.UTC().Format(time.RFC3339)}
	if link != "" {
		meta["inbox"] = link
	}
	switch {
	case call.User != "":
		fmt.Fprintf(&text, " Once it is approved, the same call (same tool, same arguments) runs when %s makes it again, in any session;", call.User)
	default:
		token := x.g.cfg.Sealer.Seal(x.approvalTokenScope(), sessiontoken.Session{Kind: sessiontoken.Approval, ID: call.Session})
		meta["token"] = token
		fmt.Fprintf(&text, " Once it is approved, the same call (same tool, same arguments) runs when it is made again in this session,"+
			" or in another session with the extra argument %q set to %q (the gateway removes it before the call goes on);", approvalTokenArgument, token)
	}
	fmt.Fprintf(&text, " made again before then, it waits for the decision. No other call runs on this approval, and it runs its call once."+
		" The approval expires at %s.", a.ExpiresAt.UTC().Format(time.RFC3339))
	result, _ := json.Marshal(map[string]any{
		"content": []any{map[string]any{"type": "text", "text": text.String()}},
		"isError": true,
		"_meta":   map[string]any{metaApproval: meta},
	})
	return result
}

// takeApprovalTokens removes approval tokens from the body's tool calls
// (re-encoding them), and remembers the session each names: the call is
// bound to that session's approval, as if made there. A token the gateway
// did not issue, or issued to another caller, is refused.
func (x *exchange) takeApprovalTokens() error {
	for i := range x.body.Messages {
		m := &x.body.Messages[i]
		if m.Tool == nil {
			continue
		}
		value, present := m.Tool.Arguments[approvalTokenArgument]
		if !present {
			continue
		}
		token, _ := value.(string)
		s, err := x.g.cfg.Sealer.Open(x.approvalTokenScope(), token)
		if err != nil || s.Kind != sessiontoken.Approval || s.Caller != x.session.caller {
			return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams,
				fmt.Sprintf("the %s argument holds no approval token this gateway gave this caller", approvalTokenArgument))
		}
		arguments := make(map[string]any, len(m.Tool.Arguments))
		for key, value := range m.Tool.Arguments {
			if key != approvalTokenArgument {
				arguments[key] = value
			}
		}
		params := make(map[string]any, len(m.Params))
		for key, value := range m.Params {
			params[key] = value
		}
		params["arguments"] = arguments
		raw, err := encodeMessage(m.ID, m.Method, params)
		if err != nil {
			return err
		}
		m.Params, m.Raw, m.Tool.Arguments = params, raw, arguments
		x.rewritten = true
		if !x.body.Batch {
			x.raw = raw
		}
		if x.approvalSessions == nil {
			x.approvalSessions = make(map[*mcpmsg.Message]string)
		}
		x.approvalSessions[m] = s.ID
	}
	return nil
}

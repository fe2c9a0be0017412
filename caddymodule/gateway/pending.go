package gateway

import (
	"encoding/json"
	"fmt"
	"maps"
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
// given a token naming the session the approval was asked in and the call
// it is bound to: that call made in another session with the argument
// "mcpgate_approval" set to that token (which the gateway removes before
// the call goes on) runs on the approval. Whoever holds the token can run
// that one call, once approved, until the approval could no longer be
// used, and nothing else: not another call of the session, approved or not.

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
	meta := map[string]any{"id": a.ID, "state": string(a.State), "expires_at": a.ExpiresAt.UTC().Format(time.RFC3339)}
	if len(a.Approvers) > 0 {
		// Absent when any reviewer may decide, as in webhook events.
		meta["approvers"] = a.Approvers
	}
	if link != "" {
		meta["inbox"] = link
	}
	token := ""
	if call.User == "" {
		token = x.approvalToken(a, call)
	}
	switch {
	case call.User != "":
		fmt.Fprintf(&text, " Once it is approved, the same call (same tool, same arguments) runs when %s makes it again, in any session;", call.User)
	case token != "":
		meta["token"] = token
		fmt.Fprintf(&text, " Once it is approved, the same call (same tool, same arguments) runs when it is made again in this session,"+
			" or in another session with the extra argument %q set to %q (the gateway removes it before the call goes on);", approvalTokenArgument, token)
	default:
		fmt.Fprintf(&text, " Once it is approved, the same call (same tool, same arguments) runs when it is made again in this session;")
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

// approvalToken is what an approval token seals: the session the approval
// was asked in, the binding of the call it authorises, and when it stops
// being honoured (Unix seconds).
type approvalToken struct {
	Session string `json:"session"`
	Binding string `json:"binding"`
	Expires int64  `json:"expires"`
}

// approvalToken returns the token of approval a for an anonymous caller's
// call; "" when the call's binding cannot be made (it was, to ask for a).
// It is honoured until the approval could be used no longer: its time to
// be decided, then as long again to be used.
func (x *exchange) approvalToken(a *approval.Approval, call *approval.Call) string {
	binding, err := call.Binding()
	if err != nil {
		return ""
	}
	sealed, err := json.Marshal(approvalToken{
		Session: call.Session,
		Binding: binding,
		Expires: a.ExpiresAt.Add(a.ExpiresAt.Sub(a.RequestedAt)).Unix(),
	})
	if err != nil {
		return ""
	}
	return x.g.cfg.Sealer.Seal(x.approvalTokenScope(), sessiontoken.Session{Kind: sessiontoken.Approval, Caller: x.session.sealedCaller(), ID: string(sealed)})
}

// takeApprovalTokens removes approval tokens from the body's tool calls
// (re-encoding them), and remembers what each says: the call is bound to
// the session its approval was asked in, as if made there, if it is the
// call the token was given for (see the hold). A token the gateway did not
// issue, issued to another caller, or past its time, is refused.
func (x *exchange) takeApprovalTokens() error {
	for i := range x.body.Messages {
		m := &x.body.Messages[i]
		if m.Tool == nil {
			continue
		}
		name, value, present := approvalTokenIn(m.Tool.Arguments)
		if !present {
			continue
		}
		token, err := x.openApprovalToken(value)
		if err != nil {
			return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams, err.Error())
		}
		arguments := maps.Clone(m.Tool.Arguments)
		delete(arguments, name)
		if err := x.rewriteParams(m, func(params map[string]any) error {
			params["arguments"] = arguments
			return nil
		}); err != nil {
			return err
		}
		m.Tool.Arguments = arguments
		if x.approvalTokens == nil {
			x.approvalTokens = make(map[*mcpmsg.Message]approvalToken)
		}
		x.approvalTokens[m] = token
	}
	return nil
}

// approvalTokenIn finds the argument that carries an approval token, and
// its name: approvalTokenArgument as servers that fold names read it
// (case, Unicode form, surrounding space; see mcpmsg.FoldName), so that
// no spelling of it reaches the upstream with a token in it. (Two names
// that fold alike were refused before, by Body.CheckParams.)
func approvalTokenIn(arguments map[string]any) (name string, value any, present bool) {
	if value, present := arguments[approvalTokenArgument]; present {
		return approvalTokenArgument, value, true
	}
	for name, value := range arguments {
		if mcpmsg.FoldName(name) == approvalTokenArgument {
			return name, value, true
		}
	}
	return "", nil, false
}

// openApprovalToken opens an approval token the gateway gave the
// exchange's caller, and checks its time.
func (x *exchange) openApprovalToken(value any) (approvalToken, error) {
	notOurs := fmt.Errorf("the %s argument holds no approval token this gateway gave this caller", approvalTokenArgument)
	sealed, _ := value.(string)
	s, err := x.g.cfg.Sealer.Open(x.approvalTokenScope(), sealed)
	if err != nil || s.Kind != sessiontoken.Approval || s.Caller != x.session.sealedCaller() {
		return approvalToken{}, notOurs
	}
	var token approvalToken
	if err := json.Unmarshal([]byte(s.ID), &token); err != nil || token.Binding == "" {
		return approvalToken{}, notOurs
	}
	if time.Now().Unix() >= token.Expires {
		return approvalToken{}, fmt.Errorf("the approval token in the %s argument has expired; make the call without it to ask again", approvalTokenArgument)
	}
	return token, nil
}

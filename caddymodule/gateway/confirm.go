package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/mcpgate/mcpgate/caddymodule/ttlcache"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/display"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// This file has the person who makes a call confirm it in their own
// client, when the policy names the caller among its approvers: the
// gateway itself asks them, with an elicitation (MCP client/elicitation),
// what will run and why it needs their approval. Under 2025-06-18 and
// 2025-11-25 the question is a request on the call's own event stream,
// whose answer the client posts in the same session; under 2026-07-28 it
// is a result that asks for input (basic/patterns/mrtr), answered by the
// retried call. The answer is the gateway's: it never reaches the
// upstream. Accepted, the call runs once; declined or cancelled, it does
// not.

// callerApproval is the key of the gateway's own input request in a
// 2026-07-28 result that asks the caller.
const callerApproval = "io.mcpgate/approve"

// defaultConfirmTimeout is how long the gateway waits for the caller's
// answer when no hold is configured: under the 60 seconds after which
// many clients give up on a call.
const defaultConfirmTimeout = 50 * time.Second

// approve routes a tools/call the policy said needs approval: to its
// caller, when the policy names the caller and the client can ask its
// user; else to reviewers (those the policy names, or any when it named
// only the caller), when approvals are configured; else it is refused
// with a reason that says why nobody could be asked.
func (x *exchange) approve(v verdict) error {
	// The call's id is in flight from now on, whether it is held or asked
	// about: another request of the session may not take it meanwhile.
	release, err := x.claimIDs([]string{mcpmsg.CanonicalID(v.message.ID)})
	if err != nil {
		return x.refuseUnsent(err.Error())
	}
	defer release()
	for _, approver := range v.decision.Approvers {
		if !approval.ValidPrincipal(approver) {
			x.g.logger.Error("the policy names an unknown approver; call refused", zap.String("approver", approver))
			refused := v.refusedWith(fmt.Sprintf(
				"This call needs approval, but the policy names an approver the gateway does not know (%q), so it was refused.", approver))
			x.audit(refused, outcomeRefused, nil)
			return writeRefusal(x.w, refused)
		}
	}
	askCaller := slices.Contains(v.decision.Approvers, approval.PrincipalCaller)
	reviewers := slices.DeleteFunc(slices.Clone(v.decision.Approvers), func(a string) bool { return a == approval.PrincipalCaller })
	if askCaller {
		switch x.callerChannel() {
		case askInResult:
			return x.askCallerInResult(v)
		case askOnStream:
			return x.askCallerOnStream(v)
		}
	}
	if x.g.cfg.Approvals == nil || x.legacy != nil {
		text := v.refusal()
		if askCaller {
			text = "This call needs your approval, but your client cannot ask you (it did not declare elicitation, or does not accept an event stream in reply), and no reviewers are configured, so it was refused."
			if v.decision.Reason != "" {
				text += " Policy: " + shownReason(v.decision.Reason)
			}
		}
		refused := v.refusedWith(text)
		x.audit(refused, outcomeRefused, nil)
		return writeRefusal(x.w, refused)
	}
	v.decision.Approvers = reviewers
	return x.holdThenForward(v)
}

// callerChannels say how the gateway can ask the caller.
type callerChannel int

const (
	cannotAsk callerChannel = iota
	// askInResult: a 2026-07-28 result that asks for input.
	askInResult
	// askOnStream: an elicitation request on the call's event stream.
	askOnStream
)

// callerChannel tells how the gateway can ask the exchange's caller to
// confirm a call: only a client that declared form elicitation can be
// asked, over Streamable HTTP, and before 2026-07-28 only in an event
// stream.
func (x *exchange) callerChannel() callerChannel {
	declared, known := x.capabilities()
	switch {
	case x.legacy != nil || x.body.Batch || !known || declared&capElicitationForm == 0:
		return cannotAsk
	case x.version >= mcphttp.Version20260728:
		return askInResult
	case acceptsEventStream(x.r):
		return askOnStream
	}
	return cannotAsk
}

// cannotAskText answers a call the gateway could not ask its caller
// about.
const cannotAskText = "This call needs your approval, and the gateway could not ask for it, so it was refused."

// maxShownArguments bounds the arguments a confirmation shows, in bytes.
const maxShownArguments = 4000

// confirmation is what the caller is asked; an error when the arguments
// cannot be shown (the caller is never asked about arguments unseen).
func (x *exchange) confirmation(v verdict) (map[string]any, error) {
	// The arguments as written (not HTML-escaped: "&&" and ">" must read
	// as they will run), with what could act on the display made visible,
	// and a note of what did not fit.
	// Only what is shown is indented and escaped: indenting all of a
	// deeply nested value first multiplied it by its depth.
	var args bytes.Buffer
	encoder := json.NewEncoder(&args)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(v.message.Tool.Arguments); err != nil {
		return nil, fmt.Errorf("showing the arguments: %w", err)
	}
	indented, complete, err := display.IndentedJSON(args.Bytes(), maxShownArguments)
	if err != nil {
		return nil, fmt.Errorf("showing the arguments: %w", err)
	}
	shown, cut := display.Prefix(display.Block(indented), maxShownArguments)
	if cut || !complete {
		shown += fmt.Sprintf("\n⟨more not shown: the arguments are %d bytes of JSON⟩", args.Len()-1)
	}
	// The tool as the caller knows it: a renamed tool by the name the
	// caller called it by (which, where tools swap names, is another
	// tool's name on the server), with the server's.
	tool := strconv.Quote(display.Line(v.message.Tool.Name))
	if v.calledAs != "" {
		tool = fmt.Sprintf("%q (the server's %s)", display.Line(v.calledAs), tool)
	}
	message := fmt.Sprintf("Allow %s to run the tool %s with these arguments?\n\n%s", display.Line(v.input.Server), tool, shown)
	if v.decision.Reason != "" {
		message += "\n\nWhy you are asked: " + shownReason(v.decision.Reason)
	}
	params := map[string]any{
		"message":         message,
		"requestedSchema": map[string]any{"type": "object", "properties": map[string]any{}},
	}
	if x.version >= mcphttp.Version20251125 {
		params["mode"] = "form"
	}
	return params, nil
}

// callerBinding is what a caller's confirmation is bound to: the caller,
// the server, the tool and its exact arguments.
func (x *exchange) callerBinding(v verdict) (string, error) {
	call := approval.Call{
		Session:   x.session.id,
		Server:    v.input.Server,
		Tool:      v.message.Tool.Name,
		Arguments: v.message.Tool.Arguments,
		Approvers: []string{approval.PrincipalCaller},
	}
	if x.caller != nil {
		call.User, call.Realm = x.caller.ID, x.session.realm
	}
	return call.Binding()
}

// askCallerInResult answers the call with a result that asks the caller
// to confirm it (2026-07-28): the retried call carries the answer, and a
// requestState that binds it to this very call (checkInputResponses).
func (x *exchange) askCallerInResult(v verdict) error {
	binding, err := x.callerBinding(v)
	if err != nil {
		return writeRefusal(x.w, v.refusedWith(cannotAskText))
	}
	confirmation, err := x.confirmation(v)
	if err != nil {
		x.g.logger.Error("could not ask the caller; call refused", zap.String("tool", v.message.Tool.Name), zap.Error(err))
		return writeRefusal(x.w, v.refusedWith(cannotAskText))
	}
	state := x.sealRequestState(requestState{
		Keys: []string{callerApproval}, Method: v.message.Method, Name: v.message.Tool.Name, Binding: binding, Nonce: newNonce(), ToolHash: v.toolHash,
	})
	result, err := json.Marshal(map[string]any{
		"resultType": "input_required",
		"content":    []any{},
		"inputRequests": map[string]any{
			callerApproval: map[string]any{"method": "elicitation/create", "params": confirmation},
		},
		"requestState": state,
	})
	if err != nil {
		return err
	}
	x.g.logger.Info("caller asked to confirm the call", zap.String("tool", v.message.Tool.Name), zap.String("user", x.session.caller))
	x.audit(v, outcomeAsked, nil)
	mcphttp.WriteJSON(x.w, http.StatusOK, mcpmsg.ResultResponse(v.message.ID, result))
	return nil
}

// askCallerOnStream asks the caller, in the call's event stream, to
// confirm the call, and waits for the answer the client posts: accepted,
// the call runs and its reply follows in the stream.
func (x *exchange) askCallerOnStream(v verdict) error {
	g := x.g
	confirmation, err := x.confirmation(v)
	if err != nil {
		g.logger.Error("could not ask the caller; call refused", zap.String("tool", v.message.Tool.Name), zap.Error(err))
		return writeRefusal(x.w, v.refusedWith(cannotAskText))
	}
	id := `"mcpgate-confirm-` + newNonce() + `"`
	answers, forget := g.sessions.own.await(x.session, id)
	defer forget()
	cancelled := x.watchCancel()
	request, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "method": "elicitation/create", "params": confirmation})
	if err != nil {
		return err
	}
	held := &heldCall{w: x.w, r: x.r, id: v.message.ID, logger: g.logger, requestID: g.host.RequestID(x.r), note: v.calledAsNote()}
	held.startStream(v.message.ProgressToken)
	held.writeEvent(request)
	wait := x.startWaitSpan(v, "mcpgate.confirmation.wait")
	patience := defaultConfirmTimeout
	if g.cfg.Approvals != nil {
		patience = g.cfg.Approvals.Hold
	}
	patience = x.answerableWithin(patience)
	timer := time.NewTimer(patience)
	defer timer.Stop()
	logger := g.logger.With(zap.String("tool", v.message.Tool.Name), zap.String("user", x.session.caller))
	// cancelledWhileAsked and disconnected end the wait of a call its
	// client no longer wants run, whatever answer comes with or after.
	cancelledWhileAsked := func() error {
		// The call does not run, whatever answer comes later (taken and
		// dropped, as the question is withdrawn).
		withdraw(held, id, "the call was cancelled")
		logger.Info("call cancelled by the client while its caller was asked")
		endWaitSpan(wait, outcomeCancelled, "")
		x.audit(v, outcomeCancelled, nil)
		return held.answer("You cancelled this call, so it did not run.")
	}
	disconnected := func() error {
		endWaitSpan(wait, outcomeCancelled, "")
		x.audit(v, outcomeCancelled, nil)
		return nil
	}
	select {
	case answer := <-answers:
		switch answer {
		case "accept":
			switch x.stopBeforeRunning(cancelled) {
			case stopCancelled:
				return cancelledWhileAsked()
			case stopDisconnected:
				return disconnected()
			}
			if changed := x.changedWhileHeld(v, true); changed != "" {
				logger.Warn("confirmed call not run: its tool or the policy changed while its caller was asked", zap.String("change", changed))
				endWaitSpan(wait, outcomeRefused, "")
				x.audit(v, outcomeRefused, nil)
				return held.answer("You confirmed this call, but " + changed + ": it did not run. Make the call again to have it decided anew.")
			}
			logger.Info("caller confirmed the call")
			endWaitSpan(wait, outcomeConfirmed, "")
			w, finish := held.replyWriter()
			x.w, x.verdicts = w, []verdict{v.approved(outcomeConfirmed, nil)}
			err := x.forward()
			finish()
			return err
		case "decline":
			logger.Info("caller declined the call")
			endWaitSpan(wait, outcomeDeclined, "")
			x.audit(v, outcomeDeclined, nil)
			return held.answer("You declined this call, so it did not run.")
		default:
			logger.Info("caller cancelled the call", zap.String("answer", answer))
			endWaitSpan(wait, outcomeCancelled, "")
			x.audit(v, outcomeCancelled, nil)
			return held.answer("You cancelled this call, so it did not run.")
		}
	case <-timer.C:
		withdraw(held, id, "no answer in time")
		endWaitSpan(wait, outcomeUnanswered, "")
		x.audit(v, outcomeUnanswered, nil)
		return held.answer(fmt.Sprintf("No answer came from you within %s: the call did not run. Make it again to be asked again.", patience.Round(time.Second)))
	case <-cancelled:
		return cancelledWhileAsked()
	case <-x.r.Context().Done():
		return disconnected()
	}
}

// withdraw tells the client, on the call's stream, that the gateway no
// longer awaits the answer to its question id, so that it stops asking
// its user (MCP basic/utilities, "Cancellation").
func withdraw(held *heldCall, id, reason string) {
	if withdrawn, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/cancelled",
		"params": map[string]any{"requestId": json.RawMessage(id), "reason": reason}}); err == nil {
		held.writeEvent(withdrawn)
	}
}

// ownRequests are the gateway's own requests to clients (the caller's
// confirmations) awaiting the client's answer, by session and id, and the
// calls held in this process (on their caller's answer, or for
// reviewers), by session and the call's id.
type ownRequests struct {
	mu      sync.Mutex
	waiting map[string]chan string
	// calls are closed when their client cancels them. A key may hold
	// several: a stateless upstream's caller (two windows of one client,
	// anonymous callers) may have held calls of one id at once, and a
	// cancel, which cannot tell them apart, ends them all rather than
	// leave the one it meant to run.
	calls map[string]map[chan struct{}]struct{}
	// withdrawn are the requests no longer awaited (withdrawn, or their
	// call gone) that the client has not answered: an answer may still
	// be on its way (MCP lets a response cross the cancellation), and is
	// taken and dropped rather than refused, which SDK clients would
	// report as the call failing.
	withdrawn *ttlcache.Cache[string, struct{}]
}

// withdrawnKept is how long, and how many, withdrawn requests are
// remembered for a late answer.
const (
	withdrawnFor   = 10 * time.Minute
	withdrawnLimit = 10_000
)

func newOwnRequests() *ownRequests {
	return &ownRequests{
		waiting:   make(map[string]chan string),
		calls:     make(map[string]map[chan struct{}]struct{}),
		withdrawn: ttlcache.New[string, struct{}](withdrawnLimit, withdrawnFor),
	}
}

// ownRequestKey is how ownRequests keys a request or call: its session
// (whose text is quoted, so it ends where it ends) and its canonical
// JSON-RPC id, so that a registration and the answer or cancellation that
// finds it agree.
func ownRequestKey(session sessionKey, canonicalID string) string {
	return session.String() + "\x00" + canonicalID
}

// await registers the gateway's request id in session and returns where
// the answer's action comes, and a function to call when no longer
// waiting.
func (o *ownRequests) await(session sessionKey, id string) (<-chan string, func()) {
	key := ownRequestKey(session, mcpmsg.CanonicalID([]byte(id)))
	answers := make(chan string, 1)
	o.mu.Lock()
	o.waiting[key] = answers
	o.mu.Unlock()
	return answers, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.waiting[key] == answers {
			delete(o.waiting, key)
			o.withdrawn.Add(key, struct{}{})
		}
	}
}

// holdCall registers a call (its JSON-RPC id, in session) held in this
// process, on its caller's answer or for reviewers, and returns what is
// closed if the client cancels it (cancelCall), and a function to call
// when it no longer waits.
func (o *ownRequests) holdCall(session sessionKey, callID []byte) (<-chan struct{}, func()) {
	key := ownRequestKey(session, mcpmsg.CanonicalID(callID))
	cancelled := make(chan struct{})
	o.mu.Lock()
	if o.calls[key] == nil {
		o.calls[key] = make(map[chan struct{}]struct{}, 1)
	}
	o.calls[key][cancelled] = struct{}{}
	o.mu.Unlock()
	return cancelled, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if held, ok := o.calls[key]; ok {
			delete(held, cancelled)
			if len(held) == 0 {
				delete(o.calls, key)
			}
		}
	}
}

// cancelCall tells the calls with the (canonical) id in session, if any
// are held, that their client cancelled them, and reports whether one
// was.
func (o *ownRequests) cancelCall(session sessionKey, canonicalID string) bool {
	key := ownRequestKey(session, canonicalID)
	o.mu.Lock()
	defer o.mu.Unlock()
	held, ok := o.calls[key]
	delete(o.calls, key)
	for cancelled := range held {
		close(cancelled)
	}
	return ok
}

// awaits reports whether a request of the gateway's own, in session,
// awaits the response m (see deliver).
func (o *ownRequests) awaits(session sessionKey, m *mcpmsg.Message) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.waiting[ownRequestKey(session, mcpmsg.CanonicalID(m.ID))]
	return ok
}

// deliver hands the client's response m, in session, to the gateway's
// request awaiting it, and reports whether one was: such a response is
// the gateway's, and goes no further. An answer is taken once; a first
// answer to a request no longer awaited is taken too, and dropped.
func (o *ownRequests) deliver(session sessionKey, m *mcpmsg.Message) bool {
	key := ownRequestKey(session, mcpmsg.CanonicalID(m.ID))
	o.mu.Lock()
	answers, ok := o.waiting[key]
	delete(o.waiting, key)
	late := !ok && o.withdrawn.Remove(key)
	o.mu.Unlock()
	if ok {
		answers <- elicitationAction(m.Raw)
	}
	return ok || late
}

// elicitationAction reads the action of an elicitation's answer:
// "accept", "decline" or "cancel"; an error or anything else is
// "cancel". The result is read strictly, as the parse reads messages: a
// member given twice, or "action" in another case (which a client or a
// log reading names case-insensitively would take for it), is "cancel",
// so that no answer reads as accept here and as anything else elsewhere.
func elicitationAction(raw []byte) string {
	var response struct {
		Result map[string]jsontext.Value `json:"result"`
	}
	if err := jsonv2.Unmarshal(raw, &response); err != nil || response.Result == nil {
		return "cancel"
	}
	if _, _, found := mcpmsg.CaseVariant(response.Result, "action"); found {
		return "cancel"
	}
	var action string
	if value, ok := response.Result["action"]; !ok || jsonv2.Unmarshal(value, &action) != nil {
		return "cancel"
	}
	switch action {
	case "accept", "decline":
		return action
	}
	return "cancel"
}

// callerAnswer is a retried call's answer to the gateway's own question:
// the action, and the definition of the tool the caller was asked about.
type callerAnswer struct {
	action, toolHash string
	// nonce is the confirmation's nonce, once claimed (an accept).
	nonce string
}

// confirmedByCaller applies a retried 2026-07-28 call's answer to the
// gateway's own question (see checkInputResponses): accepted, a call
// the policy says needs approval runs once; declined or cancelled, it is
// refused. It returns the verdict to act on.
func (x *exchange) confirmedByCaller(v verdict) verdict {
	answer, answered := x.callerAnswers[v.message]
	// The answer counts only while the caller may still approve: the
	// policy may have changed its mind (a reload, a rule on the time or
	// the request) since it asked.
	if !answered || v.decision.Action != policy.ActionNeedsApproval ||
		!slices.Contains(v.decision.Approvers, approval.PrincipalCaller) {
		return v
	}
	if answer.action == "accept" {
		if answer.toolHash != v.toolHash {
			return v.refusedWith("You confirmed this call, but " + toolChanged(v.message.Tool.Name, v.toolHash, answer.toolHash) +
				": it did not run. Make the call again to have it decided anew.")
		}
		return v.approved(outcomeConfirmed, nil)
	}
	text := "You declined this call, so it did not run."
	if answer.action != "decline" {
		text = "You cancelled this call, so it did not run."
	}
	return v.refusedWith(text)
}

// claimScope names where claimAnswer records the confirmations used: the
// approval store, or else the upstream's memory in this process. A
// requestState is sealed for it (requestStateScope), so that a
// confirmation runs its call in no handler, replica or process after a
// restart that would not know it ran already.
func (x *exchange) claimScope() string {
	if approvals := x.g.cfg.Approvals; approvals != nil {
		return approvals.Service.ClaimScope()
	}
	return x.g.sessions.confirmations.scope
}

// claimAnswer makes sure a caller's confirmation runs its call once: its
// nonce is claimed in the approval store (shared by replicas) when there
// is one, else in this process.
func (x *exchange) claimAnswer(nonce string) error {
	if approvals := x.g.cfg.Approvals; approvals != nil {
		ctx, cancel := context.WithTimeout(x.r.Context(), claimTimeout)
		defer cancel()
		// As long as the sealed state carrying the nonce is accepted.
		return approvals.Service.Claim(ctx, confirmationClaim(nonce), claimLifetime)
	}
	if !x.g.sessions.confirmations.claim(nonce) {
		return fmt.Errorf("%w: confirmation %s", approval.ErrReplayed, nonce)
	}
	return nil
}

// unclaimAnswer gives back what claimAnswer claimed, even once the
// request's client went away.
func (x *exchange) unclaimAnswer(nonce string) error {
	if approvals := x.g.cfg.Approvals; approvals != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(x.r.Context()), claimTimeout)
		defer cancel()
		return approvals.Service.Unclaim(ctx, confirmationClaim(nonce))
	}
	x.g.sessions.confirmations.unclaim(nonce)
	return nil
}

// claimTimeout bounds a claim of a confirmation in the approval store,
// and its giving back.
const claimTimeout = 5 * time.Second

// confirmationClaim is the one-time key a confirmation's nonce is
// claimed as in the approval store.
func confirmationClaim(nonce string) string {
	return "confirm:" + nonce
}

// unclaimAnswers gives back the confirmations the exchange claimed for
// calls it did not forward after all (refused by a rate limit, by the
// policy, at the last moment): they ran nothing, and their caller may
// retry them with the same answer; so are the uses of approvals claimed
// for retries with the answers their server asked for
// (coveredByEarlierApproval). One that cannot be given back stays used,
// which refuses the retry, never runs a call twice.
func (x *exchange) unclaimAnswers() {
	for m, answer := range x.callerAnswers {
		x.giveBackUnsent(m, answer.nonce)
	}
	for m, earlier := range x.approvedBefore {
		if earlier.claimed {
			x.giveBackUnsent(m, earlier.nonce)
		}
	}
}

// giveBackUnsent gives back nonce, claimed for m, unless m was forwarded.
func (x *exchange) giveBackUnsent(m *mcpmsg.Message, nonce string) {
	if nonce != "" && !(x.passed && x.forwards(m)) {
		if err := x.unclaimAnswer(nonce); err != nil {
			x.g.logger.Warn("could not give back the confirmation of a call that did not run; its caller must confirm it anew",
				zap.String("request_id", x.g.host.RequestID(x.r)), zap.Error(err))
		}
	}
}

// forwards reports whether the exchange's verdicts pass m on.
func (x *exchange) forwards(m *mcpmsg.Message) bool {
	for _, v := range x.verdicts {
		if v.message == m {
			return v.allowed()
		}
	}
	return false
}

// newNonce returns 128 random bits, base64url.
func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// usedConfirmations remembers, in a process without an approval store,
// the caller confirmations that ran their call. (Replicas share what they
// remember only through an approval store; without one, each process
// remembers its own.)
type usedConfirmations struct {
	used *ttlcache.Cache[string, struct{}]
	// scope names these confirmations, random (see claimScope).
	scope string
}

// newUsedConfirmations remembers up to 100,000 confirmations for as long
// as their requestState is accepted.
func newUsedConfirmations() *usedConfirmations {
	return &usedConfirmations{used: ttlcache.New[string, struct{}](100_000, claimLifetime), scope: "process " + rand.Text()}
}

// claim reports whether nonce was not used before, and marks it used, in
// one step. An evicted nonce (past the bound) could be used again; only
// its own caller holds it, who could as well confirm the call anew.
func (u *usedConfirmations) claim(nonce string) bool {
	return u.used.AddIfAbsent(nonce, struct{}{})
}

// unclaim forgets that nonce was used, so that it may be claimed again.
func (u *usedConfirmations) unclaim(nonce string) {
	u.used.Remove(nonce)
}

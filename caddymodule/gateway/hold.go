package gateway

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/display"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// testHookGoAhead, when set, runs when a held call may go ahead (its
// approval approved, or its caller's confirmation accepted), before it
// looks for a cancel that came at the same time: tests set it to cancel
// the call at that moment (export_test.go).
var testHookGoAhead atomic.Pointer[func()]

// stop says whether a held call that may go ahead is to stop instead.
type stop int

const (
	goAhead stop = iota
	// stopCancelled: its client cancelled it (notifications/cancelled).
	stopCancelled
	// stopDisconnected: its client went away.
	stopDisconnected
)

// stopBeforeRunning reports whether a held call that may now go ahead
// (approved, or confirmed by its caller) is to stop instead, because its
// client cancelled it or went away meanwhile. Woken by a go-ahead and a
// cancel at once, a wait may have taken either: the cancel wins, as it
// does when it comes first, since the client no longer wants the call
// run.
func (x *exchange) stopBeforeRunning(cancelled <-chan struct{}) stop {
	if hook := testHookGoAhead.Load(); hook != nil {
		(*hook)()
	}
	select {
	case <-cancelled:
		return stopCancelled
	case <-x.r.Context().Done():
		return stopDisconnected
	default:
		return goAhead
	}
}

// cancelTimeout bounds the store update that cancels an approval after
// its client went away (the request's own context is done by then).
const cancelTimeout = 5 * time.Second

// changedWhileHeld says how a call held for a person's answer is no
// longer what was decided and asked about, or "" when it still is: its
// tool (see toolChangedWhileHeld), or the policy (see
// policyChangedWhileHeld). byCaller is set when the answer is the
// caller's own confirmation.
func (x *exchange) changedWhileHeld(v verdict, byCaller bool) string {
	if changed := x.toolChangedWhileHeld(v); changed != "" {
		return changed
	}
	if changed := x.nameChangedWhileHeld(v); changed != "" {
		return changed
	}
	return x.policyChangedWhileHeld(v, byCaller)
}

// nameChangedWhileHeld says how the configuration running now no longer
// offers a held tool call's tool under the name its client called it by
// (a reload renamed the tool, or gave its name to another: see
// tooloverride.Set.Upstream), or "" when each gateway serving its server
// now does: the call, made now, would be refused or reach another tool.
func (x *exchange) nameChangedWhileHeld(v verdict) string {
	m := v.message
	if m.Tool == nil {
		return ""
	}
	called := cmp.Or(v.calledAs, m.Tool.Name)
	for _, g := range x.g.deciders() {
		if upstream, offered := g.cfg.ToolOverrides.Upstream(called); !offered || upstream != m.Tool.Name {
			return fmt.Sprintf("the configuration running now no longer offers the server's tool %q as %q (its tool overrides changed)",
				display.Line(m.Tool.Name), display.Line(called))
		}
	}
	return ""
}

// policyChangedWhileHeld says how the policy in force now decides a call
// held for a person's answer otherwise than it was decided, or "" when it
// does not. A call may be held for as long as hold: meanwhile its policy
// files or bundle may change, or the configuration reload, and a call the
// organization has since blocked, or given to other approvers, must not
// run on an answer given under the old rules. The same input is decided
// again (its request's facts as the deciding gateway reads them): by the
// call's own gateway while its configuration runs (its engine follows
// its files and bundle); after a reload, by every gateway that serves the
// call's server in the configuration running then (which of them took
// over from the call's own, the gateway cannot tell); none, and the call
// is refused. The call goes on only if each allows it, or holds it for
// the same reviewers (and, for a caller's confirmation, still lets the
// caller approve). Not counted or logged as a decision: the call's was.
func (x *exchange) policyChangedWhileHeld(v verdict, byCaller bool) string {
	running := x.g.deciders()
	if len(running) == 0 {
		return notServedReason(x.g.cfg.Server)
	}
	reviewers := reviewersOf(v.decision.Approvers)
	for _, g := range running {
		input := *v.input
		input.Request = g.requestInfo(x.r)
		d, _ := g.cfg.Engine.Decide(x.r.Context(), &input)
		d = g.blockSecrets(x.session, v.message, &input, d)
		switch {
		case d.Action == policy.ActionAllow:
		case d.Action == policy.ActionNeedsApproval && slices.Equal(reviewersOf(d.Approvers), reviewers) &&
			(!byCaller || slices.Contains(d.Approvers, approval.PrincipalCaller)):
		case d.Action == policy.ActionNeedsApproval:
			// (Who they are is the organization's, not the caller's, to know.)
			return "the policy in force now holds it for other approvers"
		default:
			return "the policy in force now decides it otherwise (" + refusalText(d, true) + ")"
		}
	}
	return ""
}

// answerableWithin returns wait, cut so that what the gateway writes
// when it is over (a held call's pending answer, a refusal) still goes
// out before the server's write timeout ends the reply (see
// Host.WriteTimeout): a call held past it lost its pending answer, and,
// approved then, ran while its client saw the connection cut (and would
// make it again).
func (x *exchange) answerableWithin(wait time.Duration) time.Duration {
	if x.g.host.WriteTimeout == nil {
		return wait
	}
	limit := x.g.host.WriteTimeout(x.r)
	if limit <= 0 {
		return wait
	}
	// What is left once the answer has had time to be written.
	left := time.Until(x.started.Add(limit - min(writeMargin, limit/4)))
	return max(min(wait, left), 0)
}

// writeMargin is the time answerableWithin leaves for writing an answer
// before the server's write timeout.
const writeMargin = time.Second

// notServedReason says why a request of a gateway a reload retired is
// refused when the configuration running now serves none of its server,
// or none that identifies its callers from the same place.
func notServedReason(server string) string {
	return fmt.Sprintf("the configuration running now no longer serves %q to callers identified as this request's were", server)
}

// reviewersOf returns the approvers a call is held for, besides its
// caller, in order: those a person other than the caller answers for
// (approve drops the caller when it cannot be asked).
func reviewersOf(approvers []string) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for _, a := range approvers {
			if a != approval.PrincipalCaller && !yield(a) {
				return
			}
		}
	})
}

// toolChangedWhileHeld says how the tool of a call held for a person's
// answer is no longer the definition the call was decided on (and the
// person asked about), or "" when it still is. Looked up again (and the
// list fetched again, when the upstream announced it changed or it is past
// its age): a call
// decided on one definition never runs another, whatever the answer.
func (x *exchange) toolChangedWhileHeld(v verdict) string {
	m := v.message
	tool, listed, err := x.toolNow(m.Tool.Name, m.Params)
	switch {
	case err != nil:
		return fmt.Sprintf("the gateway could not learn the server's tools again to check that tool %q is still the one decided on", m.Tool.Name)
	case !listed:
		return fmt.Sprintf("the server no longer offers tool %q", m.Tool.Name)
	case tool.Hash != v.toolHash || tool.Changed && !v.input.Tool.Changed:
		return toolChanged(m.Tool.Name, tool.Hash, v.toolHash)
	}
	return ""
}

// toolNow is what the upstream lists now for a held call's tool: the
// catalog's tool while its list is current and the configuration's own;
// else the upstream's list,
// fetched through the gateway's own route and read without being
// recorded. (A held call may outlive its configuration: after a reload,
// the catalog's list is the new configuration's to learn, whose upstream
// of that name may be another MCP server.)
func (x *exchange) toolNow(name string, params map[string]any) (catalog.Tool, bool, error) {
	g := x.g
	if g.ownsList() && !g.catalog.Stale(g.cfg.Upstream) {
		tool, listed := g.knownTool(name)
		return tool, listed, nil
	}
	return x.toolFetched(name, params)
}

// toolFetched is what the upstream lists now for a tool, fetched through
// the gateway's own route and read without being recorded.
func (x *exchange) toolFetched(name string, params map[string]any) (catalog.Tool, bool, error) {
	meta, err := x.fetchMeta(params)
	if err != nil {
		return notListed(name), false, err
	}
	raws, err := x.fetcher().list(meta)
	if err != nil {
		return notListed(name), false, err
	}
	return x.describedTool(name, raws)
}

// toolUnrecorded is toolFetched for deciding a message of a gateway that
// does not own the catalog's list (see ownsList): the list is fetched
// once for the request (a batch's calls share it) and once at a time for
// the session (concurrent requests share the fetch), as the owner's
// refreshes are: a fetch for each call made a batch of 100 calls cost
// the upstream 100 lists, of up to 100 pages each.
func (x *exchange) toolUnrecorded(name string, params map[string]any) (catalog.Tool, bool, error) {
	if !x.unrecorded.fetched {
		meta, err := x.fetchMeta(params)
		if err != nil {
			return notListed(name), false, err
		}
		raws, err, _ := x.g.refreshes.Do("unrecorded "+x.session.String(), func() (any, error) {
			return x.fetcher().list(meta)
		})
		x.unrecorded.raws, _ = raws.([]json.RawMessage)
		x.unrecorded.err, x.unrecorded.fetched = err, true
	}
	if x.unrecorded.err != nil {
		return notListed(name), false, x.unrecorded.err
	}
	return x.describedTool(name, x.unrecorded.raws)
}

// describedTool is the tool of a list read without being recorded: as the
// list says it, Changed unless its pin holds its definition; a tool no
// gateway pinned yet is pinned to it now, trusted on first use as it is
// when the owner of the list learns it (see catalog.Catalog.PinFirst).
func (x *exchange) describedTool(name string, raws []json.RawMessage) (catalog.Tool, bool, error) {
	g := x.g
	tools, err := g.catalog.Describe(g.cfg.Upstream, raws)
	if err != nil {
		return notListed(name), false, err
	}
	tool, listed := tools[name]
	if !listed {
		return notListed(name), false, nil
	}
	if tool.Changed {
		if pinned, err := g.catalog.PinFirst(x.r.Context(), g.cfg.Upstream, tool); err == nil {
			tool = pinned
		} else {
			g.logger.Warn("could not pin a tool on its first use", zap.String("upstream", g.cfg.Upstream), zap.String("tool", name), zap.Error(err))
		}
	}
	return tool, true, nil
}

// toolChanged says that a tool's definition is now another than the one a
// person was asked about.
func toolChanged(name, now, asked string) string {
	if asked == "" {
		// Asked by an earlier version of the gateway, which did not
		// record the definition.
		return fmt.Sprintf("tool %q may have changed while the call waited (the question did not record its definition; it is now %s)", name, now)
	}
	return fmt.Sprintf("tool %q changed while the call waited (its definition is now %s, not %s, the one decided on)", name, now, asked)
}

// hold holds a tools/call that the policy said needs approval. It finds
// the approval that stands for the call (asking for a new one, by
// webhook, when there is none) and waits, for at most the hold time,
// until it is decided. Approved, it returns the approval with the writer
// to forward the call's reply to and a finish function to call after
// (once per approval); denied, expired or cancelled, the client gets a refusal
// that says so. With no decision by the end of the hold, the client gets
// a tool result saying the approval is pending; the same call, made
// again, waits on the same approval. While it waits, a client that sent a
// progress token and accepts an event stream gets progress notifications.
// A client that disconnects, or cancels the call, cancels the approval.
func (x *exchange) hold(v verdict) (w http.ResponseWriter, finish func(), approved *approval.Approval, err error) {
	approvals := x.g.cfg.Approvals
	service := approvals.Service
	m, r := v.message, x.r
	call := &approval.Call{
		Session:   r.Header.Get(mcphttp.HeaderSessionID),
		Server:    v.input.Server,
		Tool:      m.Tool.Name,
		ToolHash:  v.toolHash,
		Arguments: m.Tool.Arguments,
		Reason:    v.decision.Reason,
		Approvers: v.decision.Approvers,
	}
	if v.input.User != nil {
		call.User, call.Realm = v.input.User.ID, x.session.realm
	} else if token, named := x.approvalTokens[m]; named {
		// An anonymous caller's token binds the call to the session its
		// approval was asked in, if it is the call the token was given
		// for.
		call.Session = token.Session
		if binding, err := call.Binding(); err != nil || binding != token.Binding {
			refused := v.refusedWith(fmt.Sprintf("The %s argument holds the approval token of another call; it runs only the call it was given for "+
				"(same tool, same definition of it, same arguments). If the tool changed since, make the call again without the token.", approvalTokenArgument))
			x.audit(refused, outcomeRefused, nil)
			return nil, nil, nil, writeRefusal(x.w, refused)
		}
	}
	held := &heldCall{w: x.w, r: r, id: m.ID, service: service, logger: x.g.logger, requestID: x.g.host.RequestID(r), note: v.calledAsNote()}
	wait := x.startWaitSpan(v, "mcpgate.approval.wait")
	// end records how the hold ended, in the audit trail and the trace.
	end := func(outcome string, a *approval.Approval, err error) (http.ResponseWriter, func(), *approval.Approval, error) {
		id := ""
		if a != nil {
			id = a.ID
		}
		endWaitSpan(wait, outcome, id)
		x.audit(v, outcome, a)
		return nil, nil, nil, err
	}

	cancelled := x.watchCancel()

	a, err := service.Request(r.Context(), call)
	if err != nil {
		return end(outcomeFailed, nil, held.fail(err))
	}
	// However the hold ends once its client went away (noticed while it
	// waited, or as a store call failing with the request's context), the
	// approval it waited on is withdrawn: cancelled, or used up if decided
	// meanwhile, so that it runs no later call. heldID follows the
	// approval waited on; goingAhead is set when the call runs.
	heldID, goingAhead := a.ID, false
	defer func() {
		if !goingAhead && r.Context().Err() != nil {
			held.cancel(heldID, "the client disconnected")
		}
	}()
	if m.ProgressToken != nil && acceptsEventStream(r) {
		held.startStream(m.ProgressToken)
		held.progress(a)
	}
	holdTimer := time.NewTimer(x.answerableWithin(approvals.Hold))
	defer holdTimer.Stop()
	keepalive := time.NewTicker(approvals.Keepalive)
	defer keepalive.Stop()
	var expiry *time.Timer
	defer func() {
		if expiry != nil {
			expiry.Stop()
		}
	}()
	expiringID := ""
	stopWaiting := func() {}
	defer func() { stopWaiting() }()
	for {
		stopWaiting()
		var changed <-chan struct{}
		changed, stopWaiting = service.Changed(a.ID)
		if a, err = service.Get(r.Context(), a.ID); err != nil {
			return end(outcomeFailed, nil, held.fail(err))
		}
		switch a.State {
		case approval.Approved:
			if _, err := service.Use(r.Context(), a.ID); err == nil {
				// A cancel that came with the decision, or while it was
				// used up, wins; the approval stays used up, so that it
				// runs no later call either.
				switch x.stopBeforeRunning(cancelled) {
				case stopCancelled:
					held.logger.Info("approved call cancelled by the client before it ran", zap.String("id", a.ID))
					return end(outcomeCancelled, a, held.answer(fmt.Sprintf(
						"Approval %s was given, but the client cancelled the call before it ran: the call did not run, and the approval is used up. Make the call again to ask anew.", a.ID)))
				case stopDisconnected:
					return end(outcomeCancelled, a, nil)
				}
				if changed := x.changedWhileHeld(v, false); changed != "" {
					held.logger.Warn("approved call not run: its tool or the policy changed while it was held", zap.String("id", a.ID), zap.String("tool", m.Tool.Name), zap.String("change", changed))
					return end(outcomeRefused, a, held.answer(fmt.Sprintf(
						"Approval %s was given, but %s: the call did not run, and the approval is used up. Make the call again to have it decided anew.", a.ID, changed)))
				}
				// The forward records the outcome, with the approval.
				endWaitSpan(wait, outcomeApproved, a.ID)
				w, finish := held.replyWriter()
				goingAhead = true
				return w, finish, a, nil
			} else if !errors.Is(err, approval.ErrConflict) {
				return end(outcomeFailed, a, held.fail(err))
			}
			// Another call used this approval first: this one needs
			// its own.
			if a, err = service.Request(r.Context(), call); err != nil {
				return end(outcomeFailed, nil, held.fail(err))
			}
			heldID = a.ID
			continue
		case approval.Denied:
			// Every call held on a denial hears of it; using it up
			// means the next identical call asks again.
			_, _ = service.Use(r.Context(), a.ID)
			return end(outcomeDenied, a, held.answer(denialText(a)))
		case approval.Expired:
			return end(outcomeExpired, a, held.answer(fmt.Sprintf("No decision on approval %s came within %s: the call was refused and did not run.",
				a.ID, a.ExpiresAt.Sub(a.RequestedAt).Round(time.Second))))
		case approval.Cancelled:
			return end(outcomeCancelled, a, held.answer(cancelledText(a.ID, a.DecisionReason)))
		}
		if expiringID != a.ID {
			if expiry != nil {
				expiry.Stop()
			}
			expiry, expiringID = time.NewTimer(time.Until(a.ExpiresAt)), a.ID
		}
		select {
		case <-changed:
		case <-keepalive.C:
			// Also a chance to see a decision whose notice was lost
			// (a Redis subscriber reconnecting).
			held.progress(a)
		case <-expiry.C:
			if _, err := service.Expire(r.Context(), a.ID); err != nil && !errors.Is(err, approval.ErrConflict) {
				return end(outcomeFailed, a, held.fail(err))
			}
		case <-holdTimer.C:
			return end(outcomePending, a, held.pending(x.pendingAnswer(a, call)))
		case <-cancelled:
			// Answered as cancelled even if a decision came first: the
			// client no longer wants the call run.
			why := "the client cancelled the call"
			held.cancel(a.ID, why)
			return end(outcomeCancelled, a, held.answer(cancelledText(a.ID, why)))
		case <-r.Context().Done():
			// Withdrawn as the hold returns (above).
			return end(outcomeCancelled, a, nil)
		case <-service.Done():
			return end(outcomeFailed, a, held.answer(fmt.Sprintf("The approval service stopped while the call waited on approval %s; the call did not run. Make it again.", a.ID)))
		}
	}
}

// cancelledText is the answer to a call whose approval was cancelled.
func cancelledText(id, why string) string {
	return fmt.Sprintf("Approval %s was cancelled (%s): the call did not run.", id, why)
}

// denialText is the refusal of a denied call, with the approver's reason.
func denialText(a *approval.Approval) string {
	text := "Denied by " + a.Approver
	if a.Approver == "" {
		text = "Denied by an approver"
	}
	if a.DecisionReason != "" {
		return text + ": " + a.DecisionReason
	}
	return text + "."
}

// acceptsEventStream reports whether the client accepts an event stream
// in reply to its POST.
func acceptsEventStream(r *http.Request) bool {
	for _, value := range r.Header.Values("Accept") {
		for _, part := range strings.Split(value, ",") {
			if mediaType, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mediaType == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

// cancelHeldCalls tells calls held in this gateway (for reviewers, or on
// their caller's answer) that their client cancelled them
// (notifications/cancelled, in the same session). The notification goes
// on to the policy and the upstream as any other. A stateless
// upstream's anonymous callers have no session and no name: one
// cancelling an id would cancel every other's call of that id, so theirs
// cancel nothing held (their client cancels a held call by going away,
// as SDK clients do when they cancel).
func (x *exchange) cancelHeldCalls() {
	if !x.session.names() {
		return
	}
	for i := range x.body.Messages {
		id, ok := cancelledID(&x.body.Messages[i])
		if !ok {
			continue
		}
		canonical := mcpmsg.CanonicalID(id)
		if x.g.sessions.own.cancelCall(x.session, canonical) {
			x.g.logger.Info("held call cancelled by the client", zap.String("session", x.session.shown()), zap.ByteString("request_id", id))
		}
	}
}

// watchCancel makes x.cancelled follow the client's cancellations of
// the POST's one tool call, the only message a POST may have held or
// asked about, from the moment it is decided (see ownRequests.holdCall),
// and returns it: a cancel that comes while the call is decided (its
// tool list fetched, say), held or asked about stops it before it runs.
// On any other POST, or one of a caller no session or name tells apart
// (see cancelHeldCalls), it returns nil, which nothing closes.
func (x *exchange) watchCancel() <-chan struct{} {
	if x.cancelled != nil || x.body.Batch || x.legacy != nil || !x.session.names() {
		return x.cancelled
	}
	if m := &x.body.Messages[0]; m.Kind == mcpmsg.KindRequest && m.Tool != nil {
		x.cancelled, x.stopWatchCancels = x.g.sessions.own.holdCall(x.session, m.ID)
	}
	return x.cancelled
}

// stopWatchingCancel ends what watchCancel started, when the exchange
// ends.
func (x *exchange) stopWatchingCancel() {
	if x.stopWatchCancels != nil {
		x.stopWatchCancels()
	}
}

// cancelledID is the id of the request a notifications/cancelled names
// (params.requestId, as JSON), if m names one.
func cancelledID(m *mcpmsg.Message) ([]byte, bool) {
	if m.Kind != mcpmsg.KindNotification || m.Method != "notifications/cancelled" || m.Params["requestId"] == nil {
		return nil, false
	}
	id, err := json.Marshal(m.Params["requestId"])
	return id, err == nil
}

// errIDInFlight refuses a request whose id is the id of one of its
// session's requests still awaiting an answer.
func errIDInFlight(id string) error {
	return fmt.Errorf("the id %s is the id of a request still awaiting its answer in this session; use another", id)
}

// heldCall answers one held tools/call: as JSON, or in the event stream
// opened for progress notifications.
type heldCall struct {
	w         http.ResponseWriter
	r         *http.Request
	id        []byte
	service   *approval.Service
	logger    *zap.Logger
	requestID string
	// streaming is set once the reply is an event stream.
	streaming bool
	// token is the progress token, as JSON, when the client sent one.
	token []byte
	// sent counts the progress notifications sent.
	sent int
	// note ends every answer (verdict.calledAsNote).
	note string
}

// startStream answers with an event stream, to send progress on token
// (nil: no progress).
func (c *heldCall) startStream(token any) {
	if token != nil {
		raw, err := json.Marshal(token)
		if err != nil {
			return
		}
		c.token = raw
	}
	if c.streaming {
		return
	}
	c.streaming = true
	header := c.w.Header()
	header.Set("Content-Type", "text/event-stream")
	header.Set("Cache-Control", "no-cache")
	header.Del("Content-Length")
	c.w.WriteHeader(http.StatusOK)
	_ = replyfilter.WriteWithin(c.w, nil, streamWriteTimeout)
}

// progress sends one notifications/progress (MCP basic/utilities,
// "Progress") in an open stream: its progress value grows with each, as
// the specification requires.
func (c *heldCall) progress(a *approval.Approval) {
	if c.token == nil {
		return
	}
	c.sent++
	notification, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"method":  "notifications/progress",
		"params": map[string]any{
			"progressToken": json.RawMessage(c.token),
			"progress":      c.sent,
			"message":       "Waiting for approval " + a.ID,
		},
	})
	if err != nil {
		return
	}
	c.writeEvent(notification)
}

// writeEvent sends one message event on the held call's stream, at once.
func (c *heldCall) writeEvent(message []byte) {
	_ = replyfilter.WriteWithin(c.w, mcpmsg.MessageEvent(message).Encode(), streamWriteTimeout)
}

// pending ends the held call with the answer that its approval is
// pending (a tool result with isError and _meta).
func (c *heldCall) pending(result []byte) error {
	return c.end(mcpmsg.ResultResponse(c.id, result))
}

// answer ends the held call with a tool result that has isError and text.
func (c *heldCall) answer(text string) error {
	return c.end(mcpmsg.ToolErrorResult(c.id, text+c.note))
}

// end ends the held call with its response: the last event of the
// stream, or the JSON body.
func (c *heldCall) end(response []byte) error {
	if c.streaming {
		c.writeEvent(response)
		return nil
	}
	mcphttp.WriteJSON(c.w, http.StatusOK, response)
	return nil
}

// fail refuses the held call because the approval machinery failed: a
// call that needs approval never runs without one. The client is not told
// the details (they name the gateway's infrastructure); the log is.
func (c *heldCall) fail(err error) error {
	if errors.Is(err, approval.ErrTooLarge) {
		c.logger.Info("call refused: arguments too large to approve", zap.String("request_id", c.requestID), zap.Error(err))
		return c.answer(fmt.Sprintf("This call needs approval, and its arguments are too large for a person to review (at most %d KiB), so it was refused.", approval.MaxArguments>>10))
	}
	if errors.Is(err, approval.ErrTooManyPending) {
		// At Info level: the caller chooses how often (the decision log
		// records each refusal too).
		c.logger.Info("call refused: too many approvals pending", zap.String("request_id", c.requestID), zap.Error(err))
		return c.answer(fmt.Sprintf("This call needs approval, and too many approvals are waiting for a decision (%s), so it was refused: "+
			"make it again once some are decided.", strings.TrimPrefix(err.Error(), approval.ErrTooManyPending.Error()+": ")))
	}
	c.logger.Error("approval failed; call refused",
		zap.String("request_id", c.requestID), zap.Error(err))
	return c.answer("This call needs approval, and the gateway could not handle the approval (its log says why), so it was refused.")
}

// cancel cancels the approval the call waited on, the request's context
// being done or about to end. An approval decided meanwhile (the decision
// racing the cancel, or not yet seen) is used up instead, so that it runs
// no later call either: the client no longer wants the call run.
func (c *heldCall) cancel(id, why string) {
	ctx, stop := context.WithTimeout(context.WithoutCancel(c.r.Context()), cancelTimeout)
	defer stop()
	_, err := c.service.Cancel(ctx, id, why)
	if errors.Is(err, approval.ErrConflict) {
		if _, err = c.service.Use(ctx, id); errors.Is(err, approval.ErrConflict) {
			// Used already (by another call of the same binding), or
			// settled otherwise: nothing left to run.
			err = nil
		}
	}
	if err != nil {
		c.logger.Error("could not cancel approval", zap.String("id", id), zap.Error(err))
	}
}

// replyWriter returns where the approved call's reply goes, and what to
// call once it is written. In an open event stream, the upstream's reply
// follows the progress notifications: its events as they come, or its
// JSON reply as one event.
func (c *heldCall) replyWriter() (http.ResponseWriter, func()) {
	if !c.streaming {
		return c.w, func() {}
	}
	reply := &streamedReply{w: c.w, header: make(http.Header), id: c.id}
	return reply, reply.finish
}

// streamedReply writes the upstream's reply to an approved call into the
// event stream already open to the client. The upstream's headers and
// status are not sent (the stream's are); an event stream reply passes
// on event by event; a JSON reply becomes one event; anything else
// becomes a JSON-RPC error for the call. Only a JSON reply is held, up to
// replyfilter.DefaultMaxBodySize (an upstream's endless reply of another
// type grew the heap by all it sent).
type streamedReply struct {
	w        http.ResponseWriter
	header   http.Header
	id       []byte
	status   int
	stream   bool
	json     bool
	tooLarge bool
	body     bytes.Buffer
}

func (s *streamedReply) Header() http.Header { return s.header }

func (s *streamedReply) WriteHeader(status int) {
	if s.status != 0 || status < 200 {
		return
	}
	s.status = status
	mediaType, _, _ := mime.ParseMediaType(s.header.Get("Content-Type"))
	s.stream = status < 300 && mediaType == "text/event-stream"
	s.json = status < 300 && mediaType == "application/json"
}

func (s *streamedReply) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	switch {
	case s.stream:
		return s.w.Write(p)
	case !s.json || s.tooLarge:
		return len(p), nil // not passed on: finish says why
	case s.body.Len()+len(p) > replyfilter.DefaultMaxBodySize:
		s.tooLarge = true
		s.body = bytes.Buffer{}
		return len(p), nil
	}
	return s.body.Write(p)
}

// Unwrap returns the held call's ResponseWriter, for
// http.ResponseController (the write deadline of a relayed stream).
func (s *streamedReply) Unwrap() http.ResponseWriter { return s.w }

// FlushError flushes a streamed reply; http.ResponseController finds it.
func (s *streamedReply) FlushError() error {
	if s.stream {
		return http.NewResponseController(s.w).Flush()
	}
	return nil
}

// finish writes what was held back.
func (s *streamedReply) finish() {
	var last []byte
	switch {
	case s.stream:
	case s.tooLarge:
		last = mcpmsg.ErrorResponse(s.id, mcpmsg.CodeInternalError,
			fmt.Sprintf("the upstream's reply to the approved call is larger than %d bytes", replyfilter.DefaultMaxBodySize))
	case s.json && s.body.Len() > 0:
		last = s.body.Bytes()
	default:
		status := s.status
		if status == 0 {
			status = http.StatusBadGateway
		}
		last = mcpmsg.ErrorResponse(s.id, mcpmsg.CodeInternalError, fmt.Sprintf("the upstream answered the approved call with HTTP %d", status))
	}
	var event []byte
	if last != nil {
		event = mcpmsg.MessageEvent(last).Encode()
	}
	_ = replyfilter.WriteWithin(s.w, event, streamWriteTimeout)
}

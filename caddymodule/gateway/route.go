package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// route is the stage that acts on the verdicts. A single message that is
// not allowed is refused (as its transport delivers answers), or, a tool
// call that needs approval, put to its approvers (approve); anything else
// is forwarded, a batch without its refused elements.
func (x *exchange) route() error {
	if !x.body.Batch {
		if v := x.verdicts[0]; !v.allowed() {
			switch {
			case v.needsApproval() && x.legacy == nil:
				return x.approve(v)
			case x.legacy != nil:
				x.audit(v, v.refusedOutcome(), nil)
				return x.legacy.refuse(x.w, v, x.g.logger)
			default:
				x.audit(v, v.refusedOutcome(), nil)
				return writeRefusal(x.w, v)
			}
		}
	}
	return x.forward()
}

// holdThenForward holds a call for approval; once approved, it goes on as
// an allowed call.
func (x *exchange) holdThenForward(v verdict) error {
	w, finish, a, err := x.hold(v)
	if a == nil {
		return err
	}
	x.w, x.verdicts = w, []verdict{v.approved(outcomeApproved, a)}
	err = x.forward()
	finish()
	return err
}

// refuseUnsent refuses the one message of a POST at the last moment,
// before it is forwarded, for why: recorded, shown to the rest of the
// route and answered as any refusal of its transport (x.w may be a held
// call's stream, once approved).
func (x *exchange) refuseUnsent(why string) error {
	return x.refuseUnsentAs(outcomeRefused, why)
}

// refuseUnsentAs is refuseUnsent, with the outcome the audit trail
// records.
func (x *exchange) refuseUnsentAs(outcome, why string) error {
	refused := x.verdicts[0].refusedWith(why)
	x.verdicts = []verdict{refused}
	x.annotate()
	x.audit(refused, outcome, nil)
	if x.legacy != nil {
		return x.legacy.refuse(x.w, refused, x.g.logger)
	}
	return writeRefusal(x.w, refused)
}

// claimIDs holds the requests with these ids (canonical) as in flight in
// the POST's Streamable HTTP session until release is called, and fails,
// holding nothing, when one of them already is (see inFlightRequests). A
// POST whose ids are held already (a call held for approval, then
// forwarded) holds them once.
func (x *exchange) claimIDs(ids []string) (release func(), err error) {
	if x.legacy != nil || x.session.id == "" || x.idsClaimed {
		return func() {}, nil
	}
	if taken, ok := x.g.sessions.inFlight.claim(x.session, ids); !ok {
		return nil, errIDInFlight(taken)
	}
	x.idsClaimed = true
	return func() {
		x.g.sessions.inFlight.release(x.session, ids)
		x.idsClaimed = false
	}, nil
}

// forwardedRequestIDs are the canonical ids of the allowed requests among
// verdicts: those a POST forwards, whose answers its reply will carry.
func forwardedRequestIDs(verdicts []verdict) []string {
	var ids []string
	for _, v := range verdicts {
		if v.forwardsRequest() {
			ids = append(ids, mcpmsg.CanonicalID(v.message.ID))
		}
	}
	return ids
}

// forward passes the allowed messages on to the next handler, watching the
// reply.
func (x *exchange) forward() error {
	if x.legacy != nil {
		if err := x.legacy.expect(x.verdicts, x.g.listGeneration(), x.callTrail()); err != nil {
			// HTTP+SSE carries no batches: the one message is refused.
			return x.refuseUnsent(err.Error())
		}
	} else {
		select {
		case <-x.cancelled:
			// Cancelled while it was decided: the cancellation went on
			// before the call, and the upstream, not knowing the call
			// yet, would run it.
			return x.refuseUnsentAs(outcomeCancelled, "The client cancelled this call (notifications/cancelled) before the gateway forwarded it: the call did not run.")
		default:
		}
		release, err := x.claimIDs(forwardedRequestIDs(x.verdicts))
		if err != nil {
			if x.body.Batch {
				return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, err.Error())
			}
			return x.refuseUnsent(err.Error())
		}
		defer release()
	}
	for _, v := range x.verdicts {
		switch {
		case v.allowed() && v.outcome != "":
			x.audit(v, v.outcome, v.approval)
		case v.allowed():
			x.audit(v, outcomeForwarded, nil)
		default:
			x.audit(v, v.refusedOutcome(), nil)
		}
	}
	body := x.raw
	var merger *batchMerger
	if x.body.Batch {
		var answers [][]byte
		var reply func(http.ResponseWriter) error
		if body, answers, reply = x.batchForward(); reply != nil {
			return reply(x.w)
		}
		if len(answers) > 0 {
			merger = &batchMerger{ResponseWriter: x.w, answers: answers}
			x.w = merger
		}
	}
	w, finish := x.watchReply()
	err := x.pass(w, body)
	if status := replyfilter.Status(w); x.legacy != nil && (status < 200 || status > 299) {
		// An HTTP+SSE POST the upstream refused (or never answered):
		// its requests' answers will not come on the session's stream.
		x.legacy.failed(status != 0)
	}
	filterErr := finish(err)
	if merger != nil {
		merger.finish()
	}
	if errors.Is(filterErr, replyfilter.ErrReplaced) {
		// The reply was refused whole and answered with the gateway's
		// error (logged as it was refused): the exchange is complete, and
		// what the upstream's side made of the refusal is no error of it.
		return nil
	}
	if errors.Is(err, errUpstreamAborted) && filterErr != nil {
		// The gateway cut a stream it could not read: the client must
		// see it cut, not ended.
		panic(http.ErrAbortHandler)
	}
	return errors.Join(err, filterErr)
}

// errUpstreamAborted is why a reply ended before it was complete.
var errUpstreamAborted = errors.New("the upstream's reply ended before it was complete")

// pass hands body to the next handler as the request's body. On a single
// message these are the very bytes that passed the strict parse, unless a
// stage took out something of the gateway's own (an approval token, a
// sealed requestState: see exchange.rewritten), when they are the
// gateway's re-encoding of the message it decided. Since the parse refuses
// everything a lenient parser could read another way (duplicate names,
// case variants of known fields, invalid UTF-8, trailing data), the
// upstream reads exactly what the policy saw, and no canonical
// re-encoding (with its own cost and its own chance of changing a number
// or an escape the upstream depends on) is needed otherwise.
func (x *exchange) pass(w http.ResponseWriter, body []byte) error {
	r := x.r
	r.Body = io.NopCloser(bytes.NewReader(body))
	// The body's own length, never the client's chunked framing, and no
	// trailers (dropTrailers; the body reader may have filled its own).
	r.TransferEncoding, r.Trailer = nil, nil
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	x.propagateTrace(r)
	x.passed = true
	// A proxy that loses its upstream in the middle of a reply aborts
	// the request: the reply filter then tells the client, in the
	// stream, which of its requests will get no answer.
	return serveRecovering(x.next, w, r)
}

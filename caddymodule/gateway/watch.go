package gateway

import (
	"bytes"
	"net/http"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// watchReply is the last stage: it wraps the writer the next handler
// writes the upstream's reply to, so that the replies to tools/list
// requests (and any result that reads as one) lose the tools the
// permissions table blocks, a client's list teaching the catalog its
// tools' definitions as a page (see hideBlockedTools), so that
// notifications/tools/list_changed marks the server's list stale, and so
// that the requests the upstream sends the client, on their own or inside
// a result, are decided (relay.go). Every event stream is read; a JSON
// reply (which carries no request of the server's) when it answers
// tools/list, may ask for input, answers a batch, or names a quoted
// "method" or "tools" (see replyfilter's PassJSON). finish must be called
// once the next handler has returned, with the error it returned: when
// the upstream failed in the middle of an event stream (it crashed, say),
// or the gateway cut the stream (a message it refused), the requests left
// unanswered get a JSON-RPC error in the stream, so that their clients
// learn at once that no answer will come.
func (x *exchange) watchReply() (http.ResponseWriter, func(upstreamErr error) error) {
	g, session := x.g, x.session
	ids, lists := toolsListRequests(x.verdicts)
	var asOf uint64
	if len(ids) > 0 {
		// A tools/list_changed that overtakes the list makes it out of
		// date.
		asOf = g.listGeneration()
	}
	if session.id != "" && !session.legacy {
		for _, id := range ids {
			// Past the bounds the list is not remembered (nor the rest
			// of the batch's): its answer, wherever it comes, reads as a
			// tools list and is filtered all the same (see isToolsList).
			if !g.sessions.toolsLists.add(session, id, asOf) {
				break
			}
		}
	}
	cacheable := cacheableRequests(x.verdicts, x.version)
	itemListed := itemListRequests(x.verdicts)
	rl := x.newRelay()
	rl.answering(x.verdicts)
	sole, forwardsRequests := x.forwardedRequests()
	var answersOf func(id []byte) bool
	if forwardsRequests {
		// A reply to a POST of notifications alone answers nothing: it
		// is passed, or read, as before.
		answersOf = func(id []byte) bool {
			if sole != nil && bytes.Equal(id, sole) {
				// As servers answer: the id as it came (nothing to
				// canonicalize, nor a map of the POST's requests to make).
				return true
			}
			_, ours := rl.answers(id)
			return ours
		}
	}
	calls := x.followToolCalls()
	readReplyUncompressed(x.r)
	// answered holds the ids of the responses to the POST's own requests
	// that the reply carried; made with the first, since most replies are
	// read unparsed.
	var answered map[string]bool
	strayTold := false
	watchChanges := g.watchToolListChanges()
	w, finish := replyfilter.Wrap(x.w, g.guardedBySecrets(replyfilter.Hooks{
		MaxValues:    g.replyMaxValues(),
		WriteTimeout: streamWriteTimeout,
		WatchAll:     true,
		RewriteResult: g.guardResults(func(id, result []byte) ([]byte, error) {
			calls.answerResult(id, result)
			if itemListed != nil {
				if list, ok := itemListed[mcpmsg.CanonicalID(id)]; ok {
					return x.hideThenCheckItems(rl, list, id, x.version, result)
				}
			}
			result, err := x.hideStrayItems(x.version, result)
			if err != nil {
				return nil, err
			}
			if lists[mcpmsg.CanonicalID(id)] {
				g.sessions.toolsLists.take(session, id)
				return x.hideThenCheck(rl, id, x.version, result, asOf, false)
			}
			if session.id != "" && !session.legacy {
				if listAsOf, listed := g.sessions.toolsLists.take(session, id); listed {
					// Another POST's tools/list answered here: an upstream
					// that sends an answer to the latest stream of its id
					// (the TypeScript SDK's), once that POST was closed and
					// its id taken again.
					return x.hideThenCheck(rl, id, x.version, result, listAsOf, false)
				}
			}
			if isToolsList(result) {
				// A result that reads as a tools list, whatever it
				// answers: filtered as on GET streams, recorded nowhere.
				x.learnBeforeStray()
				return x.hideThenCheck(rl, id, x.version, result, 0, true)
			}
			if request, ok := rl.answers(id); ok {
				if err := x.recordTask(request, result); err != nil {
					return nil, err
				}
			}
			return rl.checkInputRequests(id, result)
		}, rl, cacheable),
		CheckError: g.guardErrors(rl),
		// A batch's reply is read whole: it may answer, besides the
		// batch's allowed requests, those the gateway refused. (Under
		// block_secrets every reply is read: guardedBySecrets.)
		PassJSON:  ids == nil && cacheable == nil && itemListed == nil && !rl.mayAskForInput() && !x.body.Batch,
		AnswersOf: answersOf,
		RefusalID: sole,
		Intercept: func(m *mcpmsg.Message) bool {
			if m.Kind == mcpmsg.KindResponse {
				// A POST's reply answers the requests the POST carried, and
				// no other: an answer to another request (a tools/list
				// held on its own POST, say) would reach the client without
				// the watch of that request's reply.
				if _, ours := rl.answers(m.ID); !ours {
					// Told once a reply: a stream may carry them without end.
					if !strayTold {
						strayTold = true
						x.g.logger.Warn("upstream answered, on a POST's reply, a request the POST did not carry; dropped (and any more in this reply)",
							zap.String("upstream", g.cfg.Upstream), zap.String("request_id", g.host.RequestID(x.r)), zap.ByteString("id", m.ID))
					}
					return true
				}
			}
			return rl.intercept(m)
		},
		OnMessage: func(m *mcpmsg.Message) {
			if m.Kind == mcpmsg.KindResponse {
				id := mcpmsg.CanonicalID(m.ID)
				if _, ours := rl.carried(m.ID); ours {
					// Only the POST's own requests: an upstream's answers
					// to others (dropped) would grow the set for as long
					// as its stream lasts.
					if answered == nil {
						answered = map[string]bool{}
					}
					answered[id] = true
				}
				if m.IsError {
					calls.answerError(m.ID)
					if lists[id] {
						// An error answers a tools/list as a result does.
						g.sessions.toolsLists.took(session, m.ID)
					}
				}
			}
			watchChanges(m)
		},
		OnError: x.logReplyError,
	}))
	return w, func(upstreamErr error) error {
		why := ""
		switch {
		case replyfilter.Cut(w):
			// (The proxy behind then fails too, writing to a cut stream.)
			why = "the gateway cut the upstream's reply before its answer (part of it could not be relayed: the gateway's log says why); " +
				"the request may or may not have run"
		case upstreamErr != nil:
			why = "the upstream failed before it answered (its connection ended); the request may or may not have run"
		}
		if why != "" {
			for _, v := range x.verdicts {
				m := v.message
				if v.forwardsRequest() && !answered[mcpmsg.CanonicalID(m.ID)] {
					_ = replyfilter.Inject(w, mcpmsg.ErrorResponse(m.ID, mcpmsg.CodeInternalError, why))
				}
			}
		}
		err := finish()
		if reply := replyfilter.PassedUnreadable(w); reply != nil {
			calls.answerUnreadable(reply)
		}
		calls.end(x.unansweredOutcome(w))
		return err
	}
}

// forwardedRequests reports whether the POST forwards requests, and the
// id of the one it forwards (for the error that replaces a reply the
// gateway refuses); sole is nil when it forwards several, or none.
func (x *exchange) forwardedRequests() (sole []byte, any bool) {
	n := 0
	for _, v := range x.verdicts {
		if v.forwardsRequest() {
			n++
			sole = v.message.ID
		}
	}
	if n != 1 {
		sole = nil
	}
	return sole, n > 0
}

// replyMaxValues is the most JSON values a reply may hold: as many times
// as many as a request may (the configured max_values).
func (g *Gateway) replyMaxValues() int {
	return replyfilter.ReplyValuesPerRequestValue * g.cfg.Limits.EffectiveMaxValues()
}

// readReplyUncompressed asks the upstream for an uncompressed reply, for
// replies the gateway reads: it refuses compressed ones rather than guess.
func readReplyUncompressed(r *http.Request) {
	r.Header.Set("Accept-Encoding", "identity")
}

// logReplyError logs why a reply was refused or a stream cut.
func (x *exchange) logReplyError(err error) {
	x.g.logger.Error("upstream reply refused or cut",
		zap.String("upstream", x.g.cfg.Upstream),
		zap.String("request_id", x.g.host.RequestID(x.r)),
		zap.Error(err))
}

package gateway

import (
	"context"
	"errors"
	"sync"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// streamWriteTimeout bounds each write of an event stream to a client
// (replyfilter.Hooks.WriteTimeout): one that stops reading has its stream
// cut, and the messages waiting to go on it (answers, refusals) given up,
// rather than wait, with the POSTs that add them, for as long as its
// connection stays open. A variable for the tests.
var streamWriteTimeout = replyfilter.DefaultWriteTimeout

// stream passes a GET on and watches the stream it opens: for tool list
// changes, for the requests the upstream sends the client, and, on the
// HTTP+SSE transport, for the endpoint event that opens a session.
func (x *exchange) stream() error {
	g := x.g
	readReplyUncompressed(x.r)
	x.version = x.r.Header.Get(mcphttp.HeaderProtocolVersion)
	if mcphttp.CheckVersion(x.version) != nil {
		x.version = mcphttp.DefaultVersion
	}
	rl := x.newRelay()
	watchChanges := g.watchToolListChanges()
	var stream *legacyStream
	// answering is the HTTP+SSE request the response being relayed
	// answers, taken from the stream as the response comes (OnMessage)
	// for the result's rewrite that follows it (RewriteResult).
	var answering struct {
		id      string
		request answeredRequest
		ok      bool
		// counted: the tool call it answers was counted (toolCallEnded).
		counted bool
	}
	rl.answeredOnStream = func(id []byte) (answeredRequest, bool) {
		if answering.id != mcpmsg.CanonicalID(id) {
			return answeredRequest{}, false
		}
		return answering.request, answering.ok
	}
	var observed = x.w
	observed, finish := replyfilter.Wrap(x.w, g.guardedBySecrets(replyfilter.Hooks{
		MaxValues:    g.replyMaxValues(),
		WriteTimeout: streamWriteTimeout,
		WatchAll:     true,
		OpensStream:  true,
		RewriteResult: g.guardResults(func(id, result []byte) ([]byte, error) {
			if stream != nil && answering.ok && answering.request.tool != "" && !answering.counted && answering.id == mcpmsg.CanonicalID(id) {
				answering.counted = true
				stream.toolCallEnded(answering.request, resultOutcome(result))
			}
			if request, ok := rl.answers(id); ok {
				if list, ok := itemLists[request.method]; ok {
					// An HTTP+SSE session's resources or prompts.
					return x.hideThenCheckItems(rl, list, id, rl.version, result)
				}
			}
			result, err := x.hideStrayItems(rl.version, result)
			if err != nil {
				return nil, err
			}
			if stream != nil {
				if asOf, listed := stream.toolsList(id); listed {
					return x.hideThenCheck(rl, id, rl.version, result, asOf, false)
				}
			} else if rl.session.id != "" {
				if asOf, listed := g.sessions.toolsLists.take(rl.session, id); listed {
					// The response to a tools/list whose POST stream was
					// lost, replayed on a resumed stream.
					return x.hideThenCheck(rl, id, rl.version, result, asOf, false)
				}
			}
			if isToolsList(result) {
				// A result that reads as a tools list, whose request the
				// session no longer remembers (past its bounds, or a
				// request whose id it forgot): filtered as one.
				if stream == nil {
					x.learnBeforeStray()
				}
				return x.hideThenCheck(rl, id, rl.version, result, 0, true)
			}
			return rl.checkInputRequests(id, result)
		}, rl, nil),
		CheckError: g.guardErrors(rl),
		Intercept: func(m *mcpmsg.Message) bool {
			if stream != nil && stream.deliver(m) {
				return true
			}
			return rl.intercept(m)
		},
		Endpoint: func(uri string) (string, error) {
			session, endpoint, client, err := x.startLegacySession(uri)
			if err != nil {
				return "", err
			}
			rl.session, rl.endpoint = session, endpoint
			if x.r.Header.Get(mcphttp.HeaderProtocolVersion) == "" {
				rl.version = mcphttp.LegacySSEDefaultVersion
			}
			stream = newLegacyStream(func(message []byte) error { return replyfilter.Inject(observed, message) })
			stream.metrics = &g.metrics
			rl.capabilities = stream.capabilities
			g.sessions.legacy.open(session, stream)
			// Once the client is gone its stream is over, although the
			// upstream's reply may take a while to end: the session's
			// endpoint answers 404 from then on, and nothing is written
			// to a response whose connection may be gone.
			context.AfterFunc(x.r.Context(), func() {
				stream.end()
				g.sessions.legacy.close(session, stream)
			})
			return client, nil
		},
		OnMessage: func(m *mcpmsg.Message) {
			watchChanges(m)
			if stream != nil && m.Kind == mcpmsg.KindResponse {
				answering.id = mcpmsg.CanonicalID(m.ID)
				answering.request, answering.ok = stream.take(m.ID)
				answering.counted = answering.ok && m.IsError
				if answering.counted {
					stream.toolCallEnded(answering.request, rpcError)
				}
			}
			if !m.IsError {
				return
			}
			// An error answers a tools/list as a result does: it is
			// no longer awaited.
			if stream != nil {
				stream.toolsList(m.ID)
			} else if rl.session.id != "" {
				g.sessions.toolsLists.took(rl.session, m.ID)
			}
		},
		OnError: x.logReplyError,
	}))
	// An HTTP+SSE session ends with its stream: the requests still
	// awaiting their answers are told none will come, before the reply
	// finishes; deferred too, for when the proxy behind aborts the
	// response (http.ErrAbortHandler, as on a stream the gateway cut),
	// which unwinds through here.
	var ended sync.Once
	endSession := func() {
		ended.Do(func() {
			if stream == nil {
				return
			}
			why := "the upstream's session stream ended before its answer; the request may or may not have run"
			if replyfilter.Cut(observed) {
				why = "the gateway cut the upstream's session stream before its answer (part of it could not be relayed: the gateway's log says why); " +
					"the request may or may not have run"
			}
			if x.r.Context().Err() != nil {
				// The client went away (the stream's AfterFunc may not
				// have run yet): it gave up on the calls it awaited.
				stream.end()
			}
			stream.endWith(why)
			// A POST that found the stream open may be writing to it
			// still: that write is waited for, and no later one made.
			replyfilter.EndInjecting(observed)
			g.sessions.legacy.close(rl.session, stream)
		})
	}
	defer endSession()
	err := x.next.ServeHTTP(observed, x.r)
	endSession()
	filterErr := finish()
	if errors.Is(filterErr, replyfilter.ErrReplaced) {
		// Refused whole and answered with the gateway's error, logged as
		// it was refused: the exchange is complete (see forward).
		return nil
	}
	return errors.Join(err, filterErr)
}

// isToolsList reports whether a result may be read as a tools/list
// result, and so must be filtered as one (or refused, if it cannot be
// read strictly).
func isToolsList(result []byte) bool {
	return catalog.MayBeToolsList(result)
}

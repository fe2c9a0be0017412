package stdio

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// This file, route.go and reply.go are the HTTP side of the pump: MCP's
// Streamable HTTP transport, server side, for a server whose messages
// come as they are from a stdio connection. This file takes what the
// client sends to the server; route.go, what the server sends to the
// client; reply.go writes it. The go-sdk's mcp.StreamableServerTransport
// is that transport for the SDK's own servers, and does not fit a pump:
//
//   - it puts a server's request or notification on the stream of the
//     request it relates to only when it is written with a context that
//     carries that request's id, which only the SDK's ServerSession can
//     make (the context key is unexported): a pump could send a stdio
//     server's progress notifications on the GET stream alone, and would
//     lose them when there is none;
//   - it reads the MCP-Protocol-Version header only from a context value
//     that only the SDK's StreamableHTTPHandler sets (unexported too), so
//     it refuses every 2026-07-28 request handed to it directly;
//   - without the SDK's Server, it refuses every method that is not a
//     standard one.
//
// So this package keeps the SDK's framing and messages and writes the
// rest: POST, GET and DELETE, replies as JSON or as event streams, and
// where each message goes.

// post forwards the messages of a client's POST to the server and answers
// the POST: 202 when it holds no request, else a reply that carries the
// responses, and whatever else the server sends meanwhile that goes there
// (see route). It reports whether every request got its response.
func (s *session) post(w http.ResponseWriter, r *http.Request, msgs []jsonrpc.Message, status func(*jsonrpc.Response) int) bool {
	var ids []jsonrpc.ID
	for _, msg := range msgs {
		if request, ok := msg.(*jsonrpc.Request); ok && request.IsCall() {
			ids = append(ids, request.ID)
		}
	}
	if len(ids) == 0 {
		for _, msg := range msgs {
			if err := s.send(s.cancelled(msg)); err != nil {
				failure := writeFailure(err)
				s.end(failure)
				writeError(w, http.StatusBadGateway, jsonrpc.ID{}, codeServerError, failure.message)
				return false
			}
		}
		w.WriteHeader(http.StatusAccepted)
		return true
	}

	rep := newReply(w, ids, len(msgs) == 1, status)
	if len(rep.pending) != len(ids) {
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "the POST holds two requests with the same id")
		return false
	}
	rep.mu.Lock()
	s.mu.Lock()
	if s.ended != nil {
		ended := s.ended
		s.mu.Unlock()
		rep.mu.Unlock()
		if s.stateless {
			// A pooled process that ended after it was lent: the client
			// has no session to have lost, and its request never ran.
			writeError(w, http.StatusServiceUnavailable, ids[0], codeServerError,
				"the MCP server process that was to serve the request ended before it reached it ("+ended.message+"); it did not run: retry")
			return false
		}
		writeError(w, http.StatusNotFound, jsonrpc.ID{}, codeSessionNotFound, "session ended: "+ended.message)
		return false
	}
	for _, id := range ids {
		if _, inProgress := s.inProgress[id]; inProgress {
			s.mu.Unlock()
			rep.mu.Unlock()
			writeError(w, http.StatusBadRequest, id, jsonrpc.CodeInvalidRequest, "a request with this id is already in progress in this session")
			return false
		}
	}
	// The requests the POST's cancellations name, as the server knows
	// them, found in the POST's order: a cancellation before a request
	// that takes the id it names does not cancel that request.
	cancels := make(map[int]jsonrpc.ID)
	for i, msg := range msgs {
		if id, ok := cancelledID(msg); ok {
			if own, found := s.serverIDLocked(id); found {
				cancels[i] = own
			}
		}
		if request, ok := msg.(*jsonrpc.Request); ok && request.IsCall() {
			raw := metaOf(request.Params)["progressToken"]
			c := &call{reply: rep, token: progressToken(raw)}
			if c.token != "" {
				// The server gets a token of the gateway's, so that its
				// progress about one request, however late, is never
				// taken for another's: a pooled process serves one client
				// after another, whose tokens may be alike (SDKs count
				// them from 0), and a session's client may give the token
				// of a request it cancelled or left (on which the server
				// may still be at work) to its next (found by a review).
				own := strconv.Quote(gatewayTokenPrefix + rand.Text())
				if params, err := withMember(request.Params, "_meta", "progressToken", json.RawMessage(own)); err == nil {
					request.Params = params
					s.clientTokens[own] = raw
					c.token = own
				}
			}
			// Ids too: an answer that comes late or twice, for a request
			// no longer awaited, must find no request that took its id
			// since: a pooled process serves one client after another,
			// whose ids are alike (SDK clients count them from 1), and a
			// session's client may reuse the id of a request it cancelled
			// or left (the TypeScript SDK's, resuming a session with a new
			// Client, counts from 0 again; found by an interoperability
			// run). The client gets its own id back with the answer (see
			// route), and a cancellation names the gateway's (cancelled).
			c.clientID = request.ID
			request.ID = gatewayID()
			s.inProgress[c.clientID] = request.ID
			s.calls[request.ID] = c
			if c.token != "" {
				s.progress[c.token] = rep
			}
		}
	}
	var backlog []backlogged
	if s.stateless || asks(msgs) {
		s.posts = append(s.posts, rep)
		backlog = s.takeBacklogLocked()
	}
	s.mu.Unlock()
	// What waited in the backlog goes first, before the pump can deliver
	// anything newer to this reply (it waits for rep.mu).
	for _, m := range backlog {
		_ = rep.deliverLocked(m.request, m.data)
	}
	rep.mu.Unlock()

	for i, msg := range msgs {
		if own, ok := cancels[i]; ok {
			msg = s.cancel(msg, own)
		}
		if err := s.send(msg); err != nil {
			s.end(writeFailure(err))
			break
		}
	}
	select {
	case <-rep.done:
	case <-r.Context().Done():
	}
	s.mu.Lock()
	s.detachLocked(rep)
	s.mu.Unlock()
	rep.close()
	return rep.answered()
}

// gatewayTokenPrefix begins the progress tokens the server gets in place
// of its clients' (see post).
const gatewayTokenPrefix = "mcpgate-progress-"

// gatewayID is a request id of the gateway's own, which no client and no
// earlier request uses.
func gatewayID() jsonrpc.ID {
	id, _ := jsonrpc.MakeID("mcpgate-request-" + rand.Text())
	return id
}

// serveGET holds the client's GET stream open for what the server sends
// (see route) until the client leaves or the session ends.
func (s *session) serveGET(w http.ResponseWriter, r *http.Request) {
	rep := newStreamReply(w)
	rep.mu.Lock()
	s.mu.Lock()
	switch {
	case s.ended != nil:
		ended := s.ended
		s.mu.Unlock()
		rep.mu.Unlock()
		writeError(w, http.StatusNotFound, jsonrpc.ID{}, codeSessionNotFound, "session ended: "+ended.message)
		return
	case s.get != nil:
		s.mu.Unlock()
		rep.mu.Unlock()
		writeError(w, http.StatusConflict, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "this session already has a GET stream open")
		return
	}
	s.get = rep
	backlog := s.takeBacklogLocked()
	s.mu.Unlock()
	rep.openLocked()
	for _, m := range backlog {
		_ = rep.deliverLocked(m.request, m.data)
	}
	rep.mu.Unlock()

	select {
	case <-r.Context().Done():
	case <-s.done:
	case <-rep.done:
	}
	s.mu.Lock()
	s.detachLocked(rep)
	s.mu.Unlock()
	rep.close()
}

// call sends a request of the gateway's own and waits for the response.
func (s *session) call(ctx context.Context, request *jsonrpc.Request) (*jsonrpc.Response, error) {
	c := &call{answer: make(chan *jsonrpc.Response, 1)}
	s.mu.Lock()
	if s.ended != nil {
		s.mu.Unlock()
		return nil, s.ended
	}
	s.calls[request.ID] = c
	s.mu.Unlock()
	if err := s.send(request); err != nil {
		failure := writeFailure(err)
		s.end(failure)
		return nil, failure
	}
	select {
	case response := <-c.answer:
		return response, nil
	case <-s.done:
		return nil, s.ended
	case <-ctx.Done():
		s.mu.Lock()
		s.forgetLocked(request.ID)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

// send writes a message to the server's stdin.
func (s *session) send(msg jsonrpc.Message) error {
	return s.proc.conn.Write(context.Background(), msg)
}

// cancelled stops waiting for the response to a request that the client
// cancels with msg, if msg is such a notification (a server need not
// answer a cancelled request: basic/utilities/cancellation), and returns
// msg as the server gets it: naming the request by the id the gateway
// gave it (see post). Any other message is returned as it is.
func (s *session) cancelled(msg jsonrpc.Message) jsonrpc.Message {
	id, ok := cancelledID(msg)
	if !ok {
		return msg
	}
	s.mu.Lock()
	own, found := s.serverIDLocked(id)
	s.mu.Unlock()
	if !found {
		return msg
	}
	return s.cancel(msg, own)
}

// cancelledID is the id of the request msg cancels, if msg is a
// notifications/cancelled.
func cancelledID(msg jsonrpc.Message) (jsonrpc.ID, bool) {
	request, ok := msg.(*jsonrpc.Request)
	if !ok || request.IsCall() || request.Method != "notifications/cancelled" {
		return jsonrpc.ID{}, false
	}
	var params struct {
		RequestID any `json:"requestId"`
	}
	if json.Unmarshal(request.Params, &params) != nil {
		return jsonrpc.ID{}, false
	}
	id, err := jsonrpc.MakeID(params.RequestID)
	return id, err == nil
}

// serverIDLocked is the id the server knows the client's request id by:
// of a request in progress, or else of one left (see session.left).
func (s *session) serverIDLocked(id jsonrpc.ID) (jsonrpc.ID, bool) {
	if own, ok := s.inProgress[id]; ok {
		return own, true
	}
	own, ok := s.left[id]
	return own, ok
}

// cancel stops waiting for the response to the request the server knows
// as own, which msg, a notifications/cancelled, cancels, and returns msg
// naming it so.
func (s *session) cancel(msg jsonrpc.Message, own jsonrpc.ID) jsonrpc.Message {
	s.mu.Lock()
	c := s.calls[own]
	s.forgetLocked(own)
	s.mu.Unlock()
	if c != nil && c.reply != nil {
		c.reply.abandon(c.clientID)
	}
	raw, err := json.Marshal(own.Raw())
	if err != nil {
		return msg
	}
	request := msg.(*jsonrpc.Request)
	if params, err := withMember(request.Params, "", "requestId", raw); err == nil {
		return &jsonrpc.Request{Method: request.Method, Params: params}
	}
	return msg
}

// maxAnswered bounds the progress tokens of answered requests a session
// keeps (see session.answeredTokens), and maxLeft the ids of requests
// left (session.left).
const (
	maxAnswered = 1024
	maxLeft     = 1024
)

// answeredLocked takes the response to id, the server's: the request is
// no longer awaited; in a session, the client's progress token is kept
// for the progress the server may report after its answer.
func (s *session) answeredLocked(id jsonrpc.ID) *call {
	c := s.calls[id]
	if own, ok := s.clientTokens[c.tokenOrNone()]; ok && !s.stateless {
		s.answeredTokens[c.token] = own
		if forgotten, ok := s.answeredOrder.Add(c.token); ok {
			delete(s.answeredTokens, forgotten)
		}
	}
	s.forgetLocked(id)
	return c
}

// tokenOrNone is the progress token the server got for c, "" for none
// (or no call).
func (c *call) tokenOrNone() string {
	if c == nil {
		return ""
	}
	return c.token
}

// forgetLocked stops waiting for the response to id (the gateway's). Its
// answer, should it come after all, reaches no one.
func (s *session) forgetLocked(id jsonrpc.ID) {
	if c := s.calls[id]; c != nil {
		delete(s.calls, id)
		if s.inProgress[c.clientID] == id {
			delete(s.inProgress, c.clientID)
		}
		if c.token != "" && s.progress[c.token] == c.reply {
			delete(s.progress, c.token)
		}
		delete(s.clientTokens, c.token)
	}
}

// detachLocked forgets a reply that has ended, and the requests it was
// waiting for: their responses have no one to go to.
func (s *session) detachLocked(rep *reply) {
	if s.get == rep {
		s.get = nil
	}
	s.posts = slices.DeleteFunc(s.posts, func(r *reply) bool { return r == rep })
	for id, c := range s.calls {
		if c.reply == rep {
			if c.clientID.IsValid() {
				s.left[c.clientID] = id
				if forgotten, ok := s.leftOrder.Add(c.clientID); ok {
					delete(s.left, forgotten)
				}
			}
			s.forgetLocked(id)
		}
	}
}

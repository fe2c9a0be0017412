package stdio

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
)

// This file and reply.go are the HTTP side of the pump: MCP's Streamable
// HTTP transport, server side, for a server whose messages come as they
// are from a stdio connection. The go-sdk's mcp.StreamableServerTransport
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
// where each message goes (see route).

// maxBacklog bounds the messages a server sends while its client has no
// stream open to receive them; past it the oldest is dropped (a request
// among them is answered with an error, so the server does not wait).
const maxBacklog = 64

// askingMethods are the requests during which a server asks its client
// for something (sampling, elicitation, roots): the methods whose results
// may ask for input under MCP 2026-07-28 (basic/patterns/mrtr).
var askingMethods = []string{"tools/call", "prompts/get", "resources/read"}

// session is one client's conversation with one server process: the
// message pump between the process's stdio connection and the client's
// HTTP requests. A session serves one client; a stateless session is a
// pooled process that serves stateless clients one request at a time.
type session struct {
	id        string
	srv       *Server
	proc      *process
	logger    *zap.Logger
	stateless bool
	// onStopped runs once the process is reaped.
	onStopped func()
	// initialized is what the server answered the gateway's own
	// initialize (pooled sessions only).
	initialized *mcp.InitializeResult

	// done is closed when the session ends; stopped once its process is
	// reaped.
	done    chan struct{}
	stopped chan struct{}

	mu sync.Mutex
	// calls are the requests forwarded to the server and not answered yet.
	calls map[jsonrpc.ID]*call
	// progress maps the progress tokens of those requests to the replies
	// that carry their progress notifications.
	progress map[string]*reply
	// posts are the open replies to POSTs that carry what the server sends
	// of its own accord when there is no GET stream (see route), oldest
	// first; get is the open GET stream.
	posts []*reply
	get   *reply
	// backlog holds what the server sent while no reply was open.
	backlog []*jsonrpc.Request
	ended   *ending
	// active counts POSTs in progress; the idle timer runs while it is 0.
	active int
	idle   *time.Timer
	// drained, when set, is closed as active drops to 0.
	drained chan struct{}
}

// call is a request forwarded to the server: the client's, answered
// through its reply, or the gateway's own, answered on answer.
type call struct {
	reply  *reply
	answer chan *jsonrpc.Response
	token  string
}

// ending is why a session ended: the message of the JSON-RPC error that
// its pending requests are answered with.
type ending struct {
	message string
	// kill stops the process at once rather than gracefully.
	kill bool
}

func (e *ending) Error() string { return e.message }

func newSession(srv *Server, id string, proc *process, stateless bool, logger *zap.Logger, onStopped func()) *session {
	s := &session{
		id:        id,
		srv:       srv,
		proc:      proc,
		logger:    logger,
		stateless: stateless,
		onStopped: onStopped,
		done:      make(chan struct{}),
		stopped:   make(chan struct{}),
		calls:     make(map[jsonrpc.ID]*call),
		progress:  make(map[string]*reply),
	}
	s.idle = time.AfterFunc(srv.cfg.IdleTimeout, func() {
		s.end(&ending{message: "the session was idle for " + srv.cfg.IdleTimeout.String() + " and has ended; initialize a new one"})
	})
	return s
}

// run owns the process: when the session ends, or the process exits, it
// stops the process and closes the connection, which ends the pump.
func (s *session) run() {
	select {
	case <-s.proc.exited:
		s.end(&ending{message: s.proc.exitReason()})
	case <-s.done:
	}
	if s.ended.kill {
		s.proc.kill()
	} else {
		s.proc.stop(s.srv.cfg.StopGrace)
	}
	s.proc.conn.Close()
	close(s.stopped)
	s.onStopped()
}

// pump reads what the server writes and routes it to the client, until
// the connection ends.
func (s *session) pump() {
	for {
		msg, err := s.proc.conn.Read(context.Background())
		if err != nil {
			s.end(s.readFailure(err))
			return
		}
		s.route(msg)
	}
}

// readFailure explains why reading from the server failed: when its
// stdout ended because it exited, that (with its last stderr line) is the
// reason.
func (s *session) readFailure(err error) *ending {
	if !errors.Is(err, io.EOF) {
		return &ending{message: "reading from the MCP server: " + err.Error()}
	}
	timer := time.NewTimer(s.srv.cfg.StopGrace)
	defer timer.Stop()
	select {
	case <-s.proc.exited:
		return &ending{message: s.proc.exitReason()}
	case <-s.done:
		return s.ended
	case <-timer.C:
		return &ending{message: "the MCP server closed its stdout"}
	}
}

// route sends one message from the server to where the client reads it:
// a response to the reply of its request; a progress notification to the
// reply of the request it reports on; anything else (a stdio server does
// not say what it relates to) to the GET stream, or else to the reply of
// the newest request during which a server asks its client things (a
// tools/call: that is where sampling and elicitation come from), or else
// to the backlog, until the client opens one of those. Never to the reply
// of another request: who sent it may read nothing but its response (as
// mcp_policy, fetching tools/list on a client's behalf, does).
func (s *session) route(msg jsonrpc.Message) {
	data, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		s.logger.Error("encoding a message from the server", zap.Error(err))
		return
	}
	if response, ok := msg.(*jsonrpc.Response); ok {
		s.mu.Lock()
		c := s.calls[response.ID]
		s.forgetLocked(response.ID)
		s.mu.Unlock()
		switch {
		case c == nil:
			s.logger.Debug("dropping a response to no pending request", zap.Any("id", response.ID.Raw()))
		case c.reply == nil:
			c.answer <- response
		default:
			_ = c.reply.deliver(response, data)
		}
		return
	}
	request := msg.(*jsonrpc.Request)
	if s.stateless && request.IsCall() {
		s.refuse(request, jsonrpc.CodeMethodNotFound,
			"the client is stateless (MCP 2026-07-28) and cannot answer server requests; connect with a session to use sampling, elicitation or roots")
		return
	}
	for {
		s.mu.Lock()
		target, dropped := s.targetLocked(request)
		s.mu.Unlock()
		if dropped != nil {
			s.refuse(dropped, codeServerError, "the client had no stream open to receive this request")
		}
		if target == nil || target.deliver(request, data) == nil {
			return
		}
		// The reply ended meanwhile: forget it and choose again.
		s.mu.Lock()
		s.detachLocked(target)
		s.mu.Unlock()
	}
}

// targetLocked chooses the reply that carries a request or notification
// from the server. When there is none it keeps the message in the backlog
// (a stateless session drops it: its client reads only its own reply),
// and returns nil and, if the backlog overflowed with a request, that
// request, for the caller to refuse.
func (s *session) targetLocked(request *jsonrpc.Request) (target *reply, dropped *jsonrpc.Request) {
	if s.ended != nil {
		return nil, nil
	}
	if request.Method == "notifications/progress" {
		if target := s.progress[notifiedToken(request.Params)]; target != nil {
			return target, nil
		}
	}
	if s.get != nil {
		return s.get, nil
	}
	if len(s.posts) > 0 {
		return s.posts[len(s.posts)-1], nil
	}
	if s.stateless {
		return nil, nil
	}
	if len(s.backlog) == maxBacklog {
		if s.backlog[0].IsCall() {
			dropped = s.backlog[0]
		}
		s.backlog = s.backlog[1:]
	}
	s.backlog = append(s.backlog, request)
	return nil, dropped
}

// refuse answers a request from the server on the client's behalf.
func (s *session) refuse(request *jsonrpc.Request, code int64, message string) {
	response := &jsonrpc.Response{ID: request.ID, Error: &jsonrpc.Error{Code: code, Message: message}}
	if err := s.send(response); err != nil {
		s.end(writeFailure(err))
	}
}

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
			s.cancelled(msg)
			if err := s.send(msg); err != nil {
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
		writeError(w, http.StatusNotFound, jsonrpc.ID{}, codeSessionNotFound, "session ended: "+ended.message)
		return false
	}
	for _, id := range ids {
		if s.calls[id] != nil {
			s.mu.Unlock()
			rep.mu.Unlock()
			writeError(w, http.StatusBadRequest, id, jsonrpc.CodeInvalidRequest, "a request with this id is already in progress in this session")
			return false
		}
	}
	for _, msg := range msgs {
		if request, ok := msg.(*jsonrpc.Request); ok && request.IsCall() {
			c := &call{reply: rep, token: progressToken(metaOf(request.Params)["progressToken"])}
			s.calls[request.ID] = c
			if c.token != "" {
				s.progress[c.token] = rep
			}
		}
	}
	var backlog []*jsonrpc.Request
	if s.stateless || asks(msgs) {
		s.posts = append(s.posts, rep)
		backlog, s.backlog = s.backlog, nil
	}
	s.mu.Unlock()
	// What waited in the backlog goes first, before the pump can deliver
	// anything newer to this reply (it waits for rep.mu).
	for _, request := range backlog {
		if data, err := jsonrpc.EncodeMessage(request); err == nil {
			_ = rep.deliverLocked(request, data)
		}
	}
	rep.mu.Unlock()

	for _, msg := range msgs {
		s.cancelled(msg)
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
	backlog := s.backlog
	s.backlog = nil
	s.mu.Unlock()
	rep.openLocked()
	for _, request := range backlog {
		if data, err := jsonrpc.EncodeMessage(request); err == nil {
			_ = rep.deliverLocked(request, data)
		}
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
// cancels with msg, if msg is such a notification: a server need not
// answer a cancelled request (basic/utilities/cancellation).
func (s *session) cancelled(msg jsonrpc.Message) {
	request, ok := msg.(*jsonrpc.Request)
	if !ok || request.IsCall() || request.Method != "notifications/cancelled" {
		return
	}
	var params struct {
		RequestID any `json:"requestId"`
	}
	if json.Unmarshal(request.Params, &params) != nil {
		return
	}
	id, err := jsonrpc.MakeID(params.RequestID)
	if err != nil {
		return
	}
	s.mu.Lock()
	c := s.calls[id]
	s.forgetLocked(id)
	s.mu.Unlock()
	if c != nil && c.reply != nil {
		c.reply.abandon(id)
	}
}

// forgetLocked stops waiting for the response to id.
func (s *session) forgetLocked(id jsonrpc.ID) {
	if c := s.calls[id]; c != nil {
		delete(s.calls, id)
		if c.token != "" && s.progress[c.token] == c.reply {
			delete(s.progress, c.token)
		}
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
			s.forgetLocked(id)
		}
	}
}

// begin notes a POST in progress, which keeps the session from idling;
// it reports false if the session has ended.
func (s *session) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return false
	}
	s.active++
	s.idle.Stop()
	return true
}

// finish notes the end of a POST that begin let in.
func (s *session) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.active > 0 {
		return
	}
	if s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
	if s.ended == nil {
		s.idle.Reset(s.srv.cfg.IdleTimeout)
	}
}

// drain ends the session once no POST is in progress, or after grace.
func (s *session) drain(grace time.Duration, why *ending) {
	s.mu.Lock()
	var drained chan struct{}
	if s.ended == nil && s.active > 0 {
		drained = make(chan struct{})
		s.drained = drained
	}
	s.mu.Unlock()
	if drained != nil {
		timer := time.NewTimer(grace)
		select {
		case <-drained:
		case <-s.done:
		case <-timer.C:
		}
		timer.Stop()
	}
	s.end(why)
}

// end ends the session, once: every request still waiting for the server
// is answered with the reason, the session leaves the table, and run
// stops the process.
func (s *session) end(why *ending) {
	s.mu.Lock()
	if s.ended != nil {
		s.mu.Unlock()
		return
	}
	s.ended = why
	s.idle.Stop()
	var replies []*reply
	for _, c := range s.calls {
		if c.reply != nil && !slices.Contains(replies, c.reply) {
			replies = append(replies, c.reply)
		}
	}
	get := s.get
	s.calls, s.progress, s.posts, s.get, s.backlog = nil, nil, nil, nil, nil
	close(s.done)
	s.mu.Unlock()

	s.srv.unlist(s, why)
	for _, rep := range replies {
		rep.fail(codeServerError, why.message)
	}
	if get != nil {
		get.close()
	}
	s.logger.Info("session ended", zap.String("reason", why.message))
}

// asks reports whether a POST holds a request during which a server asks
// its client things (see askingMethods).
func asks(msgs []jsonrpc.Message) bool {
	for _, msg := range msgs {
		if request, ok := msg.(*jsonrpc.Request); ok && request.IsCall() && slices.Contains(askingMethods, request.Method) {
			return true
		}
	}
	return false
}

// writeFailure is the ending of a session whose server could not be
// written to.
func writeFailure(err error) *ending {
	return &ending{message: "writing to the MCP server: " + err.Error()}
}

// metaOf returns the _meta member of a request's params, nil if none.
func metaOf(params json.RawMessage) map[string]json.RawMessage {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if len(params) == 0 || json.Unmarshal(params, &p) != nil {
		return nil
	}
	return p.Meta
}

// progressToken returns a progress token (raw JSON: a string or a
// number) in a form that compares equal for equal tokens; "" when there
// is none.
func progressToken(raw json.RawMessage) string {
	var token any
	if len(raw) == 0 || json.Unmarshal(raw, &token) != nil {
		return ""
	}
	switch token.(type) {
	case string, float64:
		canonical, _ := json.Marshal(token)
		return string(canonical)
	}
	return ""
}

// notifiedToken returns the progress token of a notifications/progress.
func notifiedToken(params json.RawMessage) string {
	var p struct {
		Token json.RawMessage `json:"progressToken"`
	}
	if json.Unmarshal(params, &p) != nil {
		return ""
	}
	return progressToken(p.Token)
}

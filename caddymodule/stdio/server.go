// Package stdio serves an MCP server that speaks over stdio (a program
// the gateway starts) on MCP's Streamable HTTP transport: each session
// gets a process of its own, started on initialize and stopped when the
// session ends, and a message pump between the two. Stateless clients
// (MCP 2026-07-28) are served by a small pool of warm processes.
//
// It knows nothing of Caddy: the mcp_stdio module (package stdiomodule)
// wraps a Server as a Caddy handler.
package stdio

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// maxEndings bounds the ended sessions whose reason the gateway keeps,
// to tell the requests that still name them why they ended.
const maxEndings = 1024

// Header names of the Streamable HTTP transport.
const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "Mcp-Protocol-Version"
)

// Server serves one stdio MCP server's sessions over HTTP. It is an
// http.Handler; Close stops every process it started.
type Server struct {
	cfg    Config
	logger atomic.Pointer[zap.Logger]
	pool   *pool

	mu sync.Mutex
	// sessions are the initialized sessions, by id.
	sessions map[string]*session
	// endings are why the latest sessions to end did, by id; endingOrder
	// lists them oldest first.
	endings     map[string]string
	endingOrder []string
	// live are all sessions whose process has not been reaped yet,
	// starting and pooled ones included.
	live map[*session]struct{}
	// processes counts the session processes (not the pool's) that
	// started and are not reaped yet; byCaller, those of each caller
	// (see WithCaller), when MaxSessionsPerCaller bounds them.
	processes int
	byCaller  map[string]int
	closed    bool
	stopped   sync.WaitGroup
}

// New returns a Server that runs cfg.Command for each session; it starts
// nothing until a client asks. cfg should have passed Validate; its zero
// values take the defaults. A nil logger logs nothing.
func New(cfg Config, logger *zap.Logger) *Server {
	if logger == nil {
		logger = zap.NewNop()
	}
	srv := &Server{
		cfg:      cfg.withDefaults(),
		sessions: make(map[string]*session),
		endings:  make(map[string]string),
		live:     make(map[*session]struct{}),
		byCaller: make(map[string]int),
	}
	srv.logger.Store(logger)
	srv.pool = newPool(srv, srv.cfg.StatelessPool)
	return srv
}

// SetLogger replaces the logger that new sessions log to (after a config
// reload that keeps the Server).
func (srv *Server) SetLogger(logger *zap.Logger) {
	if logger != nil {
		srv.logger.Store(logger)
	}
}

// ServeHTTP serves MCP's Streamable HTTP transport: POST carries client
// messages, GET opens a session's stream of server messages, DELETE ends
// a session.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		srv.servePOST(w, r)
	case http.MethodGet:
		if s := srv.sessionOf(w, r); s != nil {
			s.serveGET(w, r)
		}
	case http.MethodDelete:
		if s := srv.sessionOf(w, r); s != nil {
			s.end(&ending{message: "the client ended the session"})
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "method "+r.Method+" is not used by MCP")
	}
}

// servePOST routes a POST: to its session; to a new session when it is
// initialize; to the stateless pool when it speaks MCP 2026-07-28.
func (srv *Server) servePOST(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(srv.cfg.MaxMessageSize)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest,
				"the body is larger than max_message_size ("+strconv.Itoa(srv.cfg.MaxMessageSize)+" bytes)")
			return
		}
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "reading the body: "+err.Error())
		return
	}
	msgs, err := decodeBody(body)
	if err != nil {
		code, message := int64(jsonrpc.CodeParseError), err.Error()
		if refused, ok := errors.AsType[*mcpmsg.Error](err); ok {
			code, message = int64(refused.Code), refused.Message
		}
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, code, message)
		return
	}
	if r.Header.Get(headerSessionID) != "" {
		s := srv.sessionOf(w, r)
		if s == nil {
			return
		}
		if !s.begin() {
			writeError(w, http.StatusNotFound, jsonrpc.ID{}, codeSessionNotFound, "session ended; initialize a new one")
			return
		}
		defer s.finish()
		s.post(w, r, msgs, nil)
		return
	}
	if request := initializeRequest(msgs); request != nil {
		srv.initialize(w, r, request)
		return
	}
	if version := statelessVersion(r.Header, msgs); version != "" {
		srv.serveStateless(w, r, msgs, version)
		return
	}
	writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest,
		"no "+headerSessionID+" header: start a session with initialize first")
}

// sessionOf returns the session the request names, or answers the request
// itself (400 without a session id, 404 for an unknown one) and returns
// nil.
func (srv *Server) sessionOf(w http.ResponseWriter, r *http.Request) *session {
	id := r.Header.Get(headerSessionID)
	if id == "" {
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "no "+headerSessionID+" header")
		return nil
	}
	srv.mu.Lock()
	s := srv.sessions[id]
	ending, ended := srv.endings[id]
	srv.mu.Unlock()
	switch {
	case s != nil:
	case ended:
		writeError(w, http.StatusNotFound, jsonrpc.ID{}, codeSessionNotFound, "session ended: "+ending+"; initialize a new one")
	default:
		writeError(w, http.StatusNotFound, jsonrpc.ID{}, codeSessionNotFound, "session not found (it may have ended); initialize a new one")
	}
	return s
}

// initialize starts a session: a new process, to which it forwards the
// client's initialize. The session exists for the client once the server
// has answered; a server that does not answer within init_timeout is
// killed.
func (srv *Server) initialize(w http.ResponseWriter, r *http.Request, request *jsonrpc.Request) {
	caller := callerIn(r)
	if err := srv.reserve(caller); err != nil {
		answerFailure(w, request.ID, err)
		return
	}
	s, err := srv.startSession(false, func() { srv.unreserve(caller) })
	if err != nil {
		srv.unreserve(caller)
		answerFailure(w, request.ID, err)
		return
	}
	s.begin()
	defer s.finish()
	response, failure := srv.handshake(r.Context(), s, request)
	if failure != nil {
		answerFailure(w, request.ID, failure)
		return
	}
	data, err := jsonrpc.EncodeMessage(response)
	if err != nil {
		failure := &ending{message: "encoding the MCP server's answer to initialize: " + err.Error()}
		s.end(failure)
		answerFailure(w, request.ID, failure)
		return
	}
	if response.Error != nil {
		s.end(&ending{message: "the MCP server refused initialize"})
		mcphttp.WriteJSON(w, http.StatusOK, data)
		return
	}
	srv.list(s)
	w.Header().Set(headerSessionID, s.id)
	mcphttp.WriteJSON(w, http.StatusOK, data)
}

// handshake sends initialize to a new process and waits, within
// init_timeout, for the answer. On failure the session has ended and its
// process is reaped.
func (srv *Server) handshake(ctx context.Context, s *session, request *jsonrpc.Request) (*jsonrpc.Response, *ending) {
	ctx, cancel := context.WithTimeout(ctx, srv.cfg.InitTimeout)
	defer cancel()
	response, err := s.call(ctx, request)
	if err == nil {
		return response, nil
	}
	var failure *ending
	switch {
	case errors.As(err, &failure):
	case errors.Is(err, context.DeadlineExceeded):
		failure = &ending{
			message: fmt.Sprintf("the MCP server did not answer initialize within %s (init_timeout); it was killed", srv.cfg.InitTimeout),
			kill:    true,
		}
	default:
		failure = &ending{message: "the client left during initialize", kill: true}
	}
	s.end(failure)
	<-s.stopped
	return nil, s.ended
}

// startSession starts a process and the session around it; onStopped
// runs once the process is reaped.
func (srv *Server) startSession(stateless bool, onStopped func()) (*session, error) {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		return nil, errClosed
	}
	srv.stopped.Add(1)
	srv.mu.Unlock()
	started := false
	defer func() {
		if !started {
			srv.stopped.Done()
		}
	}()

	id := rand.Text()
	logger := srv.logger.Load().With(zap.String("session", id))
	proc, err := startProcess(srv.cfg.Command, srv.cfg.MaxMessageSize, srv.cfg.InitTimeout, logger.Named("stderr"))
	if err != nil {
		// The client is told no more: why names the configuration (the
		// program's path, the PATH searched), which is the operator's.
		logger.Error("starting the MCP server", zap.Error(err))
		return nil, errNotStarted
	}
	started = true
	logger = logger.With(zap.Int("pid", proc.pid()))
	var s *session
	s = newSession(srv, id, proc, stateless, logger, func() {
		srv.mu.Lock()
		delete(srv.live, s)
		srv.mu.Unlock()
		onStopped()
		srv.stopped.Done()
	})
	srv.mu.Lock()
	srv.live[s] = struct{}{}
	closed := srv.closed
	srv.mu.Unlock()
	if closed {
		// Close began after this session was counted: it ends here.
		s.end(shuttingDown())
	}
	logger.Info("session started", zap.Bool("stateless", stateless))
	go s.pump()
	go s.run()
	return s, nil
}

// reserve counts a session process of caller about to start, within
// max_sessions and max_sessions_per_caller.
func (srv *Server) reserve(caller string) error {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	perCaller := srv.cfg.MaxSessionsPerCaller
	switch {
	case srv.closed:
		return errClosed
	case perCaller > 0 && srv.byCaller[caller] >= perCaller:
		return &busy{fmt.Sprintf("this caller already runs %d sessions of the MCP server (max_sessions_per_caller): end one (DELETE), or retry later", perCaller)}
	case srv.processes >= srv.cfg.MaxSessions:
		return &busy{fmt.Sprintf("the MCP server already runs %d sessions (max_sessions); retry later", srv.cfg.MaxSessions)}
	}
	srv.processes++
	if perCaller > 0 {
		srv.byCaller[caller]++
	}
	return nil
}

// unreserve uncounts a session process of caller that stopped, or never
// started.
func (srv *Server) unreserve(caller string) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.processes--
	if srv.cfg.MaxSessionsPerCaller > 0 {
		if srv.byCaller[caller]--; srv.byCaller[caller] <= 0 {
			delete(srv.byCaller, caller)
		}
	}
}

// callerKey is the context key of the caller WithCaller names.
type callerKey struct{}

// WithCaller returns r naming its caller (an identified user's id, or
// else an address), whose sessions max_sessions_per_caller bounds
// together. A request that names none is the caller "" with every other
// such request.
func WithCaller(r *http.Request, caller string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, caller))
}

// callerIn is the caller WithCaller named for r, "" if none.
func callerIn(r *http.Request) string {
	caller, _ := r.Context().Value(callerKey{}).(string)
	return caller
}

// list makes an initialized session reachable by its id, unless it
// has ended meanwhile.
func (srv *Server) list(s *session) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended == nil {
		srv.sessions[s.id] = s
	}
}

// unlist makes an ended session unreachable, and keeps why it ended.
func (srv *Server) unlist(s *session, why *ending) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.sessions[s.id] != s {
		return
	}
	delete(srv.sessions, s.id)
	if len(srv.endingOrder) == maxEndings {
		delete(srv.endings, srv.endingOrder[0])
		srv.endingOrder = srv.endingOrder[1:]
	}
	srv.endings[s.id] = why.message
	srv.endingOrder = append(srv.endingOrder, s.id)
}

// Close ends every session (each once its POSTs in progress are answered,
// or after stop_grace) and stops every process, gracefully; it returns
// once all are reaped.
func (srv *Server) Close() error {
	srv.mu.Lock()
	srv.closed = true
	live := make([]*session, 0, len(srv.live))
	for s := range srv.live {
		live = append(live, s)
	}
	srv.mu.Unlock()
	for _, s := range live {
		go s.drain(srv.cfg.StopGrace, shuttingDown())
	}
	srv.stopped.Wait()
	return nil
}

// shuttingDown is the ending of the sessions a closing Server ends.
func shuttingDown() *ending {
	return &ending{message: "the gateway is shutting down or reloading a changed configuration; initialize a new session"}
}

// errClosed is what a closed Server answers new sessions with.
var errClosed = &busy{"the gateway is shutting down or reloading a changed configuration; retry"}

// busy is a refusal for want of capacity.
type busy struct{ message string }

func (b *busy) Error() string { return b.message }

// answerFailure answers a request that the gateway could not take to the
// server with a JSON-RPC error: with HTTP 503 and a Retry-After when it is
// busy, else with 200, as the server's own error would come (a client
// SDK may read no further than the status of a 5xx).
func answerFailure(w http.ResponseWriter, id jsonrpc.ID, err error) {
	status := http.StatusOK
	if errors.As(err, new(*busy)) {
		status = http.StatusServiceUnavailable
	}
	writeError(w, status, id, codeServerError, err.Error())
}

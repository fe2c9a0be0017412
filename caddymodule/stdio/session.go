package stdio

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/boundedset"
)

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
	// inProgress map the ids of the clients' requests awaiting their
	// answers to the ids the server knows them by (see post); left map
	// those of requests whose POSTs went before their answers came, at
	// most maxLeft, oldest forgotten first (leftOrder), so that a client
	// cancelling one after it left (as SDK clients do when a call's
	// context ends) names it to the server as the server knows it.
	inProgress map[jsonrpc.ID]jsonrpc.ID
	left       map[jsonrpc.ID]jsonrpc.ID
	leftOrder  *boundedset.Set[jsonrpc.ID]
	// progress maps the progress tokens of those requests to the replies
	// that carry their progress notifications.
	progress map[string]*reply
	// clientTokens map the progress tokens the gateway gave the server in
	// place of its clients' (see post) to the clients' own.
	clientTokens map[string]json.RawMessage
	// answeredTokens map, in a session, the tokens of requests answered
	// to the clients' own, at most maxAnswered, oldest forgotten first
	// (answeredOrder): a server may report progress after its answer (on
	// a task its answer started, for as long as the task runs), which
	// goes to the client's GET stream, never to another request's reply.
	answeredTokens map[string]json.RawMessage
	answeredOrder  *boundedset.Set[string]
	// posts are the open replies to POSTs that carry what the server sends
	// of its own accord when there is no GET stream (see route), oldest
	// first; get is the open GET stream.
	posts []*reply
	get   *reply
	// backlog holds what the server sent while no reply was open, and
	// backlogBytes the bytes of it (see maxBacklogBytes).
	backlog      []backlogged
	backlogBytes int
	ended        *ending
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
	// clientID is the id the client gave the request, which the server
	// knows under one of the gateway's (none for the gateway's own).
	clientID jsonrpc.ID
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
		id:             id,
		srv:            srv,
		proc:           proc,
		logger:         logger,
		stateless:      stateless,
		onStopped:      onStopped,
		done:           make(chan struct{}),
		stopped:        make(chan struct{}),
		calls:          make(map[jsonrpc.ID]*call),
		inProgress:     make(map[jsonrpc.ID]jsonrpc.ID),
		left:           make(map[jsonrpc.ID]jsonrpc.ID),
		leftOrder:      boundedset.New[jsonrpc.ID](maxLeft),
		answeredTokens: make(map[string]json.RawMessage),
		answeredOrder:  boundedset.New[string](maxAnswered),
		progress:       make(map[string]*reply),
		clientTokens:   make(map[string]json.RawMessage),
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
		s.end(&ending{message: s.proc.exitReason(!s.stateless)})
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
// stdout ended because it exited (after a whole message, or in the middle
// of one), that (with its last stderr line) is the reason.
func (s *session) readFailure(err error) *ending {
	midMessage := errors.Is(err, io.ErrUnexpectedEOF)
	if !errors.Is(err, io.EOF) && !midMessage {
		return &ending{message: "reading from the MCP server: " + err.Error()}
	}
	suffix := ""
	if midMessage {
		suffix = ", in the middle of a message"
	}
	timer := time.NewTimer(s.srv.cfg.StopGrace)
	defer timer.Stop()
	select {
	case <-s.proc.exited:
		return &ending{message: s.proc.exitReason(!s.stateless) + suffix}
	case <-s.done:
		return s.ended
	case <-timer.C:
		return &ending{message: "the MCP server closed its stdout" + suffix}
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
	s.calls, s.progress, s.posts, s.get, s.backlog, s.backlogBytes = nil, nil, nil, nil, nil, 0
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

// writeFailure is the ending of a session whose server could not be
// written to.
func writeFailure(err error) *ending {
	return &ending{message: "writing to the MCP server: " + err.Error()}
}

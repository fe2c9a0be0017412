package stdio

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// maxBacklog and maxBacklogBytes bound the messages a server sends while
// its client has no stream open to receive them, in number and in bytes;
// past either the oldest are dropped (a request among them is answered
// with an error, so the server does not wait). One message larger than
// maxBacklogBytes is kept alone (max_message_size bounds it).
const (
	maxBacklog      = 64
	maxBacklogBytes = 4 << 20
)

// backlogged is a message kept in the backlog, with its encoding.
type backlogged struct {
	request *jsonrpc.Request
	data    []byte
}

// askingMethods are the requests during which a server asks its client
// for something (sampling, elicitation, roots): the methods whose results
// may ask for input under MCP 2026-07-28 (basic/patterns/mrtr).
var askingMethods = []string{"tools/call", "prompts/get", "resources/read"}

// route sends one message from the server to where the client reads it:
// a response to the reply of its request; a progress notification to the
// reply of the request it reports on; in a stateless session, nothing
// else; anything else (a stdio server does not say what it relates to) to
// the GET stream, or else to the reply of
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
		c := s.answeredLocked(response.ID)
		s.mu.Unlock()
		switch {
		case c == nil:
			s.logger.Debug("dropping a response to no pending request", zap.Any("id", response.ID.Raw()))
		case c.reply == nil:
			c.answer <- response
		case c.clientID.IsValid():
			// Back to the client's own id (see post).
			response.ID = c.clientID
			if data, err = jsonrpc.EncodeMessage(response); err != nil {
				c.reply.fail(codeServerError, "encoding the MCP server's response: "+err.Error())
				return
			}
			_ = c.reply.deliver(response, data)
		default:
			_ = c.reply.deliver(response, data)
		}
		return
	}
	request := msg.(*jsonrpc.Request)
	token := ""
	if request.Method == "notifications/progress" {
		token = notifiedToken(request.Params)
	}
	afterAnswer := false
	if token != "" {
		// Back to the client's own token (see post). Progress on a token
		// of a request answered goes to the GET stream alone (see
		// session.answeredTokens); on one the gateway gave a request no
		// longer awaited, to no one; in a stateless session, so does
		// progress on any token the gateway did not give. (In a session,
		// progress on a token of the server's own goes where anything
		// else it says unasked goes.)
		s.mu.Lock()
		own, ok := s.clientTokens[token]
		if !ok {
			own, afterAnswer = s.answeredTokens[token]
			ok = afterAnswer
		}
		s.mu.Unlock()
		switch {
		case ok:
			params, err := withMember(request.Params, "", "progressToken", own)
			if err != nil {
				return
			}
			request.Params = params
			if data, err = jsonrpc.EncodeMessage(request); err != nil {
				return
			}
		case s.stateless || strings.HasPrefix(token, `"`+gatewayTokenPrefix):
			return
		}
	}
	if s.stateless && request.IsCall() {
		s.refuse(request, mcpmsg.CodeRefused,
			"the client is stateless (MCP 2026-07-28) and cannot answer server requests; connect with a session to use sampling, elicitation or roots")
		return
	}
	if afterAnswer {
		s.mu.Lock()
		stream := s.get
		if s.ended != nil {
			stream = nil
		}
		s.mu.Unlock()
		if stream != nil {
			_ = stream.deliver(request, data)
		}
		return
	}
	for {
		s.mu.Lock()
		target, dropped := s.targetLocked(request, token, data)
		s.mu.Unlock()
		for _, request := range dropped {
			s.refuse(request, mcpmsg.CodeRefused, "the client had no stream open to receive this request")
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
// from the server (token: a progress notification's, as the server sent
// it; data: its encoding). When there is none it keeps the message in the
// backlog (a stateless session drops it: its client reads only its own
// reply), and returns nil and the requests the backlog dropped to make
// room, for the caller to refuse.
func (s *session) targetLocked(request *jsonrpc.Request, token string, data []byte) (target *reply, dropped []*jsonrpc.Request) {
	if s.ended != nil {
		return nil, nil
	}
	if token != "" {
		if target := s.progress[token]; target != nil {
			return target, nil
		}
		if strings.HasPrefix(token, `"`+gatewayTokenPrefix) {
			// Progress on a request no longer awaited (its reply gone
			// since route looked, or failing to take it): the request's
			// own reply, or no one's (found by a review).
			return nil, nil
		}
	}
	if s.stateless {
		// A pooled process serves one stateless client after another, and
		// a stdio server does not say which request a notification is
		// about: one a request of the last client set off could reach the
		// next. Only progress for the request's own token (above) is
		// known to be its client's; the rest is dropped.
		return nil, nil
	}
	if s.get != nil {
		return s.get, nil
	}
	if len(s.posts) > 0 {
		return s.posts[len(s.posts)-1], nil
	}
	for len(s.backlog) > 0 && (len(s.backlog) >= maxBacklog || s.backlogBytes+len(data) > maxBacklogBytes) {
		oldest := s.backlog[0]
		if oldest.request.IsCall() {
			dropped = append(dropped, oldest.request)
		}
		s.backlogBytes -= len(oldest.data)
		s.backlog = s.backlog[1:]
	}
	s.backlog = append(s.backlog, backlogged{request: request, data: data})
	s.backlogBytes += len(data)
	return nil, dropped
}

// takeBacklogLocked empties the backlog and returns what it held.
func (s *session) takeBacklogLocked() []backlogged {
	backlog := s.backlog
	s.backlog, s.backlogBytes = nil, 0
	return backlog
}

// refuse answers a request from the server on the client's behalf (with
// mcpmsg.CodeRefused, which no SDK reads as a disconnect).
func (s *session) refuse(request *jsonrpc.Request, code int64, message string) {
	response := &jsonrpc.Response{ID: request.ID, Error: &jsonrpc.Error{Code: code, Message: message}}
	if err := s.send(response); err != nil {
		s.end(writeFailure(err))
	}
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

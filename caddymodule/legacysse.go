package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/observe"
)

// This file speaks the HTTP+SSE transport of MCP 2024-11-05 (basic/
// transports, "HTTP with SSE"), which servers still offer: the client's GET
// opens an event stream whose first event, "endpoint", names the URL the
// client posts its messages to; each POST is answered 202 Accepted, and
// the responses come as "message" events on the stream. The gateway keeps
// the client on its own URLs (it rewrites the endpoint), decides every
// posted message as on Streamable HTTP, and delivers a refusal the way the
// transport delivers responses: as an event on that session's stream.

// legacyStreams are the HTTP+SSE streams open through the gateway, by
// session (their message endpoint).
type legacyStreams struct {
	mu      sync.Mutex
	streams map[sessionKey]*legacyStream
}

// legacyStream is one open HTTP+SSE stream. On this transport the
// responses to what is posted come on the stream, so the stream is where
// the gateway finds the replies it reads: to the client's tools/list
// requests, and to its own.
type legacyStream struct {
	// inject writes a message to the stream, between the upstream's
	// events.
	inject func(message []byte) error

	mu sync.Mutex
	// toolsLists are the session's tools/list requests awaiting their
	// response, by canonical id.
	toolsLists map[string]pendingToolsList
	// awaited are the gateway's own requests awaiting their response, by
	// canonical id.
	awaited map[string]chan []byte
	// owner is the identified caller who opened the stream ("" without
	// identity): only they may post to its session.
	owner string
}

// pendingToolsList is a tools/list request awaiting its response: whether
// it asks for the first page, and the catalog's Generation when it was
// forwarded.
type pendingToolsList struct {
	firstPage bool
	asOf      uint64
}

func newLegacyStream(owner string, inject func(message []byte) error) *legacyStream {
	return &legacyStream{owner: owner, inject: inject, toolsLists: make(map[string]pendingToolsList), awaited: make(map[string]chan []byte)}
}

// postedByOwner reports whether r may post to the stream's session: any
// caller when the stream has no owner, else only its owner.
func (s *legacyStream) postedByOwner(r *http.Request) bool {
	if s.owner == "" {
		return true
	}
	user := caller(r)
	return user != nil && user.ID == s.owner
}

// expectToolsLists records the allowed tools/list requests a POST
// forwards, whose responses the stream will carry, with the catalog's
// generation asOf.
func (s *legacyStream) expectToolsLists(verdicts []verdict, asOf uint64) {
	_, firstPage := toolsListRequests(verdicts)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, first := range firstPage {
		if len(s.toolsLists) < maxPendingPerSession {
			s.toolsLists[id] = pendingToolsList{firstPage: first, asOf: asOf}
		}
	}
}

// toolsList returns the tools/list request of the session with this id,
// and forgets it; ok is false when there is none.
func (s *legacyStream) toolsList(id []byte) (request pendingToolsList, ok bool) {
	key := mcpmsg.CanonicalID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	request, ok = s.toolsLists[key]
	delete(s.toolsLists, key)
	return request, ok
}

// await returns where the response to the gateway's own request with this
// id will be delivered, and a function to call when no longer waiting.
func (s *legacyStream) await(id string) (<-chan []byte, func()) {
	key := mcpmsg.CanonicalID([]byte(id))
	response := make(chan []byte, 1)
	s.mu.Lock()
	s.awaited[key] = response
	s.mu.Unlock()
	return response, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.awaited[key] == response {
			delete(s.awaited, key)
		}
	}
}

// deliver hands m to the gateway's request awaiting it, and reports
// whether one was: such a response is the gateway's, not the client's.
func (s *legacyStream) deliver(m *mcpmsg.Message) bool {
	if m.Kind != mcpmsg.KindResponse {
		return false
	}
	key := mcpmsg.CanonicalID(m.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	response, ok := s.awaited[key]
	if ok {
		delete(s.awaited, key)
		response <- bytes.Clone(m.Raw)
	}
	return ok
}

func (ls *legacyStreams) open(session sessionKey, stream *legacyStream) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.streams[session] = stream
}

// close forgets the stream, unless another has taken its session since.
func (ls *legacyStreams) close(session sessionKey, stream *legacyStream) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.streams[session] == stream {
		delete(ls.streams, session)
	}
}

func (ls *legacyStreams) lookup(session sessionKey) *legacyStream {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.streams[session]
}

// legacyKey names the HTTP+SSE session whose message endpoint is u, a URL
// as the upstream sees it: by path and query, the query in canonical order
// and encoding (clients may re-encode the URL they were given).
func legacyKey(server string, u *url.URL) (sessionKey, error) {
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return sessionKey{}, fmt.Errorf("message endpoint query: %w", err)
	}
	return sessionKey{server: server, legacy: true, id: u.Path + "?" + query.Encode()}, nil
}

// observeStream watches a GET stream: for tool list changes, for the
// requests the upstream sends the client, and, on the HTTP+SSE transport,
// for the endpoint event that opens the session.
func (h *Handler) observeStream(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (http.ResponseWriter, func() error) {
	readReplyUncompressed(r)
	version := r.Header.Get(mcphttp.HeaderProtocolVersion)
	if mcphttp.CheckVersion(version) != nil {
		version = mcphttp.DefaultVersion
	}
	rl := h.newRelay(r, next, version, h.sessionOf(r))
	var observed http.ResponseWriter
	var stream *legacyStream
	observed, finish := observe.Wrap(w, observe.Hooks{
		WatchAll: true,
		RewriteResult: func(id, result []byte) ([]byte, error) {
			if stream != nil {
				if request, listed := stream.toolsList(id); listed {
					return h.hideBlockedTools(r, rl.version, result, request.firstPage, request.asOf)
				}
			} else if rl.session.id != "" && h.sessions.toolsLists.take(rl.session, id) {
				// The response to a tools/list whose POST stream was
				// lost, replayed on a resumed stream.
				// Not a first page: nothing is marked current.
				return h.hideBlockedTools(r, rl.version, result, false, 0)
			}
			return rl.checkInputRequests(id, result)
		},
		Intercept: func(m *mcpmsg.Message) bool {
			if stream != nil && stream.deliver(m) {
				return true
			}
			return rl.intercept(m)
		},
		Endpoint: func(uri string) (string, error) {
			client, err := rl.openLegacySession(uri)
			if err != nil {
				return "", err
			}
			owner := ""
			if user := caller(r); user != nil {
				owner = user.ID
			}
			stream = newLegacyStream(owner, func(message []byte) error { return observe.Inject(observed, message) })
			h.sessions.legacy.open(rl.session, stream)
			return client, nil
		},
		OnMessage: h.watchToolListChanges(h.serverName(r)),
		OnError:   h.logReplyError(r),
	})
	return observed, func() error {
		if stream != nil {
			h.sessions.legacy.close(rl.session, stream)
		}
		return finish()
	}
}

// openLegacySession turns the relay into an HTTP+SSE session's: uri, the
// data of the endpoint event, names where messages go. It returns the URL
// to send the client in its place: the same endpoint on the gateway. A
// relative uri resolves against the stream's URL as the upstream saw it;
// an absolute one names the upstream's own host, which the client is not
// sent to: every message goes through the gateway to the same upstream.
func (rl *relay) openLegacySession(uri string) (string, error) {
	target, err := rl.r.URL.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("endpoint %q is not a URL: %w", uri, err)
	}
	if target.Scheme != "" && target.Scheme != "http" && target.Scheme != "https" || target.Opaque != "" {
		return "", fmt.Errorf("endpoint %q is not an HTTP URL", uri)
	}
	endpoint := &url.URL{Path: target.Path, RawPath: target.RawPath, RawQuery: target.RawQuery}
	session, err := legacyKey(rl.h.serverName(rl.r), endpoint)
	if err != nil {
		return "", err
	}
	rl.session, rl.endpoint = session, endpoint
	if rl.r.Header.Get(mcphttp.HeaderProtocolVersion) == "" {
		rl.version = mcphttp.LegacySSEDefaultVersion
	}
	client := &url.URL{Path: clientPrefix(rl.r) + endpoint.Path, RawQuery: endpoint.RawQuery}
	return client.String(), nil
}

// clientPrefix returns the path prefix that routes before the gateway
// stripped from the client's URL (as handle_path does), so that URLs the
// upstream names can be given back to the client with it: "" when the
// path was not stripped, or was rewritten in a way the gateway cannot
// undo.
func clientPrefix(r *http.Request) string {
	original, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || original.URL == nil {
		return ""
	}
	prefix, stripped := strings.CutSuffix(original.URL.Path, r.URL.Path)
	if !stripped {
		return ""
	}
	return prefix
}

// legacyPost is a message posted on the HTTP+SSE transport.
type legacyPost struct {
	session sessionKey
	// stream is the session's stream, nil when none is open through the
	// gateway.
	stream *legacyStream
}

// legacyPost returns the HTTP+SSE session that r posts a message to: the
// one whose endpoint event named r's URL, or, when no stream relayed such
// an event, a URL that names a session in its query (sessionId, as the
// TypeScript SDK's servers name it, sessionid as the Go SDK's do) on a
// request without Mcp-Session-Id. It returns nil for Streamable HTTP.
func (h *Handler) legacyPost(r *http.Request) *legacyPost {
	session, err := legacyKey(h.serverName(r), r.URL)
	if err != nil {
		return nil
	}
	if stream := h.sessions.legacy.lookup(session); stream != nil {
		return &legacyPost{session: session, stream: stream}
	}
	if r.Header.Get(mcphttp.HeaderSessionID) != "" {
		return nil
	}
	for name := range r.URL.Query() {
		if strings.EqualFold(strings.NewReplacer("_", "", "-", "").Replace(name), "sessionid") {
			return &legacyPost{session: session}
		}
	}
	return nil
}

// refuse answers a refused message as the HTTP+SSE transport answers: the
// response to a request goes to the session's stream as a message event,
// and the POST gets 202 Accepted. A notification or response, or a request
// whose session has no stream open through the gateway, gets a JSON-RPC
// error with 403.
func (p *legacyPost) refuse(w http.ResponseWriter, h *Handler, v verdict) error {
	if response := v.response(); response != nil && p.stream != nil {
		err := p.stream.inject(response)
		if err == nil {
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
		h.logger.Warn("could not deliver a refusal on the session's event stream",
			zap.String("server", p.session.server), zap.Error(err))
	}
	message := v.refusal()
	if v.message.Kind == mcpmsg.KindRequest && p.stream == nil {
		message += " (No event stream of this session is open through the gateway to deliver this answer on.)"
	}
	writeJSON(w, http.StatusForbidden, mcpmsg.ErrorResponse(v.message.ID, CodeRefusedByPolicy, message))
	return nil
}

// expect prepares the session's stream for the replies to the messages a
// POST forwards, as of the catalog's generation asOf.
func (p *legacyPost) expect(verdicts []verdict, asOf uint64) {
	if p.stream != nil {
		p.stream.expectToolsLists(verdicts, asOf)
	}
}

// awaitLegacyResponse returns, when r posts to an HTTP+SSE session with a
// stream open through the gateway, where the response to the gateway's own
// request with this id will be delivered (the POST itself is only
// accepted); nil otherwise. stop must be called when no longer waiting.
func (h *Handler) awaitLegacyResponse(r *http.Request, id string) (response <-chan []byte, stop func()) {
	if p := h.legacyPost(r); p != nil && p.stream != nil {
		return p.stream.await(id)
	}
	return nil, func() {}
}

// legacyResponseTimeout bounds the wait for the response to a request of
// the gateway's own on an HTTP+SSE stream.
const legacyResponseTimeout = 10 * time.Second

// awaitResponse waits for the response the stream delivers.
func awaitResponse(r *http.Request, response <-chan []byte) ([]byte, error) {
	select {
	case message := <-response:
		return message, nil
	case <-time.After(legacyResponseTimeout):
		return nil, errors.New("no response on the session's event stream")
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}

// errLegacyBatch is why a batch posted on the HTTP+SSE transport is
// refused: its replies come one event each, and the gateway answers
// refused messages there one by one.
var errLegacyBatch = errors.New("JSON-RPC batches are not accepted on the HTTP+SSE transport")

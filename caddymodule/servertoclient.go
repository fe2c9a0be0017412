package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-json-experiment/json/jsontext"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/observe"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// This file governs what an upstream sends clients of its own accord: the
// requests of MCP's client features (sampling/createMessage,
// elicitation/create, roots/list, ...) that a server sends on any event
// stream, and, from 2026-07-28, the same requests embedded in a result that
// asks for input (basic/patterns/mrtr). The policy decides each with
// input.direction "server_to_client" before the client sees it. A refused
// request never reaches the client: the gateway answers it to the upstream
// itself. And a client may answer only the requests the gateway relayed to
// its session.

// Bounds on what the gateway remembers of the server requests it relayed.
const (
	// maxPendingPerSession bounds the unanswered requests remembered for
	// one session; the oldest is forgotten first.
	maxPendingPerSession = 64
	// maxTrackedSessions bounds the sessions with unanswered requests;
	// the one least recently sent a request is forgotten first.
	maxTrackedSessions = 10000
	// pendingTTL is how long a relayed request may wait for the client's
	// answer: an elicitation waits on a person.
	pendingTTL = 30 * time.Minute
	// maxAnswerReply bounds what the gateway reads of the upstream's reply
	// to an answer it posts.
	maxAnswerReply = 64 << 10
)

// sessionKey names one MCP session with one upstream.
type sessionKey struct {
	server string
	// legacy is set for the HTTP+SSE transport, where id is the message
	// endpoint (see legacyKey); on Streamable HTTP, id is the
	// Mcp-Session-Id, empty when the upstream is stateless.
	legacy bool
	id     string
}

// sessionOf returns the Streamable HTTP session r belongs to.
func (h *Handler) sessionOf(r *http.Request) sessionKey {
	return sessionKey{server: h.serverName(r), id: r.Header.Get(mcphttp.HeaderSessionID)}
}

// sessionStates holds what the gateway remembers of live sessions. It is
// shared by every mcp_policy handler and outlives config reloads, so that a
// stream opened under one config is still governed under the next.
var sessionStates = caddy.NewUsagePool()

// sessionStateKey is the one entry of sessionStates.
const sessionStateKey = "mcpgate/sessions"

// sessionState is what the gateway remembers of live sessions.
type sessionState struct {
	relayed *relayedRequests
	legacy  *legacyStreams
	// toolsLists are the session's forwarded tools/list requests whose
	// response has not been seen yet: a client that loses a POST's stream
	// gets the response on a resumed GET stream, and it must be filtered
	// there too.
	toolsLists *relayedRequests
}

// Destruct implements caddy.Destructor: open streams end with their
// requests, so there is nothing to release.
func (*sessionState) Destruct() error { return nil }

// loadSessionState returns the shared session state; each call must be
// matched by releaseSessionState.
func loadSessionState() *sessionState {
	value, _, _ := sessionStates.LoadOrNew(sessionStateKey, func() (caddy.Destructor, error) {
		return &sessionState{
			relayed:    &relayedRequests{sessions: make(map[sessionKey]*pendingRequests)},
			legacy:     &legacyStreams{streams: make(map[sessionKey]*legacyStream)},
			toolsLists: &relayedRequests{sessions: make(map[sessionKey]*pendingRequests)},
		}, nil
	})
	return value.(*sessionState)
}

func releaseSessionState() {
	_, _ = sessionStates.Delete(sessionStateKey)
}

// relayedRequests remembers, per session, the ids of the requests the
// upstream sent its client through the gateway and the client has not
// answered yet.
type relayedRequests struct {
	mu       sync.Mutex
	sessions map[sessionKey]*pendingRequests
}

// pendingRequests are one session's relayed requests, oldest first.
type pendingRequests struct {
	ids     []string
	relayed []time.Time
}

// add remembers that the request with this id was relayed to the client.
func (rr *relayedRequests) add(session sessionKey, id []byte) {
	now := time.Now()
	rr.mu.Lock()
	defer rr.mu.Unlock()
	pending := rr.sessions[session]
	if pending == nil {
		if len(rr.sessions) >= maxTrackedSessions {
			rr.evict(now)
		}
		pending = new(pendingRequests)
		rr.sessions[session] = pending
	}
	pending.expire(now)
	if len(pending.ids) >= maxPendingPerSession {
		pending.ids, pending.relayed = pending.ids[1:], pending.relayed[1:]
	}
	pending.ids = append(pending.ids, mcpmsg.CanonicalID(id))
	pending.relayed = append(pending.relayed, now)
}

// take reports whether the request with this id was relayed to the client
// and is still unanswered, and forgets it: a request is answered once.
func (rr *relayedRequests) take(session sessionKey, id []byte) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	pending := rr.sessions[session]
	if pending == nil {
		return false
	}
	pending.expire(time.Now())
	i := slices.Index(pending.ids, mcpmsg.CanonicalID(id))
	if i >= 0 {
		pending.ids = slices.Delete(pending.ids, i, i+1)
		pending.relayed = slices.Delete(pending.relayed, i, i+1)
	}
	if len(pending.ids) == 0 {
		delete(rr.sessions, session)
	}
	return i >= 0
}

// evict makes room for a session: it forgets the sessions whose requests
// have all expired, or else the one whose latest request is oldest.
func (rr *relayedRequests) evict(now time.Time) {
	var oldest sessionKey
	var oldestAt time.Time
	for session, pending := range rr.sessions {
		pending.expire(now)
		if len(pending.ids) == 0 {
			delete(rr.sessions, session)
			continue
		}
		if latest := pending.relayed[len(pending.relayed)-1]; oldestAt.IsZero() || latest.Before(oldestAt) {
			oldest, oldestAt = session, latest
		}
	}
	if len(rr.sessions) >= maxTrackedSessions {
		delete(rr.sessions, oldest)
	}
}

// expire forgets the requests relayed longer than pendingTTL ago.
func (p *pendingRequests) expire(now time.Time) {
	n := 0
	for n < len(p.relayed) && now.Sub(p.relayed[n]) > pendingTTL {
		n++
	}
	p.ids, p.relayed = p.ids[n:], p.relayed[n:]
}

// checkAnswers refuses a body that carries a response to a request the
// gateway did not relay to this session (or relayed longer than pendingTTL
// ago, or that was answered already): a client speaks for itself only.
func (h *Handler) checkAnswers(session sessionKey, body *mcpmsg.Body) error {
	for i := range body.Messages {
		m := &body.Messages[i]
		if m.Kind == mcpmsg.KindResponse && !h.sessions.relayed.take(session, m.ID) {
			return fmt.Errorf("response for id %s answers no request the gateway relayed to this session", m.ID)
		}
	}
	return nil
}

// relay is one event stream the upstream sends a client through the
// gateway (the reply to a POST, or a GET stream), with what the gateway
// needs to govern the requests in it.
type relay struct {
	h       *Handler
	r       *http.Request
	next    caddyhttp.Handler
	version string
	session sessionKey
	// endpoint is the URL, as the upstream sees it, where the client posts
	// its messages and the gateway its answers: the stream's own on
	// Streamable HTTP, the message endpoint on HTTP+SSE.
	endpoint *url.URL
	// methods are the methods of the requests a POST's reply answers, by
	// canonical id.
	methods map[string]string
}

func (h *Handler) newRelay(r *http.Request, next caddyhttp.Handler, version string, session sessionKey) *relay {
	return &relay{h: h, r: r, next: next, version: version, session: session, endpoint: r.URL}
}

// answering records the requests whose responses the reply carries.
func (rl *relay) answering(verdicts []verdict) {
	rl.methods = make(map[string]string, len(verdicts))
	for _, v := range verdicts {
		if v.allowed() && v.message.Kind == mcpmsg.KindRequest {
			rl.methods[mcpmsg.CanonicalID(v.message.ID)] = v.message.Method
		}
	}
}

// multiRoundTripMethods are the requests whose results may ask the client
// for input (2026-07-28, basic/patterns/mrtr).
var multiRoundTripMethods = []string{"tools/call", "prompts/get", "resources/read"}

// mayAskForInput reports whether a JSON reply must be read for the input
// requests its results may embed: under 2026-07-28 and later, when it
// answers a request that may ask for input. Before that revision a JSON
// reply is passed unread, so that allowed calls keep their fast path.
func (rl *relay) mayAskForInput() bool {
	if rl.version < mcphttp.Version20260728 {
		return false
	}
	for _, method := range rl.methods {
		if slices.Contains(multiRoundTripMethods, method) {
			return true
		}
	}
	return false
}

// intercept decides a request the upstream sends the client. An allowed
// one is relayed, and remembered so that the client may answer it; a
// refused one is answered to the upstream by the gateway and dropped.
// Other messages pass.
func (rl *relay) intercept(m *mcpmsg.Message) bool {
	if m.Kind != mcpmsg.KindRequest {
		return false
	}
	decision := rl.decide(m.Method, m.Params)
	if decision.Action == policy.ActionAllow {
		rl.h.sessions.relayed.add(rl.session, m.ID)
		return false
	}
	answer := mcpmsg.ErrorResponse(m.ID, CodeRefusedByPolicy, verdict{decision: decision}.refusal())
	if err := rl.answer(answer); err != nil {
		rl.h.logger.Warn("could not answer a refused server request to the upstream",
			zap.String("server", rl.session.server),
			zap.String("method", m.Method),
			zap.String("request_id", requestID(rl.r)),
			zap.Error(err))
	}
	return true
}

// decide evaluates a request from the server to the client.
func (rl *relay) decide(method string, params map[string]any) policy.Decision {
	input := rl.h.baseInput(rl.r, rl.version)
	input.Direction = policy.DirectionServerToClient
	input.Kind, input.Method, input.Params = mcpmsg.KindRequest.String(), method, params
	return rl.h.evaluate(rl.r, input, "")
}

// answer posts message, the gateway's response to a server request, to the
// upstream through the next handler, as the client would have.
func (rl *relay) answer(message []byte) error {
	req := upstreamPost(rl.r, message)
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = rl.endpoint.Path, rl.endpoint.RawPath, rl.endpoint.RawQuery
	rec := &responseRecorder{header: make(http.Header), limit: maxAnswerReply}
	if err := rl.next.ServeHTTP(rec, req); err != nil {
		return err
	}
	if rec.status != 0 && (rec.status < 200 || rec.status > 299) {
		return fmt.Errorf("upstream answered HTTP %d", rec.status)
	}
	return nil
}

// upstreamPost returns a POST of body, a JSON-RPC message of the gateway's
// own, to the upstream on behalf of the client that sent r: a clone of r,
// with its URL, credentials, session and protocol version, without the
// headers that describe r's own body or stream.
func upstreamPost(r *http.Request, body []byte) *http.Request {
	req := r.Clone(r.Context())
	req.Method = http.MethodPost
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.GetBody = nil
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	req.Header.Del("Content-Encoding")
	req.Header.Del(mcphttp.HeaderLastEventID)
	req.Header.Del(mcphttp.HeaderMethod)
	req.Header.Del(mcphttp.HeaderName)
	return req
}

// checkInputRequests decides the requests a result embeds for the client
// to fulfil, as requests from the server. From 2026-07-28 servers ask for
// sampling, elicitation or roots this way (basic/patterns/mrtr): the result
// has "inputRequests", a map from keys to {"method", "params"}, and the
// client retries its call with "inputResponses". A result that asks for
// anything the policy refuses does not reach the client, which gets the
// refusal instead: a tool result with isError for tools/call, an error
// otherwise. Clients act on inputRequests whatever the revision and the
// resultType (the Go SDK does), so the gateway reads them wherever it reads
// a result.
func (rl *relay) checkInputRequests(id, result []byte) ([]byte, error) {
	requests, err := inputRequests(result)
	if err != nil || len(requests) == 0 {
		return result, err
	}
	for _, key := range slices.Sorted(maps.Keys(requests)) {
		request := requests[key]
		decision := rl.decide(request.Method, request.Params)
		if decision.Action == policy.ActionAllow {
			continue
		}
		refusal := verdict{decision: decision}.refusal()
		if rl.methods[mcpmsg.CanonicalID(id)] != "tools/call" {
			return nil, &observe.ResponseError{Code: CodeRefusedByPolicy, Message: refusal}
		}
		return json.Marshal(map[string]any{
			"content": []any{map[string]any{"type": "text", "text": refusal}},
			"isError": true,
		})
	}
	return result, nil
}

// inputRequest is one request a result embeds.
type inputRequest struct {
	Method string         `json:"method"`
	Params map[string]any `json:"params"`
}

// inputRequests returns the requests a result embeds in "inputRequests",
// none when it has no such member (or null). A member whose name differs
// from "inputRequests" only by case is an error, as are entries that are
// not {"method": string, "params": object}: a client matching names loosely
// could read them as requests.
func inputRequests(result []byte) (map[string]inputRequest, error) {
	raw, err := memberValue(result, "inputRequests")
	if err != nil || raw == nil || string(raw) == "null" {
		return nil, err
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("inputRequests is not an object: %w", err)
	}
	requests := make(map[string]inputRequest, len(entries))
	for key, entry := range entries {
		method, err := memberValue(entry, "method")
		if err == nil {
			_, err = memberValue(entry, "params")
		}
		if err != nil || method == nil {
			return nil, fmt.Errorf("inputRequests[%q] is not a request: %v", key, err)
		}
		decoder := json.NewDecoder(bytes.NewReader(entry))
		decoder.UseNumber()
		var request inputRequest
		if err := decoder.Decode(&request); err != nil {
			return nil, fmt.Errorf("inputRequests[%q] is not a request: %w", key, err)
		}
		requests[key] = request
	}
	return requests, nil
}

// memberValue returns the value of the named member of object, nil when it
// has none. A member whose name matches only case-insensitively (as
// encoding/json would match it) is an error.
func memberValue(object []byte, name string) ([]byte, error) {
	decoder := jsontext.NewDecoder(bytes.NewReader(object))
	if token, err := decoder.ReadToken(); err != nil || token.Kind() != '{' {
		return nil, errors.New("not an object")
	}
	var found []byte
	for decoder.PeekKind() == '"' {
		token, err := decoder.ReadToken()
		if err != nil {
			return nil, err
		}
		member := token.String()
		value, err := decoder.ReadValue()
		if err != nil {
			return nil, err
		}
		switch {
		case member == name:
			found = bytes.Clone(value)
		case strings.EqualFold(member, name):
			return nil, fmt.Errorf("member %q is ambiguous with %q", member, name)
		}
	}
	return found, nil
}

package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcpgate/mcpgate/caddymodule/display"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// This file governs what an upstream sends clients of its own accord: the
// requests of MCP's client features (sampling/createMessage,
// elicitation/create, roots/list, ...) that a server sends on any event
// stream, and, from 2026-07-28, the same requests embedded in a result that
// asks for input (basic/patterns/mrtr). The policy decides each with
// input.direction "server_to_client" before the client sees it. A refused
// request never reaches the client: the gateway answers it to the upstream
// itself. And a client may answer only the requests the gateway relayed to
// its session (checkTransport).

// relay is one event stream (or JSON reply) the upstream sends a client
// through the gateway, with what the gateway needs to govern the requests
// in it.
type relay struct {
	// decide decides a request of the server's to the client, sent under
	// the given revision, to a client that declared the given
	// capabilities (exchange.decideServerRequest).
	decide func(version, method string, params map[string]any, declared capabilities, known bool) policy.Decision
	// capabilities returns what the client declared, if known.
	capabilities func() (capabilities, bool)
	// answer posts the gateway's answer to a refused request to endpoint.
	answer func(endpoint *url.URL, message []byte) error
	// relayed remembers the requests the client may answer.
	relayed *relayedRequests
	// tasks are the tasks the session's calls started (tasks.go).
	tasks *startedTasks
	// logger returns a logger that names the upstream and the request,
	// made only when the relay logs (finding the request's id can cost
	// the host work).
	logger func() *zap.Logger
	// warned are the warnings this relay has logged (see warn).
	warnedMu sync.Mutex
	warned   map[string]bool

	version string
	session sessionKey
	// endpoint is the URL, as the upstream sees it, where the client posts
	// its messages and the gateway its answers: the stream's own on
	// Streamable HTTP, the message endpoint on HTTP+SSE.
	endpoint *url.URL
	// verdicts are those of the messages of the POST that the reply
	// answers, and requests its allowed requests by canonical id, found
	// from them only when a result asks for input.
	verdicts []verdict
	requests map[string]answeredRequest
	// answeredOnStream, when set, names the request a response on the stream
	// answers when the verdicts do not: on HTTP+SSE, where every
	// response comes on the one GET stream, the request the session
	// forwarded with the response's id (see legacyStream.take).
	answeredOnStream func(id []byte) (answeredRequest, bool)
	// seal seals the state of a result that asks for input
	// (exchange.sealRequestState).
	seal func(state requestState) string
	// guard is the gateway whose block_secrets applies to what the relay
	// relays (Gateway.blocksSecrets, asked as each message comes): the
	// server's requests and notifications to the client are then read
	// for credentials (withholdsSecrets). (A pointer, where a method
	// value would cost every reply an allocation.)
	guard *Gateway
}

// newRelay returns the relay of the exchange's reply or stream.
func (x *exchange) newRelay() *relay {
	x.relay = &relay{
		decide:       x.decideServerRequest,
		capabilities: x.capabilities,
		answer: func(endpoint *url.URL, message []byte) error {
			return postAnswer(x.next, x.answerRequest(), endpoint, message)
		},
		relayed: x.g.sessions.relayed,
		tasks:   x.g.sessions.tasks,
		seal:    x.sealRequestState,
		guard:   x.g,
		logger: func() *zap.Logger {
			return x.g.logger.With(zap.String("upstream", x.g.cfg.Upstream), zap.String("request_id", x.g.host.RequestID(x.r)))
		},
		version:  x.version,
		session:  x.session,
		endpoint: x.r.URL,
	}
	return x.relay
}

// answerRequest is the request the gateway's answers to the server's
// requests of the exchange's reply go with: the exchange's own, in the
// session the reply opened when it opened one (a server may ask things
// on initialize's reply), whose id the request does not carry.
func (x *exchange) answerRequest() *http.Request {
	if x.relay == nil || x.relay.session.id == "" || x.session.id != "" || x.session.legacy {
		return x.r
	}
	r := x.r.Clone(x.r.Context())
	r.Header.Set(mcphttp.HeaderSessionID, x.relay.session.id)
	return r
}

// answeredRequest is a request whose response a reply carries.
type answeredRequest struct {
	method string
	// name is what the request names: the tool or prompt, or the
	// resource's URI.
	name string
	// params are its params (see paramsDigest); nil once digested (see
	// kept), digest and digestErr then holding what paramsDigest gave.
	params    map[string]any
	digested  bool
	digest    string
	digestErr error
	// approvedFor is, of a call that ran once approved (by reviewers,
	// or its caller), the decision that asked for the approval, and
	// toolHash the definition of the tool approved.
	approvedFor *policy.Decision
	toolHash    string
	// cancelled: the client cancelled the request (HTTP+SSE sessions keep
	// a cancelled tools/list awaiting its answer).
	cancelled bool
	// seq tells apart, on an HTTP+SSE session, requests that took one id
	// one after the other (see legacyStream.forget).
	seq uint64
	// tool is the tool a tools/call calls (empty for other requests), and
	// forwarded, on an HTTP+SSE session, when it went on (see
	// legacyStream.toolCallEnded).
	tool      string
	forwarded time.Time
	// trail, id and span, of a tool call on an HTTP+SSE session with an
	// audit trail or a trace: where its end is told, its raw id (copied),
	// and its span.
	trail *callTrail
	id    []byte
	span  trace.Span
}

// answering records the messages whose replies the reply carries.
func (rl *relay) answering(verdicts []verdict) {
	rl.verdicts = verdicts
}

// answers returns the request of the exchange, forwarded, that the
// response with this id answers, and whether there is one.
func (rl *relay) answers(id []byte) (answeredRequest, bool) {
	request, ok := rl.carried(id)
	if !ok && rl.answeredOnStream != nil {
		return rl.answeredOnStream(id)
	}
	return request, ok
}

// carried returns the allowed request of the POST the reply answers with
// this id, if there is one (unlike answers, it looks at no other).
func (rl *relay) carried(id []byte) (answeredRequest, bool) {
	if rl.requests == nil {
		rl.requests = make(map[string]answeredRequest, len(rl.verdicts))
		for _, v := range rl.verdicts {
			if v.forwardsRequest() {
				rl.requests[mcpmsg.CanonicalID(v.message.ID)] = v.answered()
			}
		}
	}
	request, ok := rl.requests[mcpmsg.CanonicalID(id)]
	return request, ok
}

// answered is what the relay remembers of an allowed request forwarded.
func (v verdict) answered() answeredRequest {
	return answeredRequest{
		method: v.message.Method, name: requestName(v.message), params: v.message.Params,
		approvedFor: v.approvedFor, toolHash: v.toolHash, tool: toolName(v.message),
	}
}

// toolName is the tool a tools/call names, empty for any other message.
func toolName(m *mcpmsg.Message) string {
	if m.Tool == nil {
		return ""
	}
	return m.Tool.Name
}

// kept returns r as a session keeps it while its answer is awaited, for
// as long as the upstream likes: its params replaced by their digest, all
// that is read of them later, and its name bounded (stateName), so that a
// request in flight costs a session a few hundred bytes, not its body.
func (r answeredRequest) kept() answeredRequest {
	if !r.digested {
		r.digest, r.digestErr = paramsDigest(r.params)
		r.params, r.digested = nil, true
	}
	r.name = stateName(r.name)
	return r
}

// paramsDigest returns the digest of the request's params (see
// paramsDigest).
func (r answeredRequest) paramsDigest() (string, error) {
	if r.digested {
		return r.digest, r.digestErr
	}
	return paramsDigest(r.params)
}

// maxStateName is the longest name (a tool's, a prompt's, a resource's
// URI) a sealed requestState or a kept request holds as it is; a longer
// one is held as its digest (stateName).
const maxStateName = 1024

// stateName is a request's name as a requestState binds it: itself, or
// when longer than maxStateName its SHA-256, so that neither the state
// handed to the client nor a session's requests in flight grow with it.
// Applied to its own result, it gives that result again.
func stateName(name string) string {
	if len(name) <= maxStateName {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "sha256:" + hex.EncodeToString(sum[:])
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
	for _, v := range rl.verdicts {
		if v.forwardsRequest() && slices.Contains(multiRoundTripMethods, v.message.Method) {
			return true
		}
	}
	return false
}

// decideRequest decides a request of the server's to the client.
func (rl *relay) decideRequest(method string, params map[string]any) policy.Decision {
	declared, known := rl.capabilities()
	return rl.decide(rl.version, method, params, declared, known)
}

// intercept decides a request the upstream sends the client. An allowed
// one is relayed, and remembered so that the client may answer it; a
// refused one is answered to the upstream by the gateway and dropped.
// Other messages pass.
func (rl *relay) intercept(m *mcpmsg.Message) bool {
	if m.Kind != mcpmsg.KindRequest && m.Kind != mcpmsg.KindNotification {
		return false
	}
	if rl.aboutForeignTask(m) {
		if m.Kind == mcpmsg.KindRequest {
			rl.refuse(m, mcpmsg.ErrorResponse(m.ID, CodeRefusedByPolicy, errForeignTask))
		}
		return true
	}
	if rl.withholdsSecrets(m) {
		return true
	}
	if m.Kind != mcpmsg.KindRequest {
		return false
	}
	// Read as strictly as a client's request: what the policy would
	// decide on must be what the client reads.
	if err := mcpmsg.CheckServerRequest(m.Method, m.Params); err != nil {
		rl.warn("server request refused: its params may be read otherwise than the policy reads them",
			zap.String("method", display.Cut(m.Method, maxLoggedReason)), zap.String("reason", display.Cut(err.Message, maxLoggedReason)))
		rl.refuse(m, mcpmsg.ErrorResponse(m.ID, mcpmsg.CodeInvalidParams, err.Message))
		return true
	}
	decision := rl.decideRequest(m.Method, m.Params)
	if decision.Action == policy.ActionAllow {
		if !rl.relayed.add(rl.session, m.ID, 0) {
			// The client's answer would be refused: the request is not
			// relayed, rather than another session's forgotten.
			rl.warn("server request refused: the gateway remembers as many sessions' unanswered requests as it may")
			rl.refuse(m, mcpmsg.ErrorResponse(m.ID, mcpmsg.CodeInternalError, errTooManyRelayed))
			return true
		}
		return false
	}
	rl.refuse(m, mcpmsg.ErrorResponse(m.ID, CodeRefusedByPolicy, refusalText(decision, false)))
	return true
}

// errTooManyRelayed answers a server request the gateway cannot relay:
// it remembers as many sessions' unanswered requests as it may, in all or
// for the session's caller.
const errTooManyRelayed = "the gateway is waiting for answers to as many requests of other sessions as it may; try again later"

// refuse answers the server's request m, which the client never sees,
// with answer, as the client would.
func (rl *relay) refuse(m *mcpmsg.Message, answer []byte) {
	if err := rl.answer(rl.endpoint, answer); err != nil {
		rl.warn("could not answer a refused server request to the upstream",
			zap.String("method", display.Cut(m.Method, maxLoggedReason)), zap.Error(err))
	}
}

// maxLoggedReason bounds what a log line quotes of what the upstream
// sent (a method, the names a reason quotes).
const maxLoggedReason = 256

// warn logs msg at Warn level the first time this relay logs it, and at
// Debug level after: an upstream may send, on one stream, messages the
// gateway refuses without end, and a line a stream says what happened
// without the upstream choosing the log's volume.
func (rl *relay) warn(msg string, fields ...zap.Field) {
	rl.warnedMu.Lock()
	level := zapcore.DebugLevel
	if !rl.warned[msg] {
		if rl.warned == nil {
			rl.warned = make(map[string]bool)
		}
		rl.warned[msg], level = true, zapcore.WarnLevel
		fields = append(fields, zap.String("more", "any more on this reply are logged at debug level"))
	}
	rl.warnedMu.Unlock()
	if ce := rl.logger().Check(level, msg); ce != nil {
		ce.Write(fields...)
	}
}

// checkInputRequests decides the requests a result embeds for the client
// to fulfil, as requests from the server (one in the context of a task
// the session did not start is refused, as when sent on its own; see
// aboutForeignTask). From 2026-07-28 servers ask for
// sampling, elicitation or roots this way (basic/patterns/mrtr): the result
// has "inputRequests", a map from keys to {"method", "params"}, and the
// client retries its call with "inputResponses". A result that asks for
// anything the policy refuses does not reach the client, which gets the
// refusal instead: a tool result with isError for tools/call, an error
// otherwise. Clients act on inputRequests whatever the revision and the
// resultType (the Go SDK does), so the gateway reads them wherever it reads
// a result. A result whose requests are all allowed goes on with its
// requestState sealed together with the keys it asked for (see
// inputresponses.go), so that the retry can answer only those.
func (rl *relay) checkInputRequests(id, result []byte) ([]byte, error) {
	requests, err := inputRequests(result)
	if err != nil || len(requests) == 0 {
		return result, err
	}
	answered, _ := rl.answers(id)
	if answered.method == "" {
		// On a GET stream, or replayed on a resumed one, the result
		// answers a request the gateway cannot name: answers sealed
		// for it would be bound to no request, and could go with any.
		return nil, &replyfilter.ResponseError{Code: CodeRefusedByPolicy, Message: errUnnamedInputRequests}
	}
	keys := slices.Sorted(maps.Keys(requests))
	// revision is the policy's that let every request through: "" when
	// two revisions decided them (a reload in between), which no policy
	// in force then matches.
	revision := ""
	for i, key := range keys {
		request := requests[key]
		var refusal string
		if rl.aboutForeignTask(&mcpmsg.Message{Kind: mcpmsg.KindRequest, Method: request.Method, Params: request.Params}) {
			refusal = errForeignTask
		} else if decision := rl.decideRequest(request.Method, request.Params); decision.Action != policy.ActionAllow {
			refusal = refusalText(decision, false)
		} else {
			if i == 0 {
				revision = decision.Revision
			} else if decision.Revision != revision {
				revision = ""
			}
			continue
		}
		if answered.method != "tools/call" {
			return nil, &replyfilter.ResponseError{Code: CodeRefusedByPolicy, Message: refusal}
		}
		return json.Marshal(map[string]any{
			"content": []any{map[string]any{"type": "text", "text": refusal}},
			"isError": true,
		})
	}
	state, err := memberValue(result, "requestState")
	if err != nil {
		return nil, err
	}
	digest, err := answered.paramsDigest()
	if err != nil {
		return nil, err
	}
	sealed, err := json.Marshal(rl.seal(requestState{
		Keys: keys, Method: answered.method, Name: stateName(answered.name), Params: digest, Original: state,
		Approved: approvedScope(answered.approvedFor, answered.toolHash), Nonce: approvedNonce(answered.approvedFor), Policy: revision,
	}))
	if err != nil {
		return nil, fmt.Errorf("sealing requestState: %w", err)
	}
	return replaceMember(result, "requestState", sealed)
}

// checkErrorElicitations decides the URL elicitations an error response
// carries (2025-11-25, client/elicitation, "URL Elicitation Required
// Error": code -32042, with "elicitations" in its data), which clients
// act on as on elicitation/create requests from the server: the
// specification has them show the user each URL and make the call again
// once it is done (the Go SDK ships that flow as a middleware). Each
// is read and decided as one (capabilities, foreign tasks, the policy,
// whatever the error's code, since a client may act on any); an error
// with one refused is replaced by the refusal, so the client never asks
// its user. An error whose data is not an object carries none.
func (rl *relay) checkErrorElicitations(errorObject []byte) error {
	data, err := memberValue(errorObject, "data")
	if err != nil || len(data) == 0 || data[0] != '{' {
		return err
	}
	raw, err := memberValue(data, "elicitations")
	if err != nil || raw == nil || string(raw) == "null" {
		return err
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return fmt.Errorf("the error's elicitations are not an array: %w", err)
	}
	for i, entry := range entries {
		var params map[string]any
		if err := decodeNumbers(entry, &params); err != nil || params == nil {
			return fmt.Errorf("the error's elicitations[%d] is not an object: %v", i, err)
		}
		if err := mcpmsg.CheckInputRequest("elicitation/create", params); err != nil {
			return fmt.Errorf("the error's elicitations[%d]: %s", i, err.Message)
		}
		m := &mcpmsg.Message{Kind: mcpmsg.KindRequest, Method: "elicitation/create", Params: params}
		if rl.aboutForeignTask(m) {
			return &replyfilter.ResponseError{Code: CodeRefusedByPolicy, Message: errForeignTask}
		}
		if decision := rl.decideRequest(m.Method, params); decision.Action != policy.ActionAllow {
			return &replyfilter.ResponseError{Code: CodeRefusedByPolicy, Message: refusalText(decision, false)}
		}
	}
	return nil
}

// decodeNumbers decodes raw into v with its numbers kept as written
// (json.Number), as the strict parser keeps them, so that a value the
// gateway reads, decides on or passes on is the one it was sent.
func decodeNumbers(raw []byte, v any) error {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.UseNumber()
	return decoder.Decode(v)
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
		var request inputRequest
		if err := decodeNumbers(entry, &request); err != nil {
			return nil, fmt.Errorf("inputRequests[%q] is not a request: %w", key, err)
		}
		// Read as strictly as a request the server sends on its own, and
		// as clients read it (loosely: see CheckInputRequest).
		if err := mcpmsg.CheckInputRequest(request.Method, request.Params); err != nil {
			return nil, fmt.Errorf("inputRequests[%q]: %s", key, err.Message)
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

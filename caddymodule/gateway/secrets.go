package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/display"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
	"github.com/mcpgate/mcpgate/caddymodule/secrets"
)

// blocksSecrets reports whether block_secrets applies to what this
// gateway relays now: its own setting, or, once a reload retired it,
// that of any gateway serving its server now (see judges), as their
// policies decide its messages then; with none, it does.
func (g *Gateway) blocksSecrets() bool {
	if !g.retired.Load() {
		return g.cfg.BlockSecrets
	}
	judges := g.judges()
	return len(judges) == 0 || slices.ContainsFunc(judges, func(h *Gateway) bool { return h.cfg.BlockSecrets })
}

// blockSecrets is the decision on m, a client's request or notification
// (input its policy input), once block_secrets has looked at it: blocked
// when what it hands the server holds a well-known credential
// (secrets.Find), the decision given otherwise. A tool call's arguments
// are read, then the answers a retried call brings to the server's
// questions (inputResponses: a form filled in, a sampling's completion),
// then the rest of its params; of every other message the client sends,
// its params: a prompt's arguments, a completion's value, a resource's
// URI (a token in its query), a cancellation's or a progress
// notification's words, what an initialize says of the client, a
// progress token, a member of its own or of _meta; and then the rest of
// the message (its id, its method, a member of its own beside params).
// Only what the client hands back as the server gave it, in session, is
// left unread (echoedParams).
func (g *Gateway) blockSecrets(session sessionKey, m *mcpmsg.Message, input *policy.Input, decision policy.Decision) policy.Decision {
	if !g.cfg.BlockSecrets || decision.Action == policy.ActionBlock || m == nil ||
		(input.Kind != mcpmsg.KindRequest.String() && input.Kind != mcpmsg.KindNotification.String()) ||
		input.Direction == policy.DirectionServerToClient {
		// (The server's own requests and notifications are read as they
		// are relayed: relay.withholdsSecrets; a client's answer to one,
		// as it is decided: withholdClientAnswer.)
		return decision
	}
	what, found := clientSecrets(m, input, echoedParams(input.Method, input.Params, g.givenCursor(session)))
	if len(found) == 0 {
		return decision
	}
	return policy.Decision{Action: policy.ActionBlock, Reason: clientSecretsReason(what, found), Revision: decision.Revision}
}

// clientSecretsReason is why block_secrets blocked what a client sends:
// what says where the credentials found are ("tool \"x\" is blocked: its
// arguments hold").
func clientSecretsReason(what string, found []secrets.Finding) string {
	return fmt.Sprintf("%s %s; the gateway blocks credentials in what clients send servers (block_secrets)", what, describeSecrets(found))
}

// clientSecrets finds what blockSecrets blocks m for, and says where it
// is ("tool \"x\" is blocked: its arguments hold"); the params named
// echoed are not read.
func clientSecrets(m *mcpmsg.Message, input *policy.Input, echoed []string) (what string, found []secrets.Finding) {
	read := echoed
	if input.Tool != nil {
		what = fmt.Sprintf("tool %q is blocked: its arguments hold", input.Tool.Name)
		if found = secrets.Find(input.Tool.Arguments); len(found) > 0 {
			return what, found
		}
		what = fmt.Sprintf("tool %q is blocked: the answers it brings the server (inputResponses) hold", input.Tool.Name)
		if found = secrets.Find(input.Params["inputResponses"]); len(found) > 0 {
			return what, found
		}
		read = append(read, "inputResponses")
		if input.Method == "tools/call" {
			read = append(read, "arguments")
		}
	}
	what = fmt.Sprintf("%s is blocked: its params hold", display.Line(input.Method))
	if input.Method == "tools/call" && input.Tool != nil {
		what = fmt.Sprintf("tool %q is blocked: its params hold", input.Tool.Name)
	}
	if found = secrets.Find(paramsBut(input.Params, read)); len(found) > 0 {
		return what, found
	}
	what = fmt.Sprintf("%s is blocked: the message holds", display.Line(input.Method))
	rest, err := outsideParams(m.Raw)
	if err != nil {
		// It passed the strict parse: it decodes.
		return what, []secrets.Finding{{Kind: "message that could not be read for credentials", Path: err.Error()}}
	}
	return what, secrets.Find(rest)
}

// echoedParams returns the members of params, those of a client's
// message of method, that it hands back exactly as the server gave them,
// which block_secrets does not read: a task's id (of taskMethods, which
// checkTasks holds to the tasks the session's calls started), the
// requestState a retried request brings back (of multiRoundTripMethods,
// opened by checkInputResponses, which refuses one the gateway did not
// seal), and a list's cursor that the server gave the session in a list
// of the same method (given). A server may make any of these a signed
// token (a JSON Web Token as a cursor), which is no credential of the
// client's. Any other is read as any member is: a cursor the client made
// up may carry what the server should not get.
func echoedParams(method string, params map[string]any, given func(method, cursor string) bool) []string {
	var echoed []string
	if cursor, ok := params["cursor"].(string); ok && strings.HasSuffix(method, "/list") && given(method, cursor) {
		echoed = append(echoed, "cursor")
	}
	if isTaskMethod(method) {
		echoed = append(echoed, "taskId")
	}
	if slices.Contains(multiRoundTripMethods, method) {
		echoed = append(echoed, "requestState")
	}
	return echoed
}

// paramsBut is params without the members named read (read before, or
// not to be read). params itself is left as it is.
func paramsBut(params map[string]any, read []string) map[string]any {
	kept := make(map[string]any, len(params))
	for name, value := range params {
		if !slices.Contains(read, name) {
			kept[name] = value
		}
	}
	return kept
}

// Bounds on the cursors remembered (Sessions.givenCursors): past them,
// the oldest is forgotten, and a client handing it back is refused as
// one that made it up, since it reads as a credential.
const (
	givenCursorsKept = 10_000
	givenCursorsFor  = time.Hour
)

// givenCursorKey keys a cursor a list of method gave a session: a digest,
// so that what is kept stays small whatever the length of the cursor.
func givenCursorKey(session sessionKey, method, cursor string) [sha256.Size]byte {
	return sha256.Sum256(fmt.Appendf(nil, "%s %q %q", session, method, cursor))
}

// givenCursor reports, for a client's message in session, whether a
// list of method gave the session the cursor it hands back, as far as
// block_secrets need know: only cursors it would read as credentials are
// remembered (noteGivenCursor); any other reads as none.
func (g *Gateway) givenCursor(session sessionKey) func(method, cursor string) bool {
	return func(method, cursor string) bool {
		return g.sessions.givenCursors.Contains(givenCursorKey(session, method, cursor))
	}
}

// noteGivenCursor remembers, under block_secrets, the cursor that result,
// a list of method as relayed to the client in session, gives it
// (nextCursor) when block_secrets would read it as a credential (a
// server's signed token), so that the client may hand it back for the
// next page (echoedParams).
func (g *Gateway) noteGivenCursor(session sessionKey, method string, result []byte) {
	if !strings.HasSuffix(method, "/list") {
		return
	}
	// A nextCursor named otherwise but for case, or not a string, is not
	// remembered: handed back, it is read.
	cursor, err := stringMember(result, "nextCursor")
	if err != nil || cursor == "" || len(secrets.Find(cursor)) == 0 {
		return
	}
	g.sessions.givenCursors.Add(givenCursorKey(session, method, cursor), struct{}{})
}

// outsideParams decodes the members of a message (raw, as the strict
// parse read it) but jsonrpc and params: its id, its method, members of
// its own.
func outsideParams(raw []byte) (map[string]any, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fmt.Errorf("decoding the message: %w", err)
	}
	rest := make(map[string]any, len(members))
	for name, value := range members {
		if name == "jsonrpc" || name == "params" {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(value))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("decoding the message's %q: %w", name, err)
		}
		rest[name] = v
	}
	return rest, nil
}

// withholdClientAnswer replaces, under block_secrets, a client's
// response (its answer to the server's request: an elicitation's form, a
// sampling's completion) that holds a well-known credential anywhere by
// an error saying so, which the server gets in its stead, as the gateway
// answers a server's request it refuses: what asked learns why at once,
// and the client's POST goes on as any answer's. It reports whether it
// withheld m.
func (x *exchange) withholdClientAnswer(m *mcpmsg.Message) bool {
	if m.Kind != mcpmsg.KindResponse || !x.g.blocksSecrets() {
		return false
	}
	what := "what could not be read for credentials"
	if found, err := secrets.FindJSON(m.Raw); err == nil {
		if len(found) == 0 {
			return false
		}
		what = describeSecrets(found)
	}
	x.g.logger.Warn("the client's answer to the server was withheld: it held what looks like a credential (block_secrets)",
		zap.String("upstream", x.g.cfg.Upstream), zap.String("found", what))
	x.replaceMessage(m, nil, mcpmsg.ErrorResponse(m.ID, CodeRefusedByPolicy, fmt.Sprintf(
		"The gateway withheld the client's answer: it held %s, and the gateway blocks credentials in what clients send servers (block_secrets).", what)))
	m.IsError = true
	return true
}

// describingMethods are the requests whose results describe the server
// (what it is, what it offers), which block_secrets does not read for
// credentials: a tool's description may quote a documented example, and
// a list withheld would leave a client with nothing to offer. Every other
// result is read (a tool's, a resource's contents, a prompt's messages, a
// task's status, a completion's values), and every error, whatever it
// answers (a server failing to sign in quotes the key it was given).
var describingMethods = []string{"initialize", "tools/list", "resources/list", "resources/templates/list", "prompts/list"}

// withholdSecrets returns, under block_secrets, what the gateway relays
// in place of result when it holds a well-known credential (anywhere in
// it: a tool's text, its structured content, a resource's contents),
// unless it answers one of describingMethods: a tool call's result (of a
// tools/call, or a task's tasks/result) becomes a failed result saying
// so, since the tool ran; any other answer (also one to a request the
// gateway cannot tell, on a stream resumed) a JSON-RPC error. result is
// returned as it is when it holds none.
func (g *Gateway) withholdSecrets(request answeredRequest, known bool, result []byte) ([]byte, error) {
	if known && slices.Contains(describingMethods, request.method) {
		return result, nil
	}
	what, err := g.secretsInAnswer(request.method, result)
	if err != nil || what == "" {
		return result, err
	}
	if known && (request.method == "tools/call" || request.method == "tasks/result") {
		return json.Marshal(map[string]any{
			"content": []any{map[string]any{"type": "text", "text": fmt.Sprintf(
				"The gateway withheld this tool's result: it held %s, and the gateway blocks credentials in tool calls and their results (block_secrets). The tool ran.", what)}},
			"isError": true,
		})
	}
	return nil, withheldAnswer(what)
}

// guardErrors is the CheckError of a reply's watch: the URL elicitations
// an error carries are decided (relay.checkErrorElicitations) and, under
// block_secrets, an error that holds a well-known credential in its
// message or its data (a server quoting the key it was given, the file
// it failed to parse), whatever it answers, is replaced by the gateway's
// error saying what was withheld, as a result would be.
func (g *Gateway) guardErrors(rl *relay) func(id, errorObject []byte) error {
	return func(id, errorObject []byte) error {
		if err := rl.checkErrorElicitations(errorObject); err != nil || !g.blocksSecrets() {
			return err
		}
		request, _ := rl.answers(id)
		what, err := g.secretsInAnswer(request.method, errorObject)
		if err != nil || what == "" {
			return err
		}
		return withheldAnswer(what)
	}
}

// secretsInAnswer describes the well-known credentials an answer of the
// server's (a result, or an error object) to method ("" when unknown)
// holds; "" when it holds none. It logs what it found.
func (g *Gateway) secretsInAnswer(method string, answer []byte) (string, error) {
	found, err := secrets.FindJSON(answer)
	if err != nil {
		return "", fmt.Errorf("reading an answer for credentials: %w", err)
	}
	if len(found) == 0 {
		return "", nil
	}
	what := describeSecrets(found)
	g.logger.Warn("the server's answer was withheld: it held what looks like a credential (block_secrets)",
		zap.String("upstream", g.cfg.Upstream), zap.String("method", method), zap.String("found", what))
	return what, nil
}

// guardedBySecrets returns hooks, those of a reply's watch, with what
// block_secrets (as it applies when the reply starts) adds to them: every
// reply read, none passed unread (PassJSON); the body of a reply that is
// not 2xx screened (screenFailure; with PassSuccesses, of any reply);
// what clients ignore and the hooks do not read taken out (StripUnread);
// an event whose id or type holds a credential cutting the stream
// (screenEventFields). Without it, hooks as they are, so that a reply
// costs nothing more.
func (g *Gateway) guardedBySecrets(hooks replyfilter.Hooks) replyfilter.Hooks {
	if !g.blocksSecrets() {
		return hooks
	}
	hooks.PassJSON, hooks.StripUnread = false, true
	hooks.ScreenFailure, hooks.ScreenEventFields = g.screenFailure, g.screenEventFields
	return hooks
}

// screenFailure is the ScreenFailure of a reply's watch under
// block_secrets: a reply that is not 2xx and holds a well-known
// credential anywhere in its body (a JSON-RPC error sent with a 4xx, an
// error page, the last line a stdio server wrote to stderr before it
// ended) has its body replaced by the gateway's error, its status kept.
// A body that is JSON is read as its values, any other as text.
func (g *Gateway) screenFailure(body []byte) *replyfilter.ResponseError {
	found, err := secrets.FindJSON(body)
	if err != nil {
		found = secrets.Find(string(body))
	}
	if len(found) == 0 {
		return nil
	}
	what := describeSecrets(found)
	g.logger.Warn("the server's failure was withheld: its body held what looks like a credential (block_secrets)",
		zap.String("upstream", g.cfg.Upstream), zap.String("found", what))
	return withheldAnswer(what)
}

// screenEventFields is the ScreenEventFields of a reply's watch under
// block_secrets: an event whose id or type holds a well-known credential
// cuts the stream (a server has no reason to put one there, and the
// client keeps the id).
func (g *Gateway) screenEventFields(id, eventType string) error {
	found := secrets.Find(map[string]any{"id": id, "event": eventType})
	if len(found) == 0 {
		return nil
	}
	what := describeSecrets(found)
	g.logger.Warn("the server's event stream was cut: an event's id or type held what looks like a credential (block_secrets)",
		zap.String("upstream", g.cfg.Upstream), zap.String("found", what))
	return fmt.Errorf("an event's id or type holds %s (block_secrets)", what)
}

// withheldAnswer is the error that replaces an answer withheld under
// block_secrets.
func withheldAnswer(what string) *replyfilter.ResponseError {
	return &replyfilter.ResponseError{Code: CodeRefusedByPolicy, Message: fmt.Sprintf(
		"The gateway withheld the server's answer: it held %s, and the gateway blocks credentials in what servers answer (block_secrets).", what)}
}

// withholdsSecrets reports, under block_secrets, whether m, a request or
// a notification the server sends the client, holds a well-known
// credential (in its params: a log line's data, a progress message, a
// sampling's messages, an elicitation's message; or anywhere else in it,
// its id, a member of its own): a notification is then dropped, a
// request answered to the server with the refusal, and neither reaches
// the client.
func (rl *relay) withholdsSecrets(m *mcpmsg.Message) bool {
	if rl.guard == nil || !rl.guard.blocksSecrets() {
		return false
	}
	// The message as the client reads it (it passed the strict parse, so
	// that it decodes; its params otherwise).
	found, err := secrets.FindJSON(m.Raw)
	if err != nil {
		found = secrets.Find(m.Params)
	}
	if len(found) == 0 {
		return false
	}
	what := describeSecrets(found)
	rl.warn("the server's message to the client was withheld: it held what looks like a credential (block_secrets)",
		zap.String("method", display.Cut(m.Method, maxLoggedReason)), zap.String("found", what))
	if m.Kind == mcpmsg.KindRequest {
		rl.refuse(m, mcpmsg.ErrorResponse(m.ID, CodeRefusedByPolicy, fmt.Sprintf(
			"The gateway withheld the server's request: it held %s, and the gateway blocks credentials in what servers send (block_secrets).", what)))
	}
	return true
}

// describeSecrets says what was found and where, the first three
// findings named ("what looks like a GitHub token (at \"body\")").
func describeSecrets(found []secrets.Finding) string {
	const named = 3
	parts := make([]string, 0, named+1)
	for i, f := range found {
		if i == named {
			parts = append(parts, fmt.Sprintf("%d more", len(found)-named))
			break
		}
		parts = append(parts, fmt.Sprintf("what looks like a %s (at %q)", f.Kind, display.Cut(f.Path, 100)))
	}
	return strings.Join(parts, ", ")
}

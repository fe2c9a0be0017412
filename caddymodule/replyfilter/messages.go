package replyfilter

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// errNotJSON is why a rewritten result that is not valid JSON is refused.
var errNotJSON = errors.New("rewritten result is not valid JSON")

// ResponseError is an error that RewriteResult or CheckError returns to
// answer for the upstream: the response is replaced by a JSON-RPC error with this code and
// message, for the same id. Unlike other errors, it is a deliberate answer,
// not a failure, and OnError is not told of it.
type ResponseError struct {
	Code    int
	Message string
}

// Error returns the message and its code.
func (e *ResponseError) Error() string {
	return fmt.Sprintf("%s (JSON-RPC error %d)", e.Message, e.Code)
}

// inspect reads data, a JSON-RPC message or batch, as strictly as the
// gateway reads what clients send. It tells OnMessage of each message,
// drops those Intercept claims and rewrites the results of watched
// responses. It returns what to forward in place of data: nil when that is
// data itself, and an empty slice when every message was dropped.
//
// What Parse refuses fails the whole of data, which refuses a JSON reply
// and cuts a stream. That includes a message whose numeric id, progress
// token or cancelled request id readers may read differently (1.0, or
// 9007199254740993): the gateway could not tell for sure which request
// such a response answers, nor which of its requests a client's answer
// answers, and so must not relay it as it is. Dropping the message alone
// would leave the reply looking whole; failing closed tells the client
// that something was lost.
func (o *writer) inspect(data []byte) ([]byte, error) {
	body, err := mcpmsg.Parse(data, mcpmsg.Limits{MaxValues: o.hooks.maxValues()})
	if err != nil {
		return nil, err
	}
	// messages stays nil until a message changes; a dropped one is nil.
	var messages [][]byte
	changed := func(i int, out []byte) {
		if messages == nil {
			messages = make([][]byte, len(body.Messages))
			for j := range body.Messages {
				messages[j] = body.Messages[j].Raw
			}
		}
		messages[i] = out
	}
	for i := range body.Messages {
		m := &body.Messages[i]
		if o.hooks.OnMessage != nil {
			o.hooks.OnMessage(m)
		}
		if o.hooks.Intercept != nil && o.hooks.Intercept(m) {
			changed(i, nil)
			continue
		}
		if out := o.rewrite(m); out != nil {
			changed(i, out)
		}
	}
	if messages == nil {
		return nil, nil
	}
	kept := messages[:0]
	for _, m := range messages {
		if m != nil {
			kept = append(kept, m)
		}
	}
	switch {
	case len(kept) == 0:
		return []byte{}, nil
	case body.Batch:
		return mcpmsg.BatchResponse(kept), nil
	default:
		return kept[0], nil
	}
}

// rewrite returns the message to forward in place of m when m is a
// response to a watched id, with a result that RewriteResult changes or
// fails on, or an error that CheckError refuses, or, with
// Hooks.StripUnread, a response with members JSON-RPC does not
// define; otherwise nil.
func (o *writer) rewrite(m *mcpmsg.Message) []byte {
	out := o.rewriteAnswer(m)
	if !o.hooks.StripUnread || m.Kind != mcpmsg.KindResponse {
		return out
	}
	base := out
	if base == nil {
		base = m.Raw
	}
	if trimmed := responseMembersOnly(base); trimmed != nil {
		return trimmed
	}
	return out
}

// responseMembers are the members of a JSON-RPC response (JSON-RPC 2.0,
// section 5).
var responseMembers = []string{"jsonrpc", "id", "result", "error"}

// responseMembersOnly returns response, a JSON-RPC response, without the
// members JSON-RPC does not define, the others' values as they came, to
// the byte; nil when it has none to take out (or cannot be read, which
// Parse refused before).
func responseMembersOnly(response []byte) []byte {
	decoder := jsontext.NewDecoder(bytes.NewReader(response))
	if token, err := decoder.ReadToken(); err != nil || token.Kind() != '{' {
		return nil
	}
	out := []byte{'{'}
	dropped := false
	for decoder.PeekKind() == '"' {
		token, err := decoder.ReadToken()
		if err != nil {
			return nil
		}
		name := token.String()
		value, err := decoder.ReadValue()
		if err != nil {
			return nil
		}
		if !slices.Contains(responseMembers, name) {
			dropped = true
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		// The names kept are plain ASCII, written as they read.
		out = append(append(append(out, '"'), name...), '"', ':')
		out = append(out, value...)
	}
	if !dropped {
		return nil
	}
	return append(out, '}')
}

// rewriteAnswer is rewrite's work on a response's result or error.
func (o *writer) rewriteAnswer(m *mcpmsg.Message) []byte {
	switch {
	case m.Kind != mcpmsg.KindResponse || (o.hooks.RewriteResult == nil && o.hooks.CheckError == nil):
		return nil
	case o.hooks.WatchAll:
	case !o.watched[mcpmsg.CanonicalID(m.ID)]:
		return nil
	}
	if m.IsError {
		if o.hooks.CheckError == nil {
			return nil
		}
		start, end, ok := memberSpan(m.Raw, "error")
		if !ok {
			return nil
		}
		return o.replacement(m, "checking the error", o.hooks.CheckError(m.ID, m.Raw[start:end]))
	}
	start, end, ok := memberSpan(m.Raw, "result")
	if !ok || o.hooks.RewriteResult == nil {
		return nil
	}
	result := m.Raw[start:end]
	out, err := o.hooks.RewriteResult(m.ID, result)
	if err == nil && !jsontext.Value(out).IsValid() {
		err = errNotJSON
	}
	if err != nil {
		return o.replacement(m, "rewriting the result", err)
	}
	if bytes.Equal(out, result) {
		return nil
	}
	// Only the result changes: the rest of the response stays as the
	// upstream sent it and Parse accepted it.
	spliced := make([]byte, 0, len(m.Raw)-len(result)+len(out))
	spliced = append(spliced, m.Raw[:start]...)
	spliced = append(spliced, out...)
	return append(spliced, m.Raw[end:]...)
}

// replacement returns the error response that replaces m when a hook
// failed on it with err (nil when err is): the *ResponseError's answer, or
// an internal error saying what failed, of which OnError is told.
func (o *writer) replacement(m *mcpmsg.Message, doing string, err error) []byte {
	if err == nil {
		return nil
	}
	if answer, ok := errors.AsType[*ResponseError](err); ok {
		return mcpmsg.ErrorResponse(m.ID, answer.Code, answer.Message)
	}
	err = fmt.Errorf("%s for id %s: %w", doing, m.ID, err)
	if o.hooks.OnError != nil {
		o.hooks.OnError(err)
	}
	return mcpmsg.ErrorResponse(m.ID, mcpmsg.CodeInternalError, err.Error())
}

// memberSpan returns where the value of msg's member name lies in msg, a
// message that Parse accepted; ok is false when it has none.
func memberSpan(msg []byte, member string) (start, end int, ok bool) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(msg))
	if _, err := dec.ReadToken(); err != nil {
		return 0, 0, false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return 0, 0, false
		}
		if name.String() != member {
			if err := dec.SkipValue(); err != nil {
				return 0, 0, false
			}
			continue
		}
		value, err := dec.ReadValue()
		if err != nil {
			return 0, 0, false
		}
		end := int(dec.InputOffset())
		return end - len(value), end, true
	}
	return 0, 0, false
}

package observe

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// errNotJSON is why a rewritten result that is not valid JSON is refused.
var errNotJSON = errors.New("rewritten result is not valid JSON")

// inspect reads data, a JSON-RPC message or batch, as strictly as the
// gateway reads what clients send. It tells OnMessage of each message and
// rewrites the results of watched responses. It returns what to forward in
// place of data, or nil when that is data itself.
func (o *writer) inspect(data []byte) ([]byte, error) {
	body, err := mcpmsg.Parse(data, mcpmsg.Limits{})
	if err != nil {
		return nil, err
	}
	// messages stays nil until a message changes.
	var messages [][]byte
	for i := range body.Messages {
		m := &body.Messages[i]
		if o.hooks.OnMessage != nil {
			o.hooks.OnMessage(m)
		}
		out := o.rewrite(m)
		if out == nil {
			continue
		}
		if messages == nil {
			messages = make([][]byte, len(body.Messages))
			for j := range body.Messages {
				messages[j] = body.Messages[j].Raw
			}
		}
		messages[i] = out
	}
	switch {
	case messages == nil:
		return nil, nil
	case body.Batch:
		return mcpmsg.BatchResponse(messages), nil
	default:
		return messages[0], nil
	}
}

// rewrite returns the message to forward in place of m when m is a
// response to a watched id, with a result that RewriteResult changes or
// fails on; otherwise nil.
func (o *writer) rewrite(m *mcpmsg.Message) []byte {
	if m.Kind != mcpmsg.KindResponse || len(o.watched) == 0 || !o.watched[canonicalID(m.ID)] {
		return nil
	}
	start, end, ok := resultSpan(m.Raw)
	if !ok {
		return nil // an error response
	}
	result := m.Raw[start:end]
	out, err := o.hooks.RewriteResult(m.ID, result)
	if err == nil && !jsontext.Value(out).IsValid() {
		err = errNotJSON
	}
	if err != nil {
		err = fmt.Errorf("rewriting the result for id %s: %w", m.ID, err)
		if o.hooks.OnError != nil {
			o.hooks.OnError(err)
		}
		return mcpmsg.ErrorResponse(m.ID, mcpmsg.CodeInternalError, err.Error())
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

// resultSpan returns where the value of the "result" member lies in msg, a
// message that Parse accepted; ok is false when it has none.
func resultSpan(msg []byte) (start, end int, ok bool) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(msg))
	if _, err := dec.ReadToken(); err != nil {
		return 0, 0, false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return 0, 0, false
		}
		if name.String() != "result" {
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

// canonicalID returns id in the canonical form of RFC 8785, so that ids
// equal as JSON values (as a JavaScript client compares them) are equal
// strings: "\u0061" becomes "a", and 1.0 and 1e0 become 1.
func canonicalID(id []byte) string {
	v := jsontext.Value(bytes.Clone(id))
	if err := v.Canonicalize(); err != nil {
		return string(id)
	}
	return string(v)
}

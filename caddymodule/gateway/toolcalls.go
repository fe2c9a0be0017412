package gateway

import (
	"net/http"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// toolOutcome is what became of a tool call the gateway forwarded to the
// server, as the metrics count it (mcpgate_tool_calls_total).
type toolOutcome string

const (
	// toolOK: the server answered with a result (a task it created
	// among them), without isError.
	toolOK toolOutcome = "ok"
	// toolError: the server answered with a result whose isError is
	// true: the tool ran and failed.
	toolError toolOutcome = "tool_error"
	// rpcError: the server answered with a JSON-RPC error.
	rpcError toolOutcome = "error"
	// toolCancelled: the client cancelled the call before its answer
	// came.
	toolCancelled toolOutcome = "cancelled"
	// toolFailed: no answer came: the server refused the POST, its reply
	// ended or was cut before the answer, or the gateway refused the
	// reply; or none a client reads (a result whose isError is no
	// boolean).
	toolFailed toolOutcome = "failed"
)

// resultOutcome is the outcome of a call the server answered with result.
func resultOutcome(result []byte) toolOutcome {
	switch isError, usable := replyfilter.ResultIsError(result); {
	case !usable:
		// No client reads it: as if no answer came.
		return toolFailed
	case isError:
		return toolError
	}
	return toolOK
}

// forwardedCalls follows the tool calls of one POST on Streamable HTTP
// (or stdio), from the moment they go on to the server until its reply
// ends, and counts what became of each. (On HTTP+SSE the answers come on
// the session's stream: see legacyStream, which follows them there.)
type forwardedCalls struct {
	metrics upstreamMetrics
	trail   *callTrail
	// x is the POST's exchange, whose client may give up on its calls
	// (exchange.gaveUp): an answer that comes after is no answer it gets.
	x    *exchange
	sent time.Time
	// calls are the POST's tools/call requests, in its order (a batch's
	// are few): a list rather than a map, since most replies are passed
	// unread and never look one up.
	calls []forwardedCall
}

// forwardedCall is one tool call forwarded, and, once its answer came,
// what the answer said and when it came.
type forwardedCall struct {
	// id is the request's raw id (compared as mcpmsg.CanonicalID makes
	// it).
	id       []byte
	tool     string
	span     trace.Span
	outcome  toolOutcome
	answered time.Time
}

// followToolCalls starts following the allowed tools/call requests the
// POST forwards now; nil when it forwards none, or when their answers
// come on an HTTP+SSE session's stream. The methods of a nil
// *forwardedCalls do nothing.
func (x *exchange) followToolCalls() *forwardedCalls {
	if x.legacy != nil {
		return nil
	}
	var f *forwardedCalls
	for _, v := range x.verdicts {
		m := v.message
		if !v.forwardsRequest() || m.Tool == nil {
			continue
		}
		if f == nil {
			f = &forwardedCalls{metrics: x.g.metrics, trail: x.callTrail(), x: x, sent: time.Now()}
		}
		f.calls = append(f.calls, forwardedCall{id: m.ID, tool: m.Tool.Name, span: f.trail.startToolCallSpan(v)})
	}
	return f
}

// answerResult notes the server's answer with result to the request with
// this raw id, if it is one of the calls followed and the first answer to
// it.
func (f *forwardedCalls) answerResult(id, result []byte) {
	f.answer(id, resultOutcome(result))
}

// answerError notes the server's JSON-RPC error in answer to the request
// with this raw id, as answerResult notes a result.
func (f *forwardedCalls) answerError(id []byte) {
	f.answer(id, rpcError)
}

// answer notes the server's answer to the request with this raw id, as
// outcome says, if it is one of the calls followed and the first answer
// to it; a call its client gave up on first is cancelled, whatever comes.
func (f *forwardedCalls) answer(id []byte, outcome toolOutcome) {
	if c := f.unanswered(id); c != nil {
		if f.x.gaveUp() {
			outcome = toolCancelled
		}
		c.outcome, c.answered = outcome, time.Now()
	}
}

// unanswered returns the call followed with this raw id, if its answer
// has not come yet.
func (f *forwardedCalls) unanswered(id []byte) *forwardedCall {
	if f == nil {
		return nil
	}
	canonical := mcpmsg.CanonicalID(id)
	for i := range f.calls {
		if c := &f.calls[i]; c.outcome == "" && mcpmsg.CanonicalID(c.id) == canonical {
			return c
		}
	}
	return nil
}

// end counts every call followed, and tells its end to the audit trail
// and the trace: those the reply answered as they were answered, the
// others as unanswered says.
func (f *forwardedCalls) end(unanswered toolOutcome) {
	if f == nil {
		return
	}
	now := time.Now()
	for _, c := range f.calls {
		outcome, at := c.outcome, c.answered
		if outcome == "" {
			outcome, at = unanswered, now
		}
		f.metrics.toolCall(c.tool, outcome, at.Sub(f.sent))
		f.trail.ended(c.id, c.tool, c.span, outcome, f.sent, at)
	}
}

// answerUnreadable notes the answer that reply, a JSON-RPC response the
// gateway's strict parser could not read and which went on as it came
// (replyfilter.PassedUnreadable), gives the call of its id, read as the
// MCP SDKs' clients read it (exact member names, the last of several): a
// non-null error is an error; a result, what its isError says. A reply
// that cannot be read so, or answers no call followed, answers nothing.
func (f *forwardedCalls) answerUnreadable(reply []byte) {
	var response struct {
		ID     jsontext.Value `json:"id"`
		Error  jsontext.Value `json:"error"`
		Result jsontext.Value `json:"result"`
	}
	if jsonv2.Unmarshal(reply, &response, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)) != nil || len(response.ID) == 0 {
		return
	}
	switch {
	case len(response.Error) > 0 && string(response.Error) != "null":
		f.answerError(response.ID)
	case len(response.Result) > 0 && string(response.Result) != "null":
		f.answerResult(response.ID, response.Result)
	}
}

// unansweredOutcome is the outcome of the calls of a POST whose reply
// (w, from watchReply, once finished) did not answer them where the
// gateway read it: a call the client cancelled meanwhile
// (notifications/cancelled), or gave up on (it closed the POST's
// connection), was cancelled; a 2xx JSON reply passed unread answered
// the others without failure (replyfilter.PassedUnread); any other
// failed.
func (x *exchange) unansweredOutcome(w http.ResponseWriter) toolOutcome {
	switch {
	case x.gaveUp():
		return toolCancelled
	case replyfilter.PassedUnread(w):
		return toolOK
	default:
		return toolFailed
	}
}

// gaveUp reports whether the client has given up on the POST's calls: it
// cancelled its one call (notifications/cancelled), or closed the POST's
// connection.
func (x *exchange) gaveUp() bool {
	if x.r.Context().Err() != nil {
		return true
	}
	select {
	case <-x.cancelled:
		return true
	default:
		return false
	}
}

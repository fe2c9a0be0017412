// Package observe lets the gateway watch, and where it must rewrite, the
// JSON-RPC messages that an MCP server sends back through it: the body of a
// JSON reply to a POST, and the events of an event stream (the reply to a
// POST, or the stream that a GET opens).
//
// Wrap wraps the http.ResponseWriter that the next handler (Caddy's
// reverse_proxy) writes the upstream's reply to. A JSON reply is held until
// it is complete, since a rewrite may change its length; an event stream is
// read event by event, and each event is forwarded in canonical form as soon
// as its blank line arrives; any other reply passes through untouched. What
// the wrapper cannot read as JSON-RPC it does not pass on: a JSON reply is
// replaced by a 502 JSON-RPC error, and a stream is cut.
package observe

import (
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// DefaultMaxBodySize is the largest JSON reply held for inspection when
// Hooks.MaxBodySize is zero or less.
const DefaultMaxBodySize = 16 << 20

// Hooks says what the gateway wants from a reply.
type Hooks struct {
	// WatchIDs are the raw JSON ids of the requests whose responses
	// RewriteResult sees. Ids compare as JSON values, as a client compares
	// them: "\u0061" matches "a" and 1.0 matches 1, but "1" does not
	// match 1.
	WatchIDs [][]byte
	// RewriteResult, when set, is called with the raw id and the raw
	// "result" of each response to a watched id, and returns the result to
	// forward in its place; returning result itself leaves the response as
	// it was. result aliases the reply and must be neither kept nor
	// modified. When RewriteResult fails, or returns what is not valid
	// JSON, the response is replaced by a JSON-RPC error for the same id
	// (mcpmsg.CodeInternalError, with the error as its message).
	RewriteResult func(id, result []byte) ([]byte, error)
	// OnMessage, when set, is called for each JSON-RPC message of the
	// reply, as the upstream sent it, before any rewrite. It must not
	// block, since the reply waits for it, and must not modify msg.
	OnMessage func(msg *mcpmsg.Message)
	// OnError, when set, is told why a reply was refused or a stream cut,
	// and why a rewrite failed.
	OnError func(err error)
	// MaxEventSize bounds one event of a stream; zero or less means
	// mcpmsg.DefaultMaxEventSize. A larger event cuts the stream.
	MaxEventSize int
	// MaxBodySize bounds a JSON reply; zero or less means
	// DefaultMaxBodySize. A larger reply is refused.
	MaxBodySize int
}

// Wrap returns a ResponseWriter that applies hooks to what the next handler
// writes to it, and a finish function to call once that handler has
// returned. finish writes the JSON reply that the wrapper held back, and
// returns why the reply was refused or the stream cut, if it was (an error
// already given to OnError). When the next handler fails before its reply
// is complete, nothing of a JSON reply has been written yet: the caller may
// skip finish and answer the error itself.
//
// Like any ResponseWriter, the wrapper is not safe for concurrent use.
func Wrap(w http.ResponseWriter, hooks Hooks) (http.ResponseWriter, func() error) {
	if hooks.MaxBodySize <= 0 {
		hooks.MaxBodySize = DefaultMaxBodySize
	}
	o := &writer{w: w, hooks: hooks}
	if hooks.RewriteResult != nil && len(hooks.WatchIDs) > 0 {
		o.watched = make(map[string]bool, len(hooks.WatchIDs))
		for _, id := range hooks.WatchIDs {
			o.watched[canonicalID(id)] = true
		}
	}
	return o, o.finish
}

// mode is how the wrapper treats a reply.
type mode int

const (
	// modeUndecided: the final status is not known yet.
	modeUndecided mode = iota
	// modePass: a reply that carries no messages to read, or a held reply
	// that has been written out; passed through.
	modePass
	// modeJSON: a JSON reply, held until finish.
	modeJSON
	// modeStream: an event stream, forwarded event by event.
	modeStream
	// modeFailed: a reply refused or a stream cut; nothing more goes out.
	modeFailed
)

// writer is the ResponseWriter that Wrap returns.
type writer struct {
	w     http.ResponseWriter
	hooks Hooks
	// watched holds the canonical forms of hooks.WatchIDs; nil when there
	// is nothing to rewrite.
	watched map[string]bool
	mode    mode
	// status and body are a JSON reply's, held until finish.
	status int
	body   []byte
	// events reads an event stream; out collects the events that one
	// Write completes, encoded.
	events *mcpmsg.SSEDecoder
	out    []byte
	// err is why the reply was refused or the stream cut.
	err error
}

// Header returns the header of the underlying ResponseWriter.
func (o *writer) Header() http.Header {
	return o.w.Header()
}

// WriteHeader decides from the final status and the headers how to treat
// the reply. An informational status passes through and decides nothing.
func (o *writer) WriteHeader(status int) {
	if o.mode != modeUndecided {
		return
	}
	if status >= 100 && status <= 199 && status != http.StatusSwitchingProtocols {
		o.w.WriteHeader(status)
		return
	}
	m, err := replyMode(status, o.w.Header())
	switch m {
	case modeJSON:
		o.mode, o.status = m, status
		if n, convErr := strconv.Atoi(o.w.Header().Get("Content-Length")); convErr == nil && n > 0 && n <= o.hooks.MaxBodySize {
			o.body = make([]byte, 0, n)
		}
	case modeStream:
		o.mode = m
		o.events = mcpmsg.NewSSEDecoder(o.hooks.MaxEventSize)
		o.w.Header().Del("Content-Length")
		o.w.WriteHeader(status)
	case modePass:
		o.mode = m
		o.w.WriteHeader(status)
	default:
		_ = o.refuse(err)
	}
}

// Write passes on, holds or reads p, as the reply's mode says. After the
// reply has been refused or the stream cut, it returns why, which makes
// reverse_proxy stop reading from the upstream.
func (o *writer) Write(p []byte) (int, error) {
	if o.mode == modeUndecided {
		o.WriteHeader(http.StatusOK)
	}
	switch o.mode {
	case modePass:
		return o.w.Write(p)
	case modeJSON:
		if len(o.body)+len(p) > o.hooks.MaxBodySize {
			return 0, o.refuse(fmt.Errorf("upstream JSON reply is larger than %d bytes", o.hooks.MaxBodySize))
		}
		o.body = append(o.body, p...)
		return len(p), nil
	case modeStream:
		return o.writeEvents(p)
	default:
		return 0, o.err
	}
}

// FlushError flushes what has been forwarded; a held JSON reply is written
// whole by finish, so flushing it does nothing. As net/http's own flush
// does, it settles the status first. http.ResponseController looks for this
// method before it unwraps the writer.
func (o *writer) FlushError() error {
	if o.mode == modeUndecided {
		o.WriteHeader(http.StatusOK)
	}
	if o.mode == modeJSON {
		return nil
	}
	return http.NewResponseController(o.w).Flush()
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (o *writer) Unwrap() http.ResponseWriter {
	return o.w
}

// finish writes a held JSON reply and reports how the reply ended.
func (o *writer) finish() error {
	switch o.mode {
	case modeJSON:
		return o.writeJSON()
	case modeStream:
		if err := o.events.End(); err != nil {
			// The partial event was never forwarded.
			o.fail(fmt.Errorf("upstream event stream: %w", err))
		}
	}
	return o.err
}

// writeJSON writes the held JSON reply, or what replaces it.
func (o *writer) writeJSON() error {
	body := o.body
	if len(body) > 0 {
		out, err := o.inspect(body)
		if err != nil {
			return o.refuse(fmt.Errorf("upstream JSON reply: %w", err))
		}
		if out != nil {
			body = out
		}
		o.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	o.mode = modePass
	o.w.WriteHeader(o.status)
	if _, err := o.w.Write(body); err != nil {
		return fmt.Errorf("writing JSON reply: %w", err)
	}
	return nil
}

// writeEvents reads p as the next piece of an event stream, forwards the
// events it completes and flushes them to the client. An event that is not
// what the gateway can read cuts the stream.
func (o *writer) writeEvents(p []byte) (int, error) {
	o.out = o.out[:0]
	if cap(o.out) > 64<<10 {
		o.out = nil // a stream may stay open for hours; let a large event's memory go
	}
	err := o.events.Feed(p, o.forwardEvent)
	if len(o.out) > 0 {
		if _, werr := o.w.Write(o.out); werr != nil {
			return 0, fmt.Errorf("writing event stream: %w", werr)
		}
		// Flushing is best effort: a client that has gone fails the next
		// write.
		_ = http.NewResponseController(o.w).Flush()
	}
	if err != nil {
		err = fmt.Errorf("upstream event stream cut: %w", err)
		o.fail(err)
		return 0, err
	}
	return len(p), nil
}

// forwardEvent reads the message an event carries and queues the event, in
// canonical form, with the message rewritten if it must be.
func (o *writer) forwardEvent(e mcpmsg.Event) error {
	// Blocks without data (comments, id, retry), and the event with empty
	// data that primes a client to resume a stream (MCP 2025-11-25,
	// basic/transports, "Resumability and Redelivery"), carry no message.
	if e.Data != "" {
		out, err := o.inspect([]byte(e.Data))
		if err != nil {
			return fmt.Errorf("event data: %w", err)
		}
		if out != nil {
			e.Data = string(out)
		}
	}
	o.out = e.AppendTo(o.out)
	return nil
}

// refuse answers with a 502 JSON-RPC error in place of a reply of which
// nothing has been written yet, stops everything that follows, and returns
// err.
func (o *writer) refuse(err error) error {
	o.fail(err)
	body := mcpmsg.ErrorResponse(nil, mcpmsg.CodeInternalError, "refused by the gateway: "+err.Error())
	h := o.w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	o.w.WriteHeader(http.StatusBadGateway)
	_, _ = o.w.Write(body)
	return err
}

// fail stops all further output and reports err.
func (o *writer) fail(err error) {
	o.mode, o.err = modeFailed, err
	if o.hooks.OnError != nil {
		o.hooks.OnError(err)
	}
}

// replyMode chooses how to treat a reply from its final status and headers.
// A 2xx reply is read when it is JSON or an event stream, and refused when
// its type or encoding leave in doubt how a client would read it: clients
// look for these types loosely (the TypeScript SDK checks only that the
// header contains them), and cannot read an encoding the gateway did not.
func replyMode(status int, h http.Header) (mode, error) {
	if status < 200 || status > 299 {
		return modePass, nil
	}
	types := h.Values("Content-Type")
	if len(types) == 0 {
		return modePass, nil
	}
	if len(types) > 1 {
		return modeFailed, fmt.Errorf("upstream reply has %d Content-Type headers", len(types))
	}
	var m mode
	mediaType, _, err := mime.ParseMediaType(types[0])
	switch {
	case err == nil && mediaType == "application/json":
		m = modeJSON
	case err == nil && mediaType == "text/event-stream":
		m = modeStream
	case strings.Contains(strings.ToLower(types[0]), "json") || strings.Contains(strings.ToLower(types[0]), "event-stream"):
		return modeFailed, fmt.Errorf("upstream reply has an unclear Content-Type %q", types[0])
	default:
		return modePass, nil
	}
	if enc := h.Values("Content-Encoding"); len(enc) > 1 || len(enc) == 1 && !strings.EqualFold(enc[0], "identity") {
		return modeFailed, fmt.Errorf("upstream reply has Content-Encoding %q, which the gateway does not decode", strings.Join(enc, ", "))
	}
	return m, nil
}

var (
	_ http.ResponseWriter = (*writer)(nil)
	_ interface {
		FlushError() error
		Unwrap() http.ResponseWriter
	} = (*writer)(nil)
)

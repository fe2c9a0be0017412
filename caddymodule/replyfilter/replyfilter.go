// Package replyfilter lets the gateway watch, and where it must rewrite, the
// JSON-RPC messages that an MCP server sends back through it: the body of a
// JSON reply to a POST, and the events of an event stream (the reply to a
// POST, or the stream that a GET opens).
//
// Wrap wraps the http.ResponseWriter that the next handler (Caddy's
// reverse_proxy) writes the upstream's reply to. A JSON reply is held until
// it is complete, since a rewrite may change its length; an event stream is
// read event by event, and each event is forwarded in canonical form as soon
// as its blank line arrives; any other reply passes through with its body
// untouched, isolated (Isolate). What
// the wrapper cannot read as JSON-RPC it does not pass on: a JSON reply is
// replaced by a 502 JSON-RPC error, and a stream is cut. Messages the
// gateway must not relay (a server's request that policy refuses) can be
// dropped, and messages of the gateway's own can be injected into a stream
// between the upstream's events.
package replyfilter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// ReplyValuesPerRequestValue is how many times as many JSON values a
// reply may hold as a request: lists and results run larger than any
// request, while a 16 MiB reply of zeros, which took 640 MiB to read, is
// refused after some 280 MiB by default.
const ReplyValuesPerRequestValue = 16

// maxValues returns the effective limit on a reply's values.
func (h *Hooks) maxValues() int {
	if h.MaxValues > 0 {
		return h.MaxValues
	}
	return ReplyValuesPerRequestValue * mcpmsg.DefaultMaxValues
}

// DefaultMaxBodySize is the largest JSON reply held for inspection when
// Hooks.MaxBodySize is zero or less.
const DefaultMaxBodySize = 16 << 20

// Hooks says what the gateway wants from a reply.
type Hooks struct {
	// MaxValues is the most JSON values a reply (a JSON body, or one
	// event) may hold, counted as it is read (see mcpmsg.Limits): past
	// it, the reply is refused or the stream cut. Zero means
	// ReplyValuesPerRequestValue times mcpmsg.DefaultMaxValues.
	MaxValues int
	// WatchIDs are the raw JSON ids of the requests whose responses
	// RewriteResult and CheckError see. Ids compare as
	// mcpmsg.CanonicalID makes them: "\u0061" matches "a", which no
	// reader tells apart, but "1" does not match 1, and numbers match
	// only when written alike (the replies the wrapper reads carry no
	// numeric ids but integers written plainly).
	WatchIDs [][]byte
	// WatchAll makes RewriteResult and CheckError see every response,
	// whatever its id (for streams whose requests the gateway does not
	// know, such as a resumed one).
	WatchAll bool
	// RewriteResult, when set, is called with the raw id and the raw
	// "result" of each response to a watched id, and returns the result to
	// forward in its place; returning result itself leaves the response as
	// it was. result aliases the reply and must be neither kept nor
	// modified. When RewriteResult fails, or returns what is not valid
	// JSON, the response is replaced by a JSON-RPC error for the same id
	// (mcpmsg.CodeInternalError, with the error as its message).
	RewriteResult func(id, result []byte) ([]byte, error)
	// CheckError, when set, is called with the raw id and the raw "error"
	// of each error response to a watched id (an error may carry what a
	// client acts on: a URL elicitation the request requires). It aliases
	// the reply, as RewriteResult's result does. When it returns a
	// *ResponseError the response is replaced by that; another error
	// replaces it as RewriteResult's errors do; nil leaves it as it was.
	CheckError func(id, errorObject []byte) error
	// OnMessage, when set, is called for each JSON-RPC message of the
	// reply, as the upstream sent it, before any rewrite. It must not
	// block, since the reply waits for it, and must not modify msg.
	OnMessage func(msg *mcpmsg.Message)
	// Intercept, when set, is called for each JSON-RPC message of the
	// reply after OnMessage, before any rewrite, and returns true to drop
	// the message: it is not forwarded. A batch loses only the dropped
	// elements. An event whose messages are all dropped is forwarded
	// without its data, so that its id, retry time and comments still take
	// effect (a client that resumes the stream resumes after it). A JSON
	// reply whose messages are all dropped is refused. Like OnMessage, it
	// runs while the reply waits, and must not modify msg.
	Intercept func(msg *mcpmsg.Message) bool
	// Endpoint, when set, is called with the data of an "endpoint" event
	// that opens an event stream, and returns the data to forward in its
	// place; an error cuts the stream. In the HTTP+SSE transport of MCP
	// 2024-11-05 the server names in that event the URL that clients post
	// their messages to. Any later endpoint event cuts the stream: some
	// clients (the TypeScript SDK's) take each as a new URL to post to,
	// whatever it holds. When Endpoint is nil, endpoint events are read as
	// JSON-RPC like all events (Streamable HTTP clients ignore the type),
	// and so, not being JSON-RPC, cut the stream.
	Endpoint func(uri string) (string, error)
	// PassJSON lets 2xx JSON replies that cannot hold a JSON-RPC request,
	// nor a tools/list result, nor a task created, nor an error's
	// elicitations, nor an error or a tool's failed result, nor a cache
	// scope, nor a resources or prompts list, pass without being parsed:
	// replies whose bytes name no "method", "tools", "taskId",
	// "elicitations", "error", "isError", "cacheScope", "resources" or
	// "prompts" member, in any case, and hold no \u escape. Any other
	// JSON reply is read as usual, so a request smuggled into a reply is
	// still intercepted, and an error seen by OnMessage and CheckError, a
	// failed tool result or a cache scope by RewriteResult (what a reply
	// passed unread says of its requests is that they succeeded: see
	// PassedUnread). It is for replies in which nothing but requests,
	// outcomes and cache scopes would interest the hooks; event streams
	// are always read.
	PassJSON bool
	// RefusalID is the raw id of the one request a refused JSON reply
	// answers, given to the error that replaces it, so that clients match
	// the error to their request; nil (a null id) when the reply answers
	// several, or none.
	RefusalID []byte
	// AnswersOf, when set, reports whether a response of this raw id
	// answers a request the reply may answer. With PassJSON, a reply then
	// passes unread only when it is one response to such a request, with
	// a result (see answersAlone); any other is read, and so a response to
	// another request meets Intercept as in a reply read, whatever else it
	// names or does not.
	AnswersOf func(id []byte) bool
	// OpensStream says the reply answers a GET that opens a stream of the
	// server's messages. Clients read such a body as an event stream
	// whatever its Content-Type (the TypeScript SDK's GET stream and
	// go-sdk's HTTP+SSE client check none), so a 2xx reply that is neither
	// an event stream nor JSON, or names no type, is refused rather than
	// passed unread.
	OpensStream bool
	// StripUnread takes out of what is relayed what clients ignore but
	// may log or show, and the hooks do not read: of each response, the
	// members JSON-RPC does not define (beside "jsonrpc", "id", "result"
	// and "error"); of each event, the text of its comments (each goes
	// on empty, so that a keepalive still keeps the stream open). For a
	// guard that must see all that goes out.
	StripUnread bool
	// ScreenEventFields, when set, is given the id and the type of each
	// event of a stream that names either (before its data is read): an
	// error cuts the stream, as an event that cannot be relayed does.
	// Clients keep an event's id, and send it back to resume; both go
	// out as the server wrote them otherwise.
	ScreenEventFields func(id, eventType string) error
	// PassSuccesses passes every 2xx reply unread, whatever its type (as
	// it comes, or, with ScreenFailure, held and screened as a failure
	// is), and holds a redirect as a failure (refused when encoded, as a
	// failure is, rather than for redirecting): for a reply that answers
	// no MCP message (a DELETE's), watched for what ScreenFailure
	// screens alone.
	PassSuccesses bool
	// ScreenFailure, when set, is given the body, when it has one, of
	// each reply that is not 2xx (with PassSuccesses, of each reply) and
	// is not refused first (a redirect, an encoded body: see replyMode),
	// held whole whatever its type (an error page, a JSON-RPC error, a
	// line of text), before it goes out, read or not. A
	// *ResponseError it returns replaces the body with that JSON-RPC
	// error, for RefusalID, the status and the reply's other headers
	// kept (a 401's challenge still reaches the client); nil leaves it.
	ScreenFailure func(body []byte) *ResponseError
	// OnError, when set, is told why a reply was refused or a stream cut,
	// and why a rewrite failed.
	OnError func(err error)
	// MaxEventSize bounds one event of a stream; zero or less means
	// mcpmsg.DefaultMaxEventSize. A larger event cuts the stream.
	MaxEventSize int
	// MaxBodySize bounds a JSON reply; zero or less means
	// DefaultMaxBodySize. A larger reply is refused.
	MaxBodySize int
	// WriteTimeout bounds each write of an event stream to the client
	// (the upstream's events, and what Inject adds); zero or less means
	// DefaultWriteTimeout. A client that reads nothing for that long has
	// its stream cut.
	WriteTimeout time.Duration
}

// DefaultWriteTimeout is how long a write of an event stream to the client
// may take when Hooks.WriteTimeout is zero or less. A client that reads
// nothing would otherwise hold the stream's writes (and every message
// the gateway adds to the stream, waiting behind them) for as long as its
// connection stays open.
const DefaultWriteTimeout = 30 * time.Second

// Wrap returns a ResponseWriter that applies hooks to what the next handler
// writes to it, and a finish function to call once that handler has
// returned. finish writes the JSON reply that the wrapper held back, and
// returns why the reply was refused or the stream cut, if it was (an error
// already given to OnError). When the next handler fails before its reply
// is complete, nothing of a JSON reply has been written yet: the caller may
// skip finish and answer the error itself.
//
// Like any ResponseWriter, the wrapper is not safe for concurrent use, with
// one exception: Inject may be called from any goroutine.
func Wrap(w http.ResponseWriter, hooks Hooks) (http.ResponseWriter, func() error) {
	if hooks.MaxBodySize <= 0 {
		hooks.MaxBodySize = DefaultMaxBodySize
	}
	if hooks.WriteTimeout <= 0 {
		hooks.WriteTimeout = DefaultWriteTimeout
	}
	o := &writer{w: w, hooks: hooks}
	if (hooks.RewriteResult != nil || hooks.CheckError != nil) && len(hooks.WatchIDs) > 0 && !hooks.WatchAll {
		o.watched = make(map[string]bool, len(hooks.WatchIDs))
		for _, id := range hooks.WatchIDs {
			o.watched[mcpmsg.CanonicalID(id)] = true
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
	// modeEnded: finish has run; the ResponseWriter is no longer the
	// wrapper's to write to.
	modeEnded
)

// writer is the ResponseWriter that Wrap returns.
type writer struct {
	w     http.ResponseWriter
	hooks Hooks
	// watched holds the canonical forms of hooks.WatchIDs; nil when there
	// is nothing to rewrite.
	watched map[string]bool
	// mu serializes what goes out to w once the reply is a stream (the
	// relayed events and the injected ones) and guards changes of mode and
	// err, which Inject reads from other goroutines. The goroutine that
	// writes the reply reads them without it.
	mu   sync.Mutex
	mode mode
	// status is the upstream's final status, 0 before it came (see
	// Status); a JSON reply's is written, with its held body, at finish.
	status int
	body   []byte
	// events reads an event stream; out collects the events that one
	// Write completes, encoded.
	events *mcpmsg.SSEDecoder
	out    []byte
	// opened is set once an event with data has been read: only the first
	// may be an endpoint event.
	opened bool
	// err is why the reply was refused or the stream cut.
	err error
	// cut: the reply was an event stream when it failed (see Cut).
	cut bool
	// injectEnded: Inject writes nothing more (see EndInjecting); under mu.
	injectEnded bool
	// passedUnread: a held JSON reply went out unread (see PassedUnread);
	// passedUnreadable: one read for its outcome went out as it came,
	// unreadable (see PassedUnreadable).
	passedUnread, passedUnreadable bool
}

// Header returns the header of the underlying ResponseWriter.
func (o *writer) Header() http.Header {
	return o.w.Header()
}

// WriteHeader decides from the final status and the headers how to treat
// the reply. An informational status (100 Continue, 103 Early Hints)
// decides nothing and is not relayed: no MCP client acts on one, a
// client's own 100 Continue comes from the gateway's server, which reads
// a body whole before it goes on, and what a 1xx's headers carry (a
// session id, a cookie) would reach the client unwatched, and be taken
// by the writers under this one for the final reply's.
func (o *writer) WriteHeader(status int) {
	if o.mode != modeUndecided {
		return
	}
	if status >= 100 && status <= 199 && status != http.StatusSwitchingProtocols {
		return
	}
	o.status = status
	m, err := replyMode(status, o.w.Header(), o.hooks.OpensStream)
	switch {
	case !o.hooks.PassSuccesses:
	case status >= 200 && status <= 299 && o.hooks.ScreenFailure == nil:
		m = modePass
	case status >= 200 && status <= 399:
		// Passed as a failure is, once screened (and refused when
		// encoded, as a failure is): what such a reply (a DELETE's)
		// says is no MCP message.
		m, err = modeJSON, checkIdentityEncoding(o.w.Header())
		if err != nil {
			m = modeFailed
		}
	}
	switch m {
	case modeJSON:
		o.setMode(m)
		if status < 200 || status > 299 {
			Isolate(o.w.Header())
		}
		if n, convErr := strconv.Atoi(o.w.Header().Get("Content-Length")); convErr == nil && n > 0 && n <= o.hooks.MaxBodySize {
			o.body = make([]byte, 0, n)
		}
	case modeStream:
		o.events = mcpmsg.NewSSEDecoder(o.hooks.MaxEventSize)
		o.w.Header().Del("Content-Length")
		o.mu.Lock()
		o.w.WriteHeader(status)
		o.mode = m
		o.mu.Unlock()
	case modePass:
		o.setMode(m)
		Isolate(o.w.Header())
		o.w.WriteHeader(status)
	default:
		_ = o.refuse(err)
	}
}

// isolatedSandbox is the sandbox a reply passed on unread is shown in:
// everything a page of the upstream's may do, except be of the site's own
// origin (no allow-same-origin).
const isolatedSandbox = "sandbox allow-downloads allow-forms allow-modals allow-popups allow-scripts allow-top-navigation-by-user-activation"

// Isolate keeps a reply passed on unread (a page, an error page, anything
// that is not an MCP message) from acting as the site it is served on: a
// browser shows it in a sandbox of an origin of its own, and never guesses
// it to be a page when it says it is not. The gateway's site may hold
// pages that act with a person's credentials (the approval inbox, which
// the docs put beside the MCP endpoint); a page the upstream served there
// would otherwise run as one of them, read the inbox's form tokens and
// decide approvals as whoever opened it. An upstream's own policy is
// kept: browsers enforce every policy a reply carries.
func Isolate(h http.Header) {
	h.Add("Content-Security-Policy", isolatedSandbox)
	h.Set("X-Content-Type-Options", "nosniff")
}

// setMode changes the mode, under mu since Inject reads it.
func (o *writer) setMode(m mode) {
	o.mu.Lock()
	o.mode = m
	o.mu.Unlock()
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
	switch o.mode {
	case modeJSON:
		return nil
	case modeStream:
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	return http.NewResponseController(o.w).Flush()
}

// errNotStream is why Inject fails on a reply that is not an open event
// stream.
var errNotStream = errors.New("the reply is not an open event stream")

// ErrSecondEndpoint cuts an HTTP+SSE stream that names where to post
// more than once (see Hooks.Endpoint).
var ErrSecondEndpoint = errors.New("a second endpoint event: the stream names where to post once")

// Inject writes data, one JSON-RPC message, as a "message" event to the
// event stream that w (a ResponseWriter from Wrap) relays, between two of
// the upstream's events, and flushes it. It may be called from any
// goroutine while the reply is being written, and after the stream was
// cut (to tell the client what it will not get), until the reply ends. It
// fails when w is not from Wrap, when the reply is not an event stream, or
// when it has ended.
func Inject(w http.ResponseWriter, data []byte) error {
	o, ok := w.(*writer)
	if !ok {
		return errNotStream
	}
	e := mcpmsg.MessageEvent(data)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.injectEnded || o.mode != modeStream && (o.mode != modeFailed || !o.cut) {
		return errNotStream
	}
	if err := o.writeStream(e.Encode()); err != nil {
		return fmt.Errorf("writing event stream: %w", err)
	}
	return nil
}

// writeStream writes p to the client's event stream (WriteWithin, bounded
// by Hooks.WriteTimeout); o.mu is held.
func (o *writer) writeStream(p []byte) error {
	return WriteWithin(o.w, p, o.hooks.WriteTimeout)
}

// WriteWithin writes p to w and flushes it, each piece of at most
// writeChunk bytes, and the flush, within timeout (zero or less:
// DefaultWriteTimeout): what is bounded is a stall, not how long p takes
// (a client reading a large event steadily, however slowly, keeps its
// stream). After a failed write the connection's deadline stays passed:
// nothing more is written to it. It is for what the gateway writes to a
// stream's client itself.
func WriteWithin(w http.ResponseWriter, p []byte, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultWriteTimeout
	}
	rc := http.NewResponseController(w)
	// Caddy's HTTP/1 and HTTP/2 servers take a deadline (Caddy's own idle
	// write timeout takes it as a ceiling); a writer that cannot (a
	// test's recorder) is written to without.
	renew := func() { _ = rc.SetWriteDeadline(time.Now().Add(timeout)) }
	for len(p) > 0 {
		piece := p[:min(len(p), writeChunk)]
		renew()
		n, err := w.Write(piece)
		if err != nil {
			return err
		}
		p = p[n:]
	}
	renew()
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_ = rc.SetWriteDeadline(time.Time{})
	return nil
}

// writeChunk is the most WriteWithin writes under one deadline, as Caddy's
// idle write timeout chunks what it writes (64 KiB).
const writeChunk = 32 << 10

// EndInjecting makes Inject write nothing more to the reply that w (a
// ResponseWriter from Wrap) relays, once an Inject in progress is done. A
// handler whose reply ends by unwinding (a proxy's abort, with
// http.ErrAbortHandler) never reaches its finish, which ends the reply
// for Inject otherwise: one in another goroutine, deciding to write just
// then, would write to a ResponseWriter net/http has taken back.
func EndInjecting(w http.ResponseWriter) {
	if o, ok := w.(*writer); ok {
		o.mu.Lock()
		o.injectEnded = true
		o.mu.Unlock()
	}
}

// Status returns the final status of the upstream's reply that w (a
// ResponseWriter from Wrap) relays, 0 when none came (or w is not from
// Wrap).
func Status(w http.ResponseWriter) int {
	o, ok := w.(*writer)
	if !ok {
		return 0
	}
	return o.status
}

// PassedUnread reports whether the JSON reply that w (a ResponseWriter
// from Wrap) relays went out whole without being read, as
// Hooks.PassJSON lets a 2xx reply that names no request, error nor
// failed result: the requests it answers succeeded, as far as the
// gateway can tell without reading it. False for any other reply, and
// before finish.
func PassedUnread(w http.ResponseWriter) bool {
	o, ok := w.(*writer)
	return ok && o.passedUnread
}

// PassedUnreadable returns the JSON reply that w relays when it went out
// as it came although it names an error or a failed result, because the
// strict parser could not read it (nested past its depth, say: see
// writer.readForOutcome); nil for any other reply, and before finish.
// What it says of its request is for the caller to read, as clients
// would.
func PassedUnreadable(w http.ResponseWriter) []byte {
	if o, ok := w.(*writer); ok && o.passedUnreadable {
		return o.body
	}
	return nil
}

// Cut reports whether the event stream that w (a ResponseWriter from
// Wrap) relays was cut: part of the upstream's reply was refused, and
// nothing of it passes after.
func Cut(w http.ResponseWriter) bool {
	o, ok := w.(*writer)
	if !ok {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cut
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (o *writer) Unwrap() http.ResponseWriter {
	return o.w
}

// errNoHijack is why a watched reply's connection cannot be taken over.
var errNoHijack = errors.New("the gateway does not hand over a watched reply's connection: what would flow on it would go undecided")

// Hijack refuses to hand over the connection (as a protocol upgrade
// would): found before Unwrap by http.ResponseController, it keeps the
// handler after the gateway from reaching the connection under the
// watched writer.
func (o *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errNoHijack
}

// finish writes a held JSON reply and reports how the reply ended. After
// it, nothing is written to the underlying ResponseWriter.
func (o *writer) finish() error {
	defer o.setMode(modeEnded)
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
	if replaced := o.screenFailure(body); replaced != nil {
		body = replaced
	} else if o.mustRead(body) {
		out, err := o.inspect(body)
		switch {
		case err != nil && o.readForOutcome(body) && o.hooks.AnswersOf != nil && !o.hooks.AnswersOf(lenientID(body)):
			// Passed unread or unreadable, a reply answers the request
			// it is the reply to, or nothing goes out.
			return o.refuse(fmt.Errorf("upstream JSON reply: nothing of it could be relayed: it answered no request it was the reply to (nor can the strict parser read it: %w)", err))
		case err != nil && o.readForOutcome(body):
			// Read only for what it says of its requests: a reply the
			// strict parser cannot read (nested past its depth, say)
			// passes as it did before the outcomes were read, since it
			// can hold no request. (inspect fails only where the parse
			// does.)
			o.passedUnreadable = true
		case err != nil:
			return o.refuse(fmt.Errorf("upstream JSON reply: %w", err))
		case out != nil && len(out) == 0:
			return o.refuse(errors.New("upstream JSON reply: nothing of it could be relayed: it answered no request it was the reply to, or carried only what the gateway refused (the gateway's log says which)"))
		default:
			if out != nil {
				body = out
			}
			o.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
	} else {
		o.passedUnread = len(body) > 0 && o.status >= 200 && o.status <= 299
	}
	o.setMode(modePass)
	o.w.WriteHeader(o.status)
	if len(body) == 0 {
		// (A 204's or a 304's: writing nothing to them is an error.)
		return nil
	}
	if _, err := o.w.Write(body); err != nil {
		return fmt.Errorf("writing JSON reply: %w", err)
	}
	return nil
}

// screenFailure returns what replaces the body of a reply that is not
// 2xx (with Hooks.PassSuccesses, of any reply), when
// Hooks.ScreenFailure says it must be replaced, with the reply's headers
// set for it; nil otherwise.
func (o *writer) screenFailure(body []byte) []byte {
	if o.hooks.ScreenFailure == nil || len(body) == 0 || o.status >= 200 && o.status <= 299 && !o.hooks.PassSuccesses {
		return nil
	}
	rerr := o.hooks.ScreenFailure(body)
	if rerr == nil {
		return nil
	}
	replaced := mcpmsg.ErrorResponse(o.hooks.RefusalID, rerr.Code, rerr.Message)
	h := o.w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(replaced)))
	return replaced
}

// mustRead reports whether a held reply is read before it goes out. A 2xx
// JSON reply is, unless the hooks let one that cannot hold a request pass
// (Hooks.PassJSON). Another (4xx, 5xx) carries no message a client reads
// as one, but the Go SDK's client reads a JSON-RPC error from the body of
// any such reply to a POST, whatever its type, and acts on the URL
// elicitations the error may carry (it shows them to its user): one that
// may name them, and that opens as a JSON object or array does, is read as
// a JSON reply is, and refused when it is not one valid JSON-RPC message.
// Whether the rest is valid JSON does not count: the SDK's decoder reads
// the first value of a body and ignores what follows.
func (o *writer) mustRead(body []byte) bool {
	switch {
	case len(body) == 0:
		return false
	case o.status >= 200 && o.status <= 299 && o.hooks.PassSuccesses:
		return false
	case o.status >= 200 && o.status <= 299:
		return !(o.hooks.PassJSON && cannotHoldRequest(body) && namesNoFailure(body) && !namesMember(body, "cacheScope") &&
			!namesMember(body, "resources") && !namesMember(body, "prompts") && o.answersAlone(body))
	default:
		return opensLikeJSON(body) && !cannotHoldRequest(body)
	}
}

// answersAlone reports whether body, a 2xx JSON reply that PassJSON
// would let pass, is one JSON-RPC response with a result to a request
// that Hooks.AnswersOf names (true without the hook): an object of the
// members "jsonrpc" ("2.0"), "id" and "result" alone, each once and named
// exactly, and nothing after it. Any other reply is read (a response to
// another request, an id a reader may read otherwise, a body that is no
// JSON), so that a reply passes unread only where reading it would pass
// it unchanged. It scans the body's top level without keeping it, which
// costs far less than the parse. (AnswersOf must not keep the id it is
// given, which is the scan's.)
func (o *writer) answersAlone(body []byte) bool {
	if o.hooks.AnswersOf == nil {
		return true
	}
	scan := topLevelScans.Get().(*topLevelScan)
	defer func() {
		scan.body = bytes.Buffer{}
		topLevelScans.Put(scan)
	}()
	// A bytes.Buffer the decoder reads in place, where it would copy
	// what another reader gives it.
	scan.body = *bytes.NewBuffer(body)
	dec := scan.dec
	dec.Reset(&scan.body)
	if dec.PeekKind() != '{' {
		return false
	}
	if _, err := dec.ReadToken(); err != nil {
		return false
	}
	id := scan.id[:0]
	var seen uint8
	for dec.PeekKind() == '"' {
		token, err := dec.ReadToken()
		if err != nil {
			return false
		}
		var member uint8
		switch token.String() {
		case "jsonrpc":
			member = 1
		case "id":
			member = 2
		case "result":
			member = 4
		default:
			return false
		}
		if seen&member != 0 {
			return false
		}
		seen |= member
		if member == 4 {
			if dec.SkipValue() != nil {
				return false
			}
			continue
		}
		value, err := dec.ReadValue()
		switch {
		case err != nil:
			return false
		case member == 1 && string(value) != `"2.0"`:
			return false
		case member == 2:
			id = append(id[:0], value...)
		}
	}
	if _, err := dec.ReadToken(); err != nil || seen != 7 {
		return false
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return false
	}
	scan.id = id
	return o.hooks.AnswersOf(id)
}

// lenientID is the id of body, a JSON-RPC response the strict parser
// cannot read, as the SDKs' clients read it (its exact member name, the
// last of several, invalid UTF-8 let pass); nil when none can be read.
func lenientID(body []byte) []byte {
	var response struct {
		ID jsontext.Value `json:"id"`
	}
	if jsonv2.Unmarshal(body, &response, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)) != nil {
		return nil
	}
	return response.ID
}

// topLevelScan is what answersAlone scans a reply with: a decoder, the
// reader it reads, and room for the id; kept for the next reply
// (topLevelScans) rather than made for each.
type topLevelScan struct {
	dec  *jsontext.Decoder
	body bytes.Buffer
	id   []byte
}

// topLevelScans are the scans answersAlone takes and gives back.
var topLevelScans = sync.Pool{New: func() any { return &topLevelScan{dec: jsontext.NewDecoder(bytes.NewReader(nil))} }}

// readForOutcome reports whether a held reply that mustRead is read only
// for what it says of the requests it answers: a 2xx reply that
// Hooks.PassJSON would let pass but for naming an error, a failed
// result or a cache scope (one the strict parser cannot read passes as
// it did before these were read: it holds no request).
func (o *writer) readForOutcome(body []byte) bool {
	return o.status >= 200 && o.status <= 299 && o.hooks.PassJSON && cannotHoldRequest(body)
}

// opensLikeJSON reports whether body's first byte after JSON's white space
// opens an object or an array: a body that does not (an HTML page, plain
// text) is no JSON-RPC message to any decoder.
func opensLikeJSON(body []byte) bool {
	body = bytes.TrimLeft(body, " \t\r\n")
	return len(body) > 0 && (body[0] == '{' || body[0] == '[')
}

// cannotHoldRequest reports whether a JSON text certainly holds no member
// named "method", and so no JSON-RPC request, nor one named "tools", and
// so no tools/list result (which a reply to another request could carry,
// as the answer to a list awaited elsewhere), nor "taskId" (a task
// created), nor "elicitations" (an error's URL elicitations, which
// clients act on as on requests): it names none, in any case (as readers
// that match names case-insensitively read them), nor holds any \u
// escape (with which a name could be spelled otherwise).
func cannotHoldRequest(body []byte) bool {
	return !bytes.Contains(body, []byte(`\u`)) && !bytes.Contains(body, longS) && !bytes.Contains(body, kelvinSign) &&
		!namesMember(body, "method") && !namesMember(body, "tools") && !namesMember(body, "taskId") &&
		!namesMember(body, "elicitations")
}

// namesNoFailure reports whether a JSON text that cannotHoldRequest
// passes certainly holds no member named "error" (a JSON-RPC error) nor
// "isError" (a tool's failed result), in any case: what it says of the
// requests it answers is that they succeeded.
func namesNoFailure(body []byte) bool {
	return !namesMember(body, "error") && !namesMember(body, "isError")
}

// ResultIsError reports whether a tools/call result says the tool failed:
// its "isError" member is true, read as the MCP SDKs' clients read it
// (Go's since v1, TypeScript's, Python's): by its exact name, escapes
// decoded, the last of several. usable is false when the clients refuse
// the result whole, its isError being no boolean. A result that names no
// such member, which is most, is not decoded.
func ResultIsError(result []byte) (isError, usable bool) {
	if !bytes.Contains(result, []byte(`\u`)) && !namesMember(result, "isError") {
		return false, true
	}
	var r struct {
		IsError bool `json:"isError"`
	}
	if jsonv2.Unmarshal(result, &r, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)) != nil {
		return false, false
	}
	return r.IsError, true
}

// longS and kelvinSign, in UTF-8, are the letters other than ASCII that
// Go's encoding/json folds to ASCII ones ("tool\u017f" is "tools" to it):
// a reply holding either is read.
var (
	longS      = []byte("\u017f")
	kelvinSign = []byte("\u212a")
)

// namesMember reports whether body holds the quoted string name, in any
// ASCII case: a member name, or a string alike. (Of the letters of
// the names it is given, only s has a simple case fold other than ASCII,
// the long s, which cannotHoldRequest looks for.) It looks for the opening quote
// and the first letter with bytes.Index, which is fast, and compares the
// rest.
func namesMember(body []byte, name string) bool {
	for _, start := range [][]byte{{'"', name[0]}, {'"', name[0] - 'a' + 'A'}} {
		for rest := body; ; {
			i := bytes.Index(rest, start)
			if i < 0 {
				break
			}
			if quoted := rest[i+1:]; len(quoted) > len(name) && quoted[len(name)] == '"' && bytes.EqualFold(quoted[:len(name)], []byte(name)) {
				return true
			}
			rest = rest[i+1:]
		}
	}
	return false
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
		o.mu.Lock()
		werr := o.writeStream(o.out)
		o.mu.Unlock()
		if werr != nil {
			return 0, fmt.Errorf("writing event stream: %w", werr)
		}
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
	first := e.HasData && !o.opened
	o.opened = o.opened || e.HasData
	if !first && e.Type == "endpoint" && o.hooks.Endpoint != nil {
		// Clients of HTTP+SSE (the TypeScript SDK's) take every endpoint
		// event as where to post from then on, whatever it holds.
		return ErrSecondEndpoint
	}
	if first && e.Type == "endpoint" && o.hooks.Endpoint != nil {
		uri, err := o.hooks.Endpoint(e.Data)
		if err != nil {
			return fmt.Errorf("endpoint event: %w", err)
		}
		e.Data = uri
		o.out = e.AppendTo(o.out)
		return nil
	}
	// Blocks without data (comments, id, retry), and the event with empty
	// data that primes a client to resume a stream (MCP 2025-11-25,
	// basic/transports, "Resumability and Redelivery"), carry no message.
	// The TypeScript SDK's servers store that event as an empty object,
	// and replay it so to a client that resumes: it goes on as the
	// priming event it was.
	if isEmptyObject(e.Data) {
		e.Type, e.Data = "", ""
	}
	if o.hooks.StripUnread {
		for i := range e.Comments {
			e.Comments[i] = ""
		}
	}
	if o.hooks.ScreenEventFields != nil && (e.HasID || e.Type != "") {
		if err := o.hooks.ScreenEventFields(e.ID, e.Type); err != nil {
			return fmt.Errorf("event fields: %w", err)
		}
	}
	if e.Data != "" {
		out, err := o.inspect([]byte(e.Data))
		if err != nil {
			return fmt.Errorf("event data: %w", err)
		}
		switch {
		case out == nil:
		case len(out) == 0:
			// Every message dropped: what else the event says stays.
			e.Type, e.Data, e.HasData = "", "", false
			if !e.HasID && e.Retry == "" && len(e.Comments) == 0 {
				return nil
			}
		default:
			e.Data = string(out)
		}
	}
	o.out = e.AppendTo(o.out)
	return nil
}

// isEmptyObject reports whether data is a JSON object without members.
func isEmptyObject(data string) bool {
	const space = " \t\r\n"
	inner, ok := strings.CutPrefix(strings.Trim(data, space), "{")
	if !ok {
		return false
	}
	inner, ok = strings.CutSuffix(inner, "}")
	return ok && strings.Trim(inner, space) == ""
}

// refusedReplyHeaders are the headers of a refused reply that are not
// passed on with the gateway's error.
var refusedReplyHeaders = []string{"Content-Encoding", "Location", "Content-Location", "Refresh", "Link", "Upgrade", "Connection", "Set-Cookie"}

// ErrReplaced marks the error of a reply the gateway refused before any of
// it was written: the client got the gateway's whole error in its place,
// and the exchange ends cleanly.
var ErrReplaced = errors.New("reply replaced by the gateway's error")

// refuse answers with a 502 JSON-RPC error (for Hooks.RefusalID) in
// place of a reply of which nothing has been written yet, stops everything that follows, and returns
// err (marked ErrReplaced).
func (o *writer) refuse(err error) error {
	body := mcpmsg.ErrorResponse(o.hooks.RefusalID, mcpmsg.CodeInternalError, "refused by the gateway: "+err.Error())
	err = fmt.Errorf("%w: %w", ErrReplaced, err)
	o.fail(err)
	h := o.w.Header()
	// The refused reply's own headers that would send the client
	// elsewhere, switch protocols or keep state go with it.
	for _, name := range refusedReplyHeaders {
		h.Del(name)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	o.w.WriteHeader(http.StatusBadGateway)
	_, _ = o.w.Write(body)
	return err
}

// fail stops all further output and reports err. A stream it cuts takes
// only the gateway's own messages from then on (see Inject).
func (o *writer) fail(err error) {
	o.mu.Lock()
	o.cut = o.cut || o.mode == modeStream
	o.mode, o.err = modeFailed, err
	o.mu.Unlock()
	if o.hooks.OnError != nil {
		o.hooks.OnError(err)
	}
}

// replyMode chooses how to treat a reply from its final status and headers.
// A switch of protocols or a redirect is refused; other non-2xx replies
// are held like JSON ones, whatever their type, and passed as they are
// unless they may carry an error a client acts on (see writer.mustRead);
// one the gateway could not read (compressed) is refused. A 2xx
// reply is read when it is JSON or an event stream,
// and refused when its type or encoding leave in doubt how a client would
// read it: clients look for these types loosely (the TypeScript SDK checks
// only that the header contains them), and cannot read an encoding the
// gateway did not. A 2xx reply that opens a stream (see Hooks.OpensStream)
// is read, or refused, whatever its type.
func replyMode(status int, h http.Header, opensStream bool) (mode, error) {
	switch {
	case status == http.StatusSwitchingProtocols:
		// What follows would be raw bytes, which nothing decides.
		return modeFailed, errors.New("upstream switched protocols, which the gateway does not relay")
	case status >= 300 && status <= 399:
		// A client that follows it would talk to another endpoint, past
		// the gateway, with the request and its headers.
		return modeFailed, fmt.Errorf("upstream redirected the request (HTTP %d), which the gateway does not pass on", status)
	case status < 200 || status > 299:
		if err := checkIdentityEncoding(h); err != nil {
			return modeFailed, err
		}
		return modeJSON, nil
	}
	types := h.Values("Content-Type")
	if len(types) > 1 {
		return modeFailed, fmt.Errorf("upstream reply has %d Content-Type headers", len(types))
	}
	m, err := modePass, error(nil)
	if len(types) == 1 {
		m, err = contentMode(types[0])
	}
	if m == modePass && opensStream {
		return modeFailed, fmt.Errorf("upstream answered a stream's GET with Content-Type %q, not an event stream", strings.Join(types, ""))
	}
	if m != modeJSON && m != modeStream {
		return m, err
	}
	if err := checkIdentityEncoding(h); err != nil {
		return modeFailed, err
	}
	return m, nil
}

// checkIdentityEncoding fails when a reply's body is encoded (compressed):
// the gateway does not decode what it reads, and a client could.
func checkIdentityEncoding(h http.Header) error {
	if coding, encoded := mcphttp.ContentCoding(h); encoded {
		return fmt.Errorf("upstream reply has Content-Encoding %q, which the gateway does not decode", coding)
	}
	return nil
}

// contentMode chooses how to treat a 2xx reply of the given Content-Type.
// The types MCP servers send, as they send them, are known at once.
// HeldWhole reports whether a successful reply with the header h is a
// JSON body, which Wrap holds and reads whole when it ends (its messages
// handled one after another, at once), rather than an event stream read
// event by event as it comes, for as long as it stays open.
func HeldWhole(h http.Header) bool {
	types := h.Values("Content-Type")
	if len(types) != 1 {
		return false
	}
	m, err := contentMode(types[0])
	return err == nil && m == modeJSON
}

func contentMode(contentType string) (mode, error) {
	switch contentType {
	case "application/json":
		return modeJSON, nil
	case "text/event-stream":
		return modeStream, nil
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	lower := strings.ToLower(contentType)
	switch {
	case err == nil && mediaType == "text/event-stream":
		return modeStream, nil
	case err == nil && mediaType == "application/json":
		return modeJSON, nil
	case strings.Contains(lower, "json") || strings.Contains(lower, "event-stream"):
		return modeFailed, fmt.Errorf("upstream reply has an unclear Content-Type %q", contentType)
	default:
		return modePass, nil
	}
}

var (
	_ http.ResponseWriter = (*writer)(nil)
	_ interface {
		FlushError() error
		Unwrap() http.ResponseWriter
	} = (*writer)(nil)
)

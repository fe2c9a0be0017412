package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// This file sends messages of the gateway's own to the upstream, on a
// client's behalf and through the rest of the route, as the client would
// have sent them: its answers to server requests it refused, and its own
// tools/list requests.

// upstreamPost returns a POST of body, a JSON-RPC message of the gateway's
// own, to the upstream on behalf of the client that sent r: a clone of r,
// with its URL, credentials, session and protocol version, without the
// headers that describe r's own body or stream, asking for an uncompressed
// reply (the gateway reads it).
func upstreamPost(r *http.Request, body []byte) *http.Request {
	req := r.Clone(r.Context())
	req.Method = http.MethodPost
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.TransferEncoding, req.Trailer = nil, nil
	req.GetBody = nil
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	req.Header.Del("Content-Encoding")
	readReplyUncompressed(req)
	req.Header.Del(mcphttp.HeaderLastEventID)
	req.Header.Del(mcphttp.HeaderMethod)
	req.Header.Del(mcphttp.HeaderName)
	return req
}

// maxAnswerReply bounds what the gateway reads of the upstream's reply to
// an answer it posts.
const maxAnswerReply = 64 << 10

// postAnswer posts message, the gateway's response to a server request,
// to endpoint (as the upstream sees it) through next, on behalf of the
// client of r.
func postAnswer(next Next, r *http.Request, endpoint *url.URL, message []byte) error {
	req := upstreamPost(r, message)
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = endpoint.Path, endpoint.RawPath, endpoint.RawQuery
	// Its status is all the gateway reads of the reply (a 202 without a
	// body, as a rule; a stream left open is not waited for).
	ctx, stop := context.WithCancel(req.Context())
	defer stop()
	rec := &responseRecorder{header: make(http.Header), limit: maxAnswerReply, statusOnly: true, stop: stop}
	if err := serveRecovering(next, rec, req.WithContext(ctx)); err != nil && rec.status == 0 {
		return err
	}
	if rec.status != 0 && (rec.status < 200 || rec.status > 299) {
		return fmt.Errorf("upstream answered HTTP %d", rec.status)
	}
	return nil
}

// legacyResponseTimeout bounds the wait for the response to a request of
// the gateway's own on an HTTP+SSE stream.
const legacyResponseTimeout = 10 * time.Second

// sendOwnRequest sends a request of the gateway's own (body, whose id is
// id) on the client's behalf, with extra headers, and returns the reply's
// content type and body: on Streamable HTTP the POST's reply; on an
// HTTP+SSE session whose stream the gateway relays, the response the
// stream delivers (as JSON).
func (x *exchange) sendOwnRequest(body []byte, id string, header http.Header) (string, []byte, error) {
	req := upstreamPost(x.r, body)
	for name, values := range header {
		req.Header[name] = values
	}
	var awaited <-chan []byte
	var ended <-chan struct{}
	if x.legacy != nil {
		var stop func()
		awaited, stop = x.legacy.stream.await(id)
		ended = x.legacy.stream.done
		defer stop()
	}
	// As large as a reply the gateway reads for a client may be (a tools
	// list, here): its own fetch is the only way it learns a whole list.
	// An event stream ends the wait with the response to id: a server
	// may leave it open after that (it SHOULD close it).
	ctx, stop := context.WithCancel(req.Context())
	defer stop()
	req = req.WithContext(ctx)
	rec := &responseRecorder{header: make(http.Header), limit: replyfilter.DefaultMaxBodySize, awaitedID: id, stop: stop}
	err := serveRecovering(x.next, rec, req)
	if rec.answer != nil {
		return "application/json", rec.answer, nil
	}
	if rec.overflow {
		return "", nil, errors.New("response too large")
	}
	if err != nil {
		return "", nil, err
	}
	if awaited != nil && rec.status == http.StatusAccepted {
		select {
		case message := <-awaited:
			return "application/json", message, nil
		case <-ended:
			return "", nil, errStreamEnded
		case <-time.After(legacyResponseTimeout):
			return "", nil, errors.New("no response on the session's event stream")
		case <-x.r.Context().Done():
			return "", nil, x.r.Context().Err()
		}
	}
	if rec.status == http.StatusNotFound && x.r.Header.Get(mcphttp.HeaderSessionID) != "" {
		return "", nil, errSessionEnded
	}
	if rec.status != 0 && rec.status != http.StatusOK {
		return "", nil, fmt.Errorf("upstream answered HTTP %d", rec.status)
	}
	if err := checkUncompressed(rec.header); err != nil {
		// Asked for identity, it compressed anyway: the gateway does
		// not guess at what it would decode.
		return "", nil, fmt.Errorf("upstream reply: %w", err)
	}
	return rec.header.Get("Content-Type"), rec.body.Bytes(), nil
}

// errSessionEnded is why a request of the gateway's own in a client's
// session got 404: the upstream no longer knows the session.
var errSessionEnded = errors.New("the upstream no longer knows the session")

// serveRecovering calls next, turning the abort of a proxy that stopped
// in the middle of a reply (Caddy's reverse_proxy panics with
// http.ErrAbortHandler when it loses its upstream, or when the writer
// refuses more) into errUpstreamAborted.
func serveRecovering(next Next, w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			err = errUpstreamAborted
		}
	}()
	return next.ServeHTTP(w, r)
}

// responseRecorder keeps a whole response in memory, up to a limit. Given
// the id of a request (awaitedID, as sent), it reads a 200 event stream
// as it comes, and once an event carries the response to that request,
// keeps that response (answer) and calls stop: the rest of the stream is
// not waited for. With statusOnly, it calls stop once the status came.
type responseRecorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	limit    int64
	overflow bool

	awaitedID  string
	statusOnly bool
	stop       func()
	events     *mcpmsg.SSEDecoder
	answer     []byte
}

func (rec *responseRecorder) Header() http.Header { return rec.header }

func (rec *responseRecorder) WriteHeader(status int) {
	if rec.status != 0 || status >= 100 && status <= 199 {
		return
	}
	rec.status = status
	if rec.statusOnly {
		rec.stop()
		return
	}
	if rec.awaitedID == "" || status != http.StatusOK || checkUncompressed(rec.header) != nil {
		return
	}
	if mediaType, _, _ := mime.ParseMediaType(rec.header.Get("Content-Type")); mediaType == "text/event-stream" {
		rec.events = mcpmsg.NewSSEDecoder(0)
	}
}

func (rec *responseRecorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.answer != nil || rec.statusOnly {
		return 0, errNotRead
	}
	if int64(rec.body.Len()+len(p)) > rec.limit {
		rec.overflow = true
		return 0, errors.New("response too large")
	}
	rec.body.Write(p)
	if rec.events != nil {
		// An error here is the stream's, which findResult reports as
		// the whole body is read again.
		_ = rec.events.Feed(p, rec.awaitAnswer)
	}
	if rec.answer != nil {
		rec.stop()
	}
	return len(p), nil
}

// errNotRead ends a reply the recorder no longer reads: it has what the
// gateway waited for.
var errNotRead = errors.New("the gateway has what it waited for; the rest of the reply is not read")

// awaitAnswer keeps the event's message when it is the awaited response.
func (rec *responseRecorder) awaitAnswer(event mcpmsg.Event) error {
	if !event.HasData || (event.Type != "" && event.Type != "message") {
		return nil
	}
	var response struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal([]byte(event.Data), &response) == nil && string(response.ID) == rec.awaitedID {
		rec.answer = []byte(event.Data)
		return errNotRead
	}
	return nil
}

// FlushError lets http.ResponseController flush (a no-op here).
func (rec *responseRecorder) FlushError() error { return nil }

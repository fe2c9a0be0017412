package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
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
	rec := &responseRecorder{header: make(http.Header), limit: maxAnswerReply}
	if err := next.ServeHTTP(rec, req); err != nil {
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
	rec := &responseRecorder{header: make(http.Header), limit: replyfilter.DefaultMaxBodySize}
	if err := x.next.ServeHTTP(rec, req); err != nil {
		return "", nil, err
	}
	if rec.overflow {
		return "", nil, errors.New("response too large")
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

// responseRecorder keeps a whole response in memory, up to a limit.
type responseRecorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	limit    int64
	overflow bool
}

func (rec *responseRecorder) Header() http.Header { return rec.header }

func (rec *responseRecorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}

func (rec *responseRecorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if int64(rec.body.Len()+len(p)) > rec.limit {
		rec.overflow = true
		return 0, errors.New("response too large")
	}
	return rec.body.Write(p)
}

// FlushError lets http.ResponseController flush (a no-op here).
func (rec *responseRecorder) FlushError() error { return nil }

package stdio

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// errReplyClosed is what delivering to a reply that has ended returns.
var errReplyClosed = errors.New("the client's stream has ended")

// writeTimeout bounds each write to a client: one that reads nothing for
// that long loses its reply (the connection is cut), rather than stall
// the session's pump, which every reply of the session waits on.
const writeTimeout = 30 * time.Second

// cutAfter is how long ending a reply waits for a write in progress
// before cutting it.
const cutAfter = time.Second

// reply is an HTTP response that carries messages to the client: the
// answer to a POST that holds requests, or a GET stream.
//
// A POST's reply is application/json when the response to its single
// request is the only message it carries, and text/event-stream as soon
// as anything else (a progress notification, a request from the server)
// must go first; a GET's is always an event stream.
type reply struct {
	mu sync.Mutex
	w  http.ResponseWriter
	// pending are the requests whose responses this reply carries; done
	// is closed when the last is answered (never, for a GET).
	pending map[jsonrpc.ID]struct{}
	done    chan struct{}
	// single allows the application/json answer.
	single bool
	// status gives the HTTP status of a JSON answer (nil: 200).
	status func(*jsonrpc.Response) int
	// streaming is set once the event stream has begun; closed once
	// nothing more may be written.
	streaming bool
	closed    bool
}

// newReply returns the reply to a POST carrying the requests calls
// (with single set when it carries one request alone).
func newReply(w http.ResponseWriter, calls []jsonrpc.ID, single bool, status func(*jsonrpc.Response) int) *reply {
	pending := make(map[jsonrpc.ID]struct{}, len(calls))
	for _, id := range calls {
		pending[id] = struct{}{}
	}
	return &reply{w: w, pending: pending, done: make(chan struct{}), single: single, status: status}
}

// newStreamReply returns the reply to a GET: an event stream that
// carries whatever it is given (see openLocked).
func newStreamReply(w http.ResponseWriter) *reply {
	return &reply{w: w, done: make(chan struct{})}
}

// openLocked begins a GET's event stream at once, with a comment, so that
// proxies pass the headers on before the first event (as the go-sdk does).
func (r *reply) openLocked() {
	r.beginStream()
	_ = r.write([]byte(": stream open\n\n"))
}

// write writes p to the client and flushes it, within writeTimeout.
func (r *reply) write(p []byte) error {
	rc := http.NewResponseController(r.w)
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := r.w.Write(p)
	if err == nil {
		if err = rc.Flush(); errors.Is(err, http.ErrNotSupported) {
			err = nil
		}
	}
	if err == nil {
		_ = rc.SetWriteDeadline(time.Time{})
	}
	return err
}

// lockCutting takes r.mu to end the reply. A write in progress holds it,
// and one to a client that reads nothing would hold it until
// writeTimeout: after cutAfter, its connection's write deadline is set to
// now, which ends the write.
func (r *reply) lockCutting() {
	if r.mu.TryLock() {
		return
	}
	cut := make(chan struct{})
	timer := time.AfterFunc(cutAfter, func() {
		defer close(cut)
		_ = http.NewResponseController(r.w).SetWriteDeadline(time.Now())
	})
	r.mu.Lock()
	if !timer.Stop() {
		<-cut
	}
}

// deliver writes a message (data is its encoding) to the client. A
// response's request is then no longer pending; the reply is done when
// none is.
func (r *reply) deliver(msg jsonrpc.Message, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deliverLocked(msg, data)
}

func (r *reply) deliverLocked(msg jsonrpc.Message, data []byte) error {
	if r.closed {
		return errReplyClosed
	}
	response, _ := msg.(*jsonrpc.Response)
	if response != nil {
		delete(r.pending, response.ID)
	}
	last := response != nil && len(r.pending) == 0 && r.pending != nil
	var err error
	if last && r.single && !r.streaming {
		status := http.StatusOK
		if r.status != nil {
			status = r.status(response)
		}
		r.w.Header().Set("Content-Type", "application/json")
		r.w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		r.w.WriteHeader(status)
		err = r.write(data)
	} else {
		if !r.streaming {
			r.beginStream()
		}
		err = r.write(mcpmsg.MessageEvent(data).Encode())
	}
	if last || err != nil {
		r.finishLocked()
	}
	return err
}

// beginStream sends the headers of an event stream.
func (r *reply) beginStream() {
	r.streaming = true
	h := r.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	r.w.WriteHeader(http.StatusOK)
}

// fail answers every pending request with a JSON-RPC error.
func (r *reply) fail(code int64, message string) {
	r.lockCutting()
	defer r.mu.Unlock()
	for id := range r.pending {
		response := &jsonrpc.Response{ID: id, Error: &jsonrpc.Error{Code: code, Message: message}}
		data, err := jsonrpc.EncodeMessage(response)
		if err != nil || r.deliverLocked(response, data) != nil {
			return
		}
	}
}

// abandon stops waiting for the response to id (the client cancelled the
// request): the reply is done when nothing else is pending. A reply that
// carried nothing yet is an event stream that ends empty, so that the
// POST is answered as Streamable HTTP answers one holding requests (a
// JSON answer or an event stream), never with an empty 200.
func (r *reply) abandon(id jsonrpc.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, id)
	if len(r.pending) == 0 {
		if !r.streaming && !r.closed {
			r.beginStream()
		}
		r.finishLocked()
	}
}

// answered reports whether every request of the reply got its response.
func (r *reply) answered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) == 0
}

// close ends the reply: the handler that owns its ResponseWriter is
// returning.
func (r *reply) close() {
	r.lockCutting()
	defer r.mu.Unlock()
	r.finishLocked()
}

func (r *reply) finishLocked() {
	if !r.closed {
		r.closed = true
		close(r.done)
	}
}

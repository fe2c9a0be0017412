package gateway

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// batchForward works out what a 2025-03-26 JSON-RPC batch, whose elements
// have been decided one by one, sends upstream: body, the allowed elements
// as a smaller batch (never the refused ones), and answers, the gateway's
// answers to the refused requests, to be added to the upstream's reply
// (batchMerger). When nothing goes upstream, reply answers the client
// instead.
func (x *exchange) batchForward() (body []byte, answers [][]byte, reply func(http.ResponseWriter) error) {
	var allowed [][]byte
	var refused *verdict
	for i, v := range x.verdicts {
		if v.allowed() {
			allowed = append(allowed, v.message.Raw)
			continue
		}
		refused = &x.verdicts[i]
		if response := v.response(); response != nil {
			answers = append(answers, response)
		}
	}
	switch {
	case refused == nil && !x.rewritten:
		return x.raw, nil, nil
	case len(allowed) == 0 && len(answers) == 0:
		// Only notifications and responses, all refused.
		return nil, nil, func(w http.ResponseWriter) error { return writeRefusal(w, *refused) }
	case len(allowed) == 0:
		reply := mcpmsg.BatchResponse(answers)
		return nil, nil, func(w http.ResponseWriter) error {
			mcphttp.WriteJSON(w, http.StatusOK, reply)
			return nil
		}
	}
	return mcpmsg.BatchResponse(allowed), answers, nil
}

// batchMode is how a batchMerger treats the upstream's reply.
type batchMode int

const (
	batchUndecided batchMode = iota
	// batchReplace: the upstream accepted notifications only (202); the
	// gateway's answers become the reply.
	batchReplace
	// batchBuffer: a JSON reply, to which the answers are appended once
	// it is complete.
	batchBuffer
	// batchStream: an SSE reply; the answers go first as events, and the
	// rest streams through unbuffered.
	batchStream
	// batchPass: anything else (an upstream error), passed on as it is.
	batchPass
)

// batchMerger adds the gateway's answers for refused batch elements to the
// upstream's reply to the allowed ones. It lies under the reply's watch,
// which sees the upstream's messages alone: an answer of the upstream's to
// a request the gateway refused is no answer of the gateway's.
type batchMerger struct {
	http.ResponseWriter
	answers [][]byte
	mode    batchMode
	status  int
	buf     bytes.Buffer
}

// WriteHeader picks how to merge from the upstream's status and type
// (final: the reply's watch over the merger relays no informational
// status).
func (m *batchMerger) WriteHeader(status int) {
	if m.mode != batchUndecided {
		return
	}
	mediaType, _, _ := mime.ParseMediaType(m.Header().Get("Content-Type"))
	switch {
	case status == http.StatusAccepted:
		m.mode = batchReplace
	case status == http.StatusOK && mediaType == "application/json":
		m.mode, m.status = batchBuffer, status
	case status == http.StatusOK && mediaType == "text/event-stream":
		m.mode = batchStream
		m.Header().Del("Content-Length")
		m.ResponseWriter.WriteHeader(status)
		for _, answer := range m.answers {
			_, _ = m.ResponseWriter.Write(mcpmsg.MessageEvent(answer).Encode())
		}
		_ = http.NewResponseController(m.ResponseWriter).Flush()
	default:
		m.mode = batchPass
		m.ResponseWriter.WriteHeader(status)
	}
}

// Write buffers or passes on the upstream's body, as the mode says.
func (m *batchMerger) Write(p []byte) (int, error) {
	if m.mode == batchUndecided {
		m.WriteHeader(http.StatusOK)
	}
	switch m.mode {
	case batchReplace:
		return len(p), nil
	case batchBuffer:
		return m.buf.Write(p)
	default:
		return m.ResponseWriter.Write(p)
	}
}

// FlushError flushes streamed replies only; a buffered one is written whole
// by finish. http.ResponseController finds this method before unwrapping.
func (m *batchMerger) FlushError() error {
	if m.mode == batchStream || m.mode == batchPass {
		return http.NewResponseController(m.ResponseWriter).Flush()
	}
	return nil
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (m *batchMerger) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// finish writes what was held back: the merged JSON array, or the answers
// alone when the upstream had nothing to say.
func (m *batchMerger) finish() {
	switch m.mode {
	case batchUndecided, batchReplace:
		mcphttp.WriteJSON(m.ResponseWriter, http.StatusOK, mcpmsg.BatchResponse(m.answers))
	case batchBuffer:
		merged := mergeBatchReplies(m.buf.Bytes(), m.answers)
		m.Header().Set("Content-Length", strconv.Itoa(len(merged)))
		m.ResponseWriter.WriteHeader(m.status)
		_, _ = m.ResponseWriter.Write(merged)
	}
}

// mergeBatchReplies appends the gateway's answers to the upstream's JSON
// reply (an array, or a single response). A reply that is neither is
// passed on unchanged: it is the upstream's, and not the gateway's to mend.
func mergeBatchReplies(reply []byte, answers [][]byte) []byte {
	var elements []json.RawMessage
	if err := json.Unmarshal(reply, &elements); err != nil {
		var single json.RawMessage
		if err := json.Unmarshal(reply, &single); err != nil || bytes.TrimSpace(single)[0] != '{' {
			return reply
		}
		elements = []json.RawMessage{single}
	}
	all := make([][]byte, 0, len(elements)+len(answers))
	for _, element := range elements {
		all = append(all, element)
	}
	return mcpmsg.BatchResponse(append(all, answers...))
}

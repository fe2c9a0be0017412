package replyfilter_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

const (
	toolsResult    = `{"tools":[{"name":"delete_issue"},{"name":"get_issue"}]}`
	filteredResult = `{"tools":[{"name":"get_issue"}]}`
	toolsList      = `{"jsonrpc":"2.0","id":1,"result":` + toolsResult + `}`
	toolsFiltered  = `{"jsonrpc":"2.0","id":1,"result":` + filteredResult + `}`
	listChanged    = `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`
	progress       = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}`
	otherResponse  = `{"jsonrpc":"2.0","id":2,"result":{}}`
	errorResponse  = `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no such method"}}`
)

// filterTools is a RewriteResult that expects toolsResult and replaces it
// with filteredResult.
func filterTools(_, result []byte) ([]byte, error) {
	if string(result) != toolsResult {
		return nil, fmt.Errorf("RewriteResult got %s, want %s", result, toolsResult)
	}
	return []byte(filteredResult), nil
}

// returning is a RewriteResult that returns result and err.
func returning(result string, err error) func(_, _ []byte) ([]byte, error) {
	return func(_, _ []byte) ([]byte, error) { return []byte(result), err }
}

// watch returns hooks that rewrite the responses to ids with rewrite.
func watch(rewrite func(id, result []byte) ([]byte, error), ids ...string) replyfilter.Hooks {
	hooks := replyfilter.Hooks{RewriteResult: rewrite}
	for _, id := range ids {
		hooks.WatchIDs = append(hooks.WatchIDs, []byte(id))
	}
	return hooks
}

// reply is what an upstream sends: a status (none means an implicit 200),
// headers, and a body written in pieces.
type reply struct {
	status int
	header http.Header
	chunks []string
}

// jsonReply returns a 200 JSON reply with body written in one piece.
func jsonReply(body string) reply {
	return reply{status: http.StatusOK, header: contentType("application/json"), chunks: []string{body}}
}

// streamReply returns a 200 event stream written in the given pieces.
func streamReply(chunks ...string) reply {
	return reply{status: http.StatusOK, header: contentType("text/event-stream"), chunks: chunks}
}

func contentType(value string) http.Header {
	return http.Header{"Content-Type": {value}}
}

// outcome is what came of writing a reply through the wrapper.
type outcome struct {
	rec       *httptest.ResponseRecorder
	seen      []string // the messages OnMessage saw, described
	reported  []error  // the errors OnError got
	writeErr  error    // the first error from Write
	finishErr error
}

// send writes r through a wrapper with hooks to a recorder, as Caddy's
// reverse_proxy does: headers, then each piece followed by a flush, stopping
// at the first failed Write; then it calls finish.
func send(t *testing.T, hooks replyfilter.Hooks, r reply) outcome {
	t.Helper()
	var out outcome
	hooks.OnMessage = func(m *mcpmsg.Message) {
		out.seen = append(out.seen, describe(m))
	}
	hooks.OnError = func(err error) {
		out.reported = append(out.reported, err)
	}
	out.rec = httptest.NewRecorder()
	w, finish := replyfilter.Wrap(out.rec, hooks)
	for name, values := range r.header {
		w.Header()[name] = values
	}
	if r.status != 0 {
		w.WriteHeader(r.status)
	}
	for _, chunk := range r.chunks {
		if _, err := io.WriteString(w, chunk); err != nil {
			out.writeErr = err
			break
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flushing the wrapper: %v", err)
		}
	}
	out.finishErr = finish()
	return out
}

// describe names a message by its method, or a response by its id.
func describe(m *mcpmsg.Message) string {
	if m.Kind == mcpmsg.KindResponse {
		return "response " + string(m.ID)
	}
	return m.Method
}

// checkRefused fails t unless out is a 502 JSON-RPC error reported to
// OnError and returned by finish.
func checkRefused(t *testing.T, out outcome) {
	t.Helper()
	if out.rec.Code != http.StatusBadGateway {
		t.Errorf("status %d, want %d", out.rec.Code, http.StatusBadGateway)
	}
	body := out.rec.Body.Bytes()
	parsed, err := mcpmsg.Parse(body, mcpmsg.Limits{})
	if err != nil || parsed.Messages[0].Kind != mcpmsg.KindResponse || !strings.Contains(string(body), `"code":-32603`) {
		t.Errorf("body %s is not a JSON-RPC internal error (%v)", body, err)
	}
	if got := out.rec.Header().Get("Content-Length"); got != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %s for a body of %d bytes", got, len(body))
	}
	if out.rec.Header().Get("Content-Encoding") != "" {
		t.Errorf("Content-Encoding %q kept on the gateway's own body", out.rec.Header().Get("Content-Encoding"))
	}
	if len(out.reported) != 1 || out.finishErr == nil || !errors.Is(out.finishErr, out.reported[0]) {
		t.Errorf("OnError got %v and finish returned %v, want the same one error", out.reported, out.finishErr)
	}
}

func TestJSONReplies(t *testing.T) {
	tests := []struct {
		name     string
		hooks    replyfilter.Hooks
		reply    reply
		wantBody string
		wantSeen []string
	}{
		{
			name:     "watched result rewritten",
			hooks:    watch(filterTools, `1`),
			reply:    jsonReply(toolsList),
			wantBody: toolsFiltered,
			wantSeen: []string{"response 1"},
		},
		{
			name:     "no watched id passes byte for byte",
			hooks:    watch(filterTools, `2`),
			reply:    jsonReply(" {\"jsonrpc\": \"2.0\", \"id\": 1, \"result\": {\"tools\": [ ]}}\n"),
			wantBody: " {\"jsonrpc\": \"2.0\", \"id\": 1, \"result\": {\"tools\": [ ]}}\n",
			wantSeen: []string{"response 1"},
		},
		{
			name:     "no hooks at all",
			reply:    jsonReply(toolsList),
			wantBody: toolsList,
			wantSeen: []string{"response 1"},
		},
		{
			name:     "unchanged result leaves the reply as it was",
			hooks:    watch(func(_, result []byte) ([]byte, error) { return result, nil }, `1`),
			reply:    jsonReply(toolsList + "\n"),
			wantBody: toolsList + "\n",
			wantSeen: []string{"response 1"},
		},
		{
			name:     "only the result is replaced",
			hooks:    watch(filterTools, `1`),
			reply:    jsonReply(`{"result" : ` + toolsResult + ` , "id":1,"jsonrpc":"2.0"}`),
			wantBody: `{"result" : ` + filteredResult + ` , "id":1,"jsonrpc":"2.0"}`,
			wantSeen: []string{"response 1"},
		},
		{
			name:     "ids compare as JSON strings",
			hooks:    watch(filterTools, `"\u0061"`),
			reply:    jsonReply(`{"jsonrpc":"2.0","id":"a","result":` + toolsResult + `}`),
			wantBody: `{"jsonrpc":"2.0","id":"a","result":` + filteredResult + `}`,
			wantSeen: []string{`response "a"`},
		},
		{
			name:     "numeric ids compare as written",
			hooks:    watch(filterTools, `1.0`, `1e0`),
			reply:    jsonReply(toolsList),
			wantBody: toolsList,
			wantSeen: []string{"response 1"},
		},
		{
			name:     "ids compare exactly beyond 2^53",
			hooks:    watch(filterTools, `9007199254740992`),
			reply:    jsonReply(`{"jsonrpc":"2.0","id":9007199254740991,"result":` + toolsResult + `}`),
			wantBody: `{"jsonrpc":"2.0","id":9007199254740991,"result":` + toolsResult + `}`,
			wantSeen: []string{"response 9007199254740991"},
		},
		{
			name:     "a string id does not match a number id",
			hooks:    watch(filterTools, `"1"`),
			reply:    jsonReply(toolsList),
			wantBody: toolsList,
			wantSeen: []string{"response 1"},
		},
		{
			name:     "error response to a watched id passes",
			hooks:    watch(filterTools, `1`),
			reply:    jsonReply(errorResponse),
			wantBody: errorResponse,
			wantSeen: []string{"response 1"},
		},
		{
			name:     "batch with one watched response",
			hooks:    watch(filterTools, `1`),
			reply:    jsonReply("[" + otherResponse + ", " + toolsList + "]"),
			wantBody: "[" + otherResponse + "," + toolsFiltered + "]",
			wantSeen: []string{"response 2", "response 1"},
		},
		{
			name:     "batch without watched responses passes byte for byte",
			hooks:    watch(filterTools, `3`),
			reply:    jsonReply("[" + otherResponse + ", " + toolsList + "]"),
			wantBody: "[" + otherResponse + ", " + toolsList + "]",
			wantSeen: []string{"response 2", "response 1"},
		},
		{
			name:     "rewrite failure answers an error for the id",
			hooks:    watch(returning("", errors.New("policy unavailable")), `1`),
			reply:    jsonReply(toolsList),
			wantBody: string(mcpmsg.ErrorResponse([]byte(`1`), mcpmsg.CodeInternalError, "rewriting the result for id 1: policy unavailable")),
			wantSeen: []string{"response 1"},
		},
		{
			name:     "rewrite to invalid JSON answers an error for the id",
			hooks:    watch(returning(`{"tools":[`, nil), `1`),
			reply:    jsonReply(toolsList),
			wantBody: string(mcpmsg.ErrorResponse([]byte(`1`), mcpmsg.CodeInternalError, "rewriting the result for id 1: rewritten result is not valid JSON")),
			wantSeen: []string{"response 1"},
		},
		{
			name:     "reply written in pieces",
			hooks:    watch(filterTools, `1`),
			reply:    reply{status: http.StatusOK, header: contentType("application/json; charset=utf-8"), chunks: strings.SplitAfter(toolsList, ",")},
			wantBody: toolsFiltered,
			wantSeen: []string{"response 1"},
		},
		{
			name:     "implicit status",
			hooks:    watch(filterTools, `1`),
			reply:    reply{header: contentType("application/json"), chunks: []string{toolsList}},
			wantBody: toolsFiltered,
			wantSeen: []string{"response 1"},
		},
		{
			name:  "empty body",
			reply: reply{status: http.StatusAccepted, header: contentType("application/json")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := send(t, tt.hooks, tt.reply)
			wantStatus := tt.reply.status
			if wantStatus == 0 {
				wantStatus = http.StatusOK
			}
			if out.rec.Code != wantStatus {
				t.Errorf("status %d, want %d", out.rec.Code, wantStatus)
			}
			if got := out.rec.Body.String(); got != tt.wantBody {
				t.Errorf("body\n got %s\nwant %s", got, tt.wantBody)
			}
			if got := out.rec.Header().Get("Content-Length"); tt.wantBody != "" && got != strconv.Itoa(len(tt.wantBody)) {
				t.Errorf("Content-Length %s, want %d", got, len(tt.wantBody))
			}
			if !reflect.DeepEqual(out.seen, tt.wantSeen) {
				t.Errorf("OnMessage saw %q, want %q", out.seen, tt.wantSeen)
			}
			if out.writeErr != nil || out.finishErr != nil {
				t.Errorf("Write failed with %v and finish with %v, want neither", out.writeErr, out.finishErr)
			}
		})
	}
}

func TestRefusedReplies(t *testing.T) {
	gzip := contentType("application/json")
	gzip.Set("Content-Encoding", "gzip")
	tests := []struct {
		name  string
		hooks replyfilter.Hooks
		reply reply
	}{
		{"not JSON", replyfilter.Hooks{}, jsonReply(`<html>`)},
		{"not JSON-RPC", replyfilter.Hooks{}, jsonReply(`{"hello":"world"}`)},
		{"duplicate member names", replyfilter.Hooks{}, jsonReply(`{"jsonrpc":"2.0","id":1,"result":{},"result":{}}`)},
		{"response id with a fraction", watch(filterTools, `1`), jsonReply(`{"jsonrpc":"2.0","id":1.0,"result":` + toolsResult + `}`)},
		{"server request id beyond 2^53", replyfilter.Hooks{Intercept: dropRequests}, jsonReply(`{"jsonrpc":"2.0","id":9007199254740993,"method":"sampling/createMessage","params":{}}`)},
		{"server cancellation with an exponent", replyfilter.Hooks{}, jsonReply(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1e0}}`)},
		{"trailing data", replyfilter.Hooks{}, jsonReply(toolsList + toolsList)},
		{"larger than the limit", replyfilter.Hooks{MaxBodySize: 10}, reply{status: http.StatusOK, header: contentType("application/json"), chunks: []string{toolsList[:8], toolsList[8:]}}},
		{"encoded JSON", replyfilter.Hooks{}, reply{status: http.StatusOK, header: gzip, chunks: []string{"\x1f\x8b"}}},
		{"encoded stream", replyfilter.Hooks{}, reply{status: http.StatusOK, header: http.Header{"Content-Type": {"text/event-stream"}, "Content-Encoding": {"br"}}}},
		{"unclear content type", replyfilter.Hooks{}, reply{status: http.StatusOK, header: contentType("text/plain, application/json"), chunks: []string{toolsList}}},
		{"JSON suffix type", replyfilter.Hooks{}, reply{status: http.StatusOK, header: contentType("application/vnd.mcp+json"), chunks: []string{toolsList}}},
		{"two content types", replyfilter.Hooks{}, reply{status: http.StatusOK, header: http.Header{"Content-Type": {"text/plain", "application/json"}}, chunks: []string{toolsList}}},
		// Clients read a stream's body as events whatever its type (the
		// TypeScript SDK's GET stream, go-sdk's HTTP+SSE client).
		{"a stream in plain text", replyfilter.Hooks{OpensStream: true}, reply{status: http.StatusOK, header: contentType("text/plain"), chunks: []string{"data: " + toolsList + "\n\n"}}},
		{"a stream without a content type", replyfilter.Hooks{OpensStream: true}, reply{status: http.StatusOK, chunks: []string{"data: " + toolsList + "\n\n"}}},
		{"a stream as a page", replyfilter.Hooks{OpensStream: true}, reply{status: http.StatusOK, header: contentType("text/html"), chunks: []string{"event: endpoint\ndata: http://elsewhere.example/messages\n\n"}}},
		{"a stream accepted, empty", replyfilter.Hooks{OpensStream: true}, reply{status: http.StatusAccepted}},
		// The Go SDK's client reads a JSON-RPC error from any non-2xx
		// reply, whatever its type: one the gateway cannot read is not
		// passed on.
		{"a client error compressed", replyfilter.Hooks{}, reply{status: http.StatusBadRequest, header: http.Header{"Content-Type": {"text/plain"}, "Content-Encoding": {"gzip"}}, chunks: []string{"\x1f\x8b"}}},
		{"a client error that may name a request, not JSON-RPC", replyfilter.Hooks{}, reply{status: http.StatusForbidden, header: contentType("text/plain"), chunks: []string{`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":{"Elicitations":[]}},"Method":"x"}`}}},
		{"a client error with more after it", replyfilter.Hooks{}, reply{status: http.StatusBadRequest, header: contentType("text/plain"), chunks: []string{"\n " + `{"jsonrpc":"2.0","id":1,"error":{"code":-32042,"message":"m","data":{"elicitations":[]}}} x`}}},
		{"a server error, then another", replyfilter.Hooks{}, reply{status: http.StatusInternalServerError, header: contentType("application/json"), chunks: []string{`{"jsonrpc":"2.0","id":1,"error":{"code":-32042,"message":"m","data":{"elicitations":[]}}}`, `{}`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRefused(t, send(t, tt.hooks, tt.reply))
		})
	}
}

func TestPassThrough(t *testing.T) {
	tests := []struct {
		name  string
		reply reply
	}{
		{"accepted without a body", reply{status: http.StatusAccepted}},
		{"client error in plain text", reply{status: http.StatusNotFound, header: contentType("text/plain"), chunks: []string{"session not found"}}},
		{"server error in JSON that is not JSON-RPC", reply{status: http.StatusInternalServerError, header: contentType("application/json"), chunks: []string{`{"oops":1}`}}},
		{"client error in JSON-RPC", reply{status: http.StatusBadRequest, header: contentType("application/json"), chunks: []string{`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"bad request"}}`}}},
		{"server error page naming a method", reply{status: http.StatusBadGateway, header: contentType("text/html"), chunks: []string{`<p>form "method" missing</p>`}}},
		{"client error in text naming a method", reply{status: http.StatusBadRequest, header: contentType("text/plain"), chunks: []string{`  form field "method" missing {"x":1}`}}},
		{"other content type", reply{status: http.StatusOK, header: contentType("text/html"), chunks: []string{"<p>", "hi</p>"}}},
		{"no content type", reply{chunks: []string{"data: not an event stream\n"}}},
		{"a page with a policy of its own", reply{status: http.StatusOK, header: http.Header{
			"Content-Type": {"text/html"}, "Content-Security-Policy": {"default-src 'self'"}}, chunks: []string{"<p>hi</p>"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hooks := watch(returning("", errors.New("RewriteResult called")), `1`)
			own := tt.reply.header.Values("Content-Security-Policy")
			out := send(t, hooks, tt.reply)
			// Shown in a sandbox of its own origin, never sniffed, and
			// under the upstream's own policy too.
			policies := out.rec.Header().Values("Content-Security-Policy")
			sandboxed := slices.ContainsFunc(policies, func(p string) bool {
				return (p == "sandbox" || strings.HasPrefix(p, "sandbox ")) && !strings.Contains(p, "allow-same-origin")
			})
			if !sandboxed || len(policies) != len(own)+1 || !slices.Equal(policies[:len(own)], own) ||
				out.rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers %v, want the upstream's policies %q and a sandbox of its own origin, not sniffed", out.rec.Header(), own)
			}
			wantStatus := tt.reply.status
			if wantStatus == 0 {
				wantStatus = http.StatusOK
			}
			if want := strings.Join(tt.reply.chunks, ""); out.rec.Code != wantStatus || out.rec.Body.String() != want {
				t.Errorf("got %d %q, want %d %q", out.rec.Code, out.rec.Body.String(), wantStatus, want)
			}
			if out.seen != nil || out.reported != nil || out.writeErr != nil || out.finishErr != nil {
				t.Errorf("OnMessage saw %q, OnError got %v, Write returned %v, finish returned %v; want nothing",
					out.seen, out.reported, out.writeErr, out.finishErr)
			}
		})
	}
}

// event returns data as an event of type "message" with an id, the way the
// go-sdk server writes them.
func event(id, data string) string {
	return "event: message\nid: " + id + "\ndata: " + data + "\n\n"
}

func TestEventStreams(t *testing.T) {
	tests := []struct {
		name     string
		hooks    replyfilter.Hooks
		reply    reply
		wantBody string
		wantSeen []string
		// wantCut is the error that cut the stream, if one should.
		wantCut error
		// wantReports counts the errors OnError gets, the cut included.
		wantReports int
	}{
		{
			name:     "watched response among notifications",
			hooks:    watch(filterTools, `1`),
			reply:    streamReply(event("a", progress), event("b", listChanged), event("c", toolsList), event("d", otherResponse)),
			wantBody: event("a", progress) + event("b", listChanged) + event("c", toolsFiltered) + event("d", otherResponse),
			wantSeen: []string{"notifications/progress", "notifications/tools/list_changed", "response 1", "response 2"},
		},
		{
			name:     "events of a GET stream pass in canonical form",
			reply:    streamReply("id:x\ndata:"+listChanged+"\n\n", "retry: 5000\n\n"),
			wantBody: "id: x\ndata: " + listChanged + "\n\n" + "retry: 5000\n\n",
			wantSeen: []string{"notifications/tools/list_changed"},
		},
		{
			name:     "one event split across many writes",
			hooks:    watch(filterTools, `1`),
			reply:    streamReply(strings.Split(event("1", toolsList)+event("2", listChanged), "")...),
			wantBody: event("1", toolsFiltered) + event("2", listChanged),
			wantSeen: []string{"response 1", "notifications/tools/list_changed"},
		},
		{
			name:     "many events in one write",
			reply:    streamReply(event("1", progress) + event("2", listChanged) + event("3", otherResponse)),
			wantBody: event("1", progress) + event("2", listChanged) + event("3", otherResponse),
			wantSeen: []string{"notifications/progress", "notifications/tools/list_changed", "response 2"},
		},
		{
			name:     "CR line ends become LF",
			reply:    streamReply("event: message\rid: 1\rdata: "+listChanged+"\r\r", "data: "+progress+"\r\n\r\n"),
			wantBody: event("1", listChanged) + "data: " + progress + "\n\n",
			wantSeen: []string{"notifications/tools/list_changed", "notifications/progress"},
		},
		{
			name:     "data split over lines",
			reply:    streamReply("data: {\"jsonrpc\":\"2.0\",\ndata: \"method\":\"ping\",\"id\":7}\n\n"),
			wantBody: "data: {\"jsonrpc\":\"2.0\",\ndata: \"method\":\"ping\",\"id\":7}\n\n",
			wantSeen: []string{"ping"},
		},
		{
			name:     "batch in one event",
			hooks:    watch(filterTools, `1`),
			reply:    streamReply("data: [" + otherResponse + "," + toolsList + "]\n\n"),
			wantBody: "data: [" + otherResponse + "," + toolsFiltered + "]\n\n",
			wantSeen: []string{"response 2", "response 1"},
		},
		{
			name:     "keepalive comments pass",
			reply:    streamReply(": ping\n\n", event("1", listChanged), ":\n\n"),
			wantBody: ": ping\n\n" + event("1", listChanged) + ":\n\n",
			wantSeen: []string{"notifications/tools/list_changed"},
		},
		{
			name:     "priming event with empty data passes",
			reply:    streamReply("id: s-0\ndata:\n\n", event("s-1", listChanged)),
			wantBody: "id: s-0\ndata:\n\n" + event("s-1", listChanged),
			wantSeen: []string{"notifications/tools/list_changed"},
		},
		{
			// The TypeScript SDK's servers replay their priming event
			// from their event store as the empty object they stored.
			name:     "priming event replayed as an empty object passes as a priming event",
			reply:    streamReply(event("s-0", "{}"), "id: s-1\ndata: { }\n\n", event("s-2", listChanged)),
			wantBody: "id: s-0\ndata:\n\n" + "id: s-1\ndata:\n\n" + event("s-2", listChanged),
			wantSeen: []string{"notifications/tools/list_changed"},
		},
		{
			name:        "rewrite failure sends an error for the id",
			hooks:       watch(returning("", errors.New("policy unavailable")), `1`),
			reply:       streamReply(event("1", toolsList), event("2", listChanged)),
			wantBody:    event("1", string(mcpmsg.ErrorResponse([]byte(`1`), mcpmsg.CodeInternalError, "rewriting the result for id 1: policy unavailable"))) + event("2", listChanged),
			wantSeen:    []string{"response 1", "notifications/tools/list_changed"},
			wantReports: 1,
		},
		{
			name:     "data that is not JSON cuts the stream",
			reply:    streamReply(event("1", listChanged)+event("2", "hello"), event("3", progress)),
			wantBody: event("1", listChanged),
			wantSeen: []string{"notifications/tools/list_changed"},
			wantCut:  &mcpmsg.Error{},
		},
		{
			name:     "data that is not JSON-RPC cuts the stream",
			reply:    streamReply(event("1", `{"jsonrpc":"2.0"}`)),
			wantCut:  &mcpmsg.Error{},
			wantSeen: nil,
		},
		{
			name:     "server request id no reader reads alike cuts the stream",
			reply:    streamReply(event("1", listChanged), event("2", `{"jsonrpc":"2.0","id":-0,"method":"sampling/createMessage","params":{}}`), event("3", progress)),
			wantBody: event("1", listChanged),
			wantSeen: []string{"notifications/tools/list_changed"},
			wantCut:  &mcpmsg.Error{},
		},
		{
			name:     "progress token no reader reads alike cuts the stream",
			reply:    streamReply(event("1", `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7.0,"progress":1}}`)),
			wantCut:  &mcpmsg.Error{},
			wantSeen: nil,
		},
		{
			name:     "whitespace data cuts the stream",
			reply:    streamReply("data: \ndata: \n\n"),
			wantCut:  &mcpmsg.Error{},
			wantSeen: nil,
		},
		{
			name:     "event larger than the limit cuts the stream",
			hooks:    replyfilter.Hooks{MaxEventSize: 256},
			reply:    streamReply(event("1", listChanged), "data: "+strings.Repeat(" ", 300)),
			wantBody: event("1", listChanged),
			wantSeen: []string{"notifications/tools/list_changed"},
			wantCut:  mcpmsg.ErrEventTooLarge,
		},
		{
			name:     "invalid UTF-8 cuts the stream",
			reply:    streamReply("data: \xff\n\n"),
			wantCut:  mcpmsg.ErrEventInvalidUTF8,
			wantSeen: nil,
		},
		{
			name:     "stream that ends inside an event drops it",
			reply:    streamReply(event("1", listChanged), "data: "+progress+"\n"),
			wantBody: event("1", listChanged),
			wantSeen: []string{"notifications/tools/list_changed"},
			wantCut:  mcpmsg.ErrEventTruncated,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.reply.header.Set("Content-Length", "12345")
			out := send(t, tt.hooks, tt.reply)
			if out.rec.Code != http.StatusOK {
				t.Errorf("status %d, want %d", out.rec.Code, http.StatusOK)
			}
			if got := out.rec.Header().Get("Content-Length"); got != "" {
				t.Errorf("Content-Length %s kept on a stream", got)
			}
			if got := out.rec.Body.String(); got != tt.wantBody {
				t.Errorf("stream\n got %q\nwant %q", got, tt.wantBody)
			}
			if !reflect.DeepEqual(out.seen, tt.wantSeen) {
				t.Errorf("OnMessage saw %q, want %q", out.seen, tt.wantSeen)
			}
			if tt.wantCut != nil && tt.wantReports == 0 {
				tt.wantReports = 1
			}
			if len(out.reported) != tt.wantReports {
				t.Errorf("OnError got %v, want %d errors", out.reported, tt.wantReports)
			}
			checkCut(t, out, tt.wantCut)
		})
	}
}

// checkCut fails t unless the stream in out was cut by want (matched with
// errors.As when it is an *mcpmsg.Error, else errors.Is), or not cut when
// want is nil. A cut is reported last to OnError and returned by finish.
func checkCut(t *testing.T, out outcome, want error) {
	t.Helper()
	if want == nil {
		if out.writeErr != nil || out.finishErr != nil {
			t.Errorf("Write returned %v and finish %v; want no error", out.writeErr, out.finishErr)
		}
		return
	}
	matches := func(err error) bool {
		if target, ok := want.(*mcpmsg.Error); ok {
			return errors.As(err, &target)
		}
		return errors.Is(err, want)
	}
	if !matches(out.finishErr) || len(out.reported) == 0 || !matches(out.reported[len(out.reported)-1]) {
		t.Errorf("finish returned %v and OnError got %v, want one %T %v", out.finishErr, out.reported, want, want)
	}
	if !errors.Is(want, mcpmsg.ErrEventTruncated) && !matches(out.writeErr) {
		t.Errorf("Write returned %v, want the error that cut the stream", out.writeErr)
	}
}

// TestEventStreamIsNotBuffered streams through a real server and checks
// that each event reaches the client before the upstream writes the next.
func TestEventStreamIsNotBuffered(t *testing.T) {
	events := []string{event("1", progress), event("2", listChanged), event("3", toolsList)}
	for _, upstreamFlushes := range []bool{true, false} {
		t.Run("upstream flushes "+strconv.FormatBool(upstreamFlushes), func(t *testing.T) {
			proceed := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ow, finish := replyfilter.Wrap(w, watch(filterTools, `1`))
				ow.Header().Set("Content-Type", "text/event-stream")
				ow.WriteHeader(http.StatusOK)
				for i, e := range events {
					if i > 0 {
						select {
						case <-proceed:
						case <-r.Context().Done():
							return
						}
					}
					if _, err := io.WriteString(ow, e); err != nil {
						t.Errorf("writing event %d: %v", i, err)
						return
					}
					if upstreamFlushes {
						_ = http.NewResponseController(ow).Flush()
					}
				}
				if err := finish(); err != nil {
					t.Errorf("finish: %v", err)
				}
			}))
			defer srv.Close()
			// A wrapper that held events back would hold back the headers
			// too, so the deadline covers the whole exchange.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("no reply before the upstream's second event: %v", err)
			}
			defer resp.Body.Close()
			stream := mcpmsg.NewSSEReader(resp.Body, 0)
			want := []string{progress, listChanged, toolsFiltered}
			for i := range want {
				e, err := stream.Next()
				if err != nil || e.Data != want[i] {
					t.Fatalf("event %d: got %q, %v; want data %s before the upstream writes the next", i, e.Data, err, want[i])
				}
				if i < len(want)-1 {
					proceed <- struct{}{}
				}
			}
			if _, err := stream.Next(); err != io.EOF {
				t.Errorf("after the last event: %v, want io.EOF", err)
			}
		})
	}
}

const samplingRequest = `{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}`

// dropRequests is an Intercept that drops every request.
func dropRequests(m *mcpmsg.Message) bool {
	return m.Kind == mcpmsg.KindRequest
}

// rewriteEndpoint is an Endpoint hook that moves /messages under /api, and
// fails on anything else.
func rewriteEndpoint(uri string) (string, error) {
	if uri != "/messages?sessionId=1" {
		return "", errElsewhere
	}
	return "/api/messages?sessionId=1", nil
}

var errElsewhere = errors.New("endpoint elsewhere")

// TestStreamHooks covers the hooks for streams: Intercept dropping
// messages, and Endpoint rewriting the HTTP+SSE endpoint event.
func TestStreamHooks(t *testing.T) {
	drop := replyfilter.Hooks{Intercept: dropRequests}
	endpoint := replyfilter.Hooks{Endpoint: rewriteEndpoint}
	tests := []struct {
		name     string
		hooks    replyfilter.Hooks
		reply    reply
		wantBody string
		wantCut  error
	}{
		{
			name:     "dropped event keeps its id and comments",
			hooks:    drop,
			reply:    streamReply(event("1", listChanged), ": hi\nid: 2\nevent: message\ndata: "+samplingRequest+"\n\n", event("3", progress)),
			wantBody: event("1", listChanged) + "id: 2\n: hi\n\n" + event("3", progress),
		},
		{
			name:     "dropped event without id leaves nothing",
			hooks:    drop,
			reply:    streamReply("data: "+samplingRequest+"\n\n", event("3", progress)),
			wantBody: event("3", progress),
		},
		{
			name:     "batch loses only the dropped element",
			hooks:    drop,
			reply:    streamReply("data: [" + samplingRequest + "," + progress + "]\n\n"),
			wantBody: "data: [" + progress + "]\n\n",
		},
		{
			name:    "endpoint event without an Endpoint hook cuts the stream",
			hooks:   drop,
			reply:   streamReply("event: endpoint\ndata: /messages?sessionId=1\n\n"),
			wantCut: &mcpmsg.Error{},
		},
		{
			name:     "first event rewritten",
			hooks:    endpoint,
			reply:    streamReply(": open\n\n", "event: endpoint\r\ndata: /messages?sessionId=1\r\n\r\n", event("1", progress)),
			wantBody: ": open\n\n" + "event: endpoint\ndata: /api/messages?sessionId=1\n\n" + event("1", progress),
		},
		{
			name:    "endpoint hook error cuts the stream",
			hooks:   endpoint,
			reply:   streamReply("event: endpoint\ndata: https://elsewhere.example/messages\n\n", event("1", progress)),
			wantCut: errElsewhere,
		},
		{
			name:     "later endpoint event cuts the stream",
			hooks:    endpoint,
			reply:    streamReply(event("1", progress), "event: endpoint\ndata: /messages?sessionId=1\n\n"),
			wantBody: event("1", progress),
			wantCut:  replyfilter.ErrSecondEndpoint,
		},
		{
			// A client that takes every endpoint event as where to post
			// resolves this JSON text, as a relative URL, to /raw/sse.
			name:     "second endpoint event holding a JSON-RPC message cuts the stream",
			hooks:    endpoint,
			reply:    streamReply("event: endpoint\ndata: /messages?sessionId=1\n\n", "event: endpoint\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"/../../../raw/sse?x=\"}}\n\n"),
			wantBody: "event: endpoint\ndata: /api/messages?sessionId=1\n\n",
			wantCut:  replyfilter.ErrSecondEndpoint,
		},
		{
			name:     "endpoint event on a stream without the hook is read as a message",
			reply:    streamReply(event("1", progress), "event: endpoint\ndata: /messages?sessionId=1\n\n"),
			wantBody: event("1", progress),
			wantCut:  &mcpmsg.Error{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := send(t, tt.hooks, tt.reply)
			if got := out.rec.Body.String(); got != tt.wantBody {
				t.Errorf("stream\n got %q\nwant %q", got, tt.wantBody)
			}
			checkCut(t, out, tt.wantCut)
		})
	}
}

func TestInterceptJSON(t *testing.T) {
	checkRefused(t, send(t, replyfilter.Hooks{Intercept: dropRequests}, jsonReply(samplingRequest)))
	out := send(t, replyfilter.Hooks{Intercept: dropRequests}, jsonReply("["+samplingRequest+","+otherResponse+"]"))
	if got, want := out.rec.Body.String(), "["+otherResponse+"]"; got != want {
		t.Errorf("JSON batch with a dropped element: body %s, want %s", got, want)
	}
}

func TestPassJSON(t *testing.T) {
	hooks := watch(returning("", errors.New("RewriteResult called")), `1`)
	hooks.PassJSON = true
	// Replies that cannot hold a request pass unread, byte for byte: a
	// text that merely mentions the words, or holds them escaped inside a
	// string, cannot name a member.
	for _, r := range []reply{
		jsonReply(`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}`),
		jsonReply(`not JSON at all`),
		jsonReply(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"the method lists tools: {\"tools\":[], \"method\":1} \"methods\" \"Toolsy\""}]}}`),
	} {
		out := send(t, hooks, r)
		if want := strings.Join(r.chunks, ""); out.rec.Body.String() != want || out.seen != nil || out.finishErr != nil {
			t.Errorf("body %q, seen %q, finish %v; want %q passed unread", out.rec.Body.String(), out.seen, out.finishErr, want)
		}
	}
	// A reply naming an error or a failed result is read for what it
	// says of its requests; one the strict parser cannot read passes as
	// it did before outcomes were read (it can hold no request), not
	// refused. One that may hold a request is refused as before.
	deep := strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70)
	for _, r := range []reply{
		jsonReply(`{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false,"structuredContent":` + deep + `}}`),
		jsonReply(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"error"}],"structuredContent":` + deep + `}}`),
		jsonReply(`an "error" page, not JSON`),
	} {
		out := send(t, hooks, r)
		if want := strings.Join(r.chunks, ""); out.rec.Code != http.StatusOK || out.rec.Body.String() != want || out.finishErr != nil {
			t.Errorf("HTTP %d, body %.80q, finish %v; want %.80q passed as it is", out.rec.Code, out.rec.Body.String(), out.finishErr, want)
		}
	}
	checkRefused(t, send(t, hooks, jsonReply(`{"jsonrpc":"2.0","id":1,"result":{"content":[],"method":"x","structuredContent":`+deep+`}}`)))

	// A request smuggled into a JSON reply, spelled out or escaped, is
	// read like any other reply, so the hooks see it.
	for _, r := range []reply{
		jsonReply(`[{"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":"evil","method":"sampling/createMessage","params":{}}]`),
		jsonReply(`[{"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":"evil","m\u0065thod":"sampling/createMessage","params":{}}]`),
	} {
		out := send(t, hooks, r)
		if !reflect.DeepEqual(out.seen, []string{"response 2", "sampling/createMessage"}) {
			t.Errorf("a request inside a JSON reply: OnMessage saw %q, want sampling/createMessage", out.seen)
		}
	}
	// So is a member that a reader matching names in any case takes for
	// "method" (and the reply, read, is refused for it), or a tools/list
	// result, which could answer a list awaited on another request.
	for _, r := range []reply{
		jsonReply(`{"jsonrpc":"2.0","id":"evil","Method":"sampling/createMessage","params":{}}`),
		jsonReply(`{"jsonrpc":"2.0","id":"evil","METHOD":"sampling/createMessage","params":{}}`),
	} {
		checkRefused(t, send(t, hooks, r))
	}
	for _, elicitations := range []string{`"elicitations"`, `"Elicitations"`, "\"elicitation\u017f\""} {
		out := send(t, hooks, jsonReply(`{"jsonrpc":"2.0","id":3,"error":{"code":-32042,"message":"m","data":{`+elicitations+`:[]}}}`))
		if !reflect.DeepEqual(out.seen, []string{"response 3"}) {
			t.Errorf("a JSON reply holding an error's elicitations (%s): OnMessage saw %q, want it read", elicitations, out.seen)
		}
	}
	for _, list := range []string{`"tools"`, `"Tools"`, `"tOOLS"`, "\"tool\u017f\"", "\"\u212aeys\""} {
		out := send(t, hooks, jsonReply(`{"jsonrpc":"2.0","id":3,"result":{`+list+`:[]}}`))
		if !reflect.DeepEqual(out.seen, []string{"response 3"}) {
			t.Errorf("a JSON reply holding a tools list (%s): OnMessage saw %q, want it read", list, out.seen)
		}
	}
	// A compressed JSON reply cannot be scanned: refused.
	gzip := contentType("application/json")
	gzip.Set("Content-Encoding", "gzip")
	checkRefused(t, send(t, hooks, reply{status: http.StatusOK, header: gzip, chunks: []string{"\x1f\x8b"}}))
	out := send(t, hooks, streamReply(event("1", listChanged)))
	if !reflect.DeepEqual(out.seen, []string{"notifications/tools/list_changed"}) {
		t.Errorf("with PassJSON an event stream is still read; OnMessage saw %q", out.seen)
	}
	checkRefused(t, send(t, hooks, reply{status: http.StatusOK, header: contentType("text/event-stream+json"), chunks: []string{"data: x\n\n"}}))
}

func TestResponseError(t *testing.T) {
	refuse := returning("", &replyfilter.ResponseError{Code: -31403, Message: "Blocked by policy: no"})
	out := send(t, watch(refuse, `1`), streamReply(event("1", toolsList)))
	want := event("1", string(mcpmsg.ErrorResponse([]byte(`1`), -31403, "Blocked by policy: no")))
	if got := out.rec.Body.String(); got != want {
		t.Errorf("stream\n got %q\nwant %q", got, want)
	}
	if out.reported != nil {
		t.Errorf("OnError got %v for a deliberate answer", out.reported)
	}
}

// TestCheckError: CheckError sees the error of each error response to a
// watched id; a *ResponseError it returns replaces the response, another
// error replaces it with an internal error (of which OnError is told),
// nil leaves it as it was.
func TestCheckError(t *testing.T) {
	const upstreamError = `{"jsonrpc":"2.0","id":1,"error":{"code":-32042,"message":"m","data":{"elicitations":[]}}}`
	for _, tt := range []struct {
		name     string
		err      error
		want     string
		reported bool
	}{
		{"left", nil, upstreamError, false},
		{"refused", &replyfilter.ResponseError{Code: -31403, Message: "Blocked by policy: no"}, string(mcpmsg.ErrorResponse([]byte(`1`), -31403, "Blocked by policy: no")), false},
		{"failed", errors.New("unreadable"), string(mcpmsg.ErrorResponse([]byte(`1`), mcpmsg.CodeInternalError, "checking the error for id 1: unreadable")), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var seen string
			hooks := watch(returning("", errors.New("RewriteResult called")), `1`)
			hooks.CheckError = func(id, errorObject []byte) error {
				seen = string(id) + " " + string(errorObject)
				return tt.err
			}
			withoutRewrite := hooks
			withoutRewrite.RewriteResult = nil
			// The Go SDK's client reads the error of a non-2xx reply to a
			// POST, whatever its type, as the call's.
			asClientError := reply{status: http.StatusBadRequest, header: contentType("text/plain"), chunks: []string{upstreamError}}
			for _, r := range []reply{jsonReply(upstreamError), streamReply(event("1", upstreamError)), asClientError} {
				out := send(t, hooks, r)
				if tt.err != nil {
					// Watched for CheckError alone, as for both.
					if without := send(t, withoutRewrite, r); without.rec.Body.String() != out.rec.Body.String() {
						t.Errorf("without RewriteResult\n got %q\nwant %q", without.rec.Body.String(), out.rec.Body.String())
					}
				}
				want := tt.want
				if r.header.Get("Content-Type") == "text/event-stream" {
					want = event("1", tt.want)
				}
				if got := out.rec.Body.String(); got != want || (out.reported != nil) != tt.reported {
					t.Errorf("reply\n got %q (OnError %v)\nwant %q (OnError told: %v)", got, out.reported, want, tt.reported)
				}
				if seen != `1 {"code":-32042,"message":"m","data":{"elicitations":[]}}` {
					t.Errorf("CheckError saw %q", seen)
				}
			}
		})
	}
}

func TestInject(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := replyfilter.Inject(rec, []byte(progress)); err == nil {
		t.Error("Inject into a ResponseWriter not from Wrap succeeded")
	}
	w, finish := replyfilter.Wrap(rec, replyfilter.Hooks{})
	if err := replyfilter.Inject(w, []byte(progress)); err == nil {
		t.Error("Inject before the reply is known to be a stream succeeded")
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	half := event("1", listChanged)
	if _, err := io.WriteString(w, half[:10]); err != nil {
		t.Fatal(err)
	}
	if err := replyfilter.Inject(w, []byte(otherResponse)); err != nil {
		t.Fatalf("Inject into an open stream: %v", err)
	}
	if _, err := io.WriteString(w, half[10:]); err != nil {
		t.Fatal(err)
	}
	if err := finish(); err != nil {
		t.Fatal(err)
	}
	if err := replyfilter.Inject(w, []byte(progress)); err == nil {
		t.Error("Inject after finish succeeded")
	}
	// The injected event goes out between the upstream's events, never
	// inside one.
	if got, want := rec.Body.String(), "event: message\ndata: "+otherResponse+"\n\n"+half; got != want {
		t.Errorf("stream\n got %q\nwant %q", got, want)
	}
}

func TestWatchAll(t *testing.T) {
	var ids []string
	hooks := replyfilter.Hooks{WatchAll: true, RewriteResult: func(id, result []byte) ([]byte, error) {
		ids = append(ids, string(id))
		return result, nil
	}}
	send(t, hooks, streamReply(event("1", toolsList), event("2", listChanged), event("3", otherResponse)))
	if want := []string{"1", "2"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("RewriteResult saw ids %q, want every response's %q", ids, want)
	}
}

// blockingWriter is a ResponseWriter whose writes, once blocking is set,
// wait for release.
type blockingWriter struct {
	*httptest.ResponseRecorder
	writing chan struct{}
	release chan struct{}
	block   atomic.Bool
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	if b.block.Load() {
		close(b.writing)
		<-b.release
	}
	return b.ResponseRecorder.Write(p)
}

// TestEndInjecting: once EndInjecting returns, Inject writes nothing more,
// and an Inject in progress has finished: a stream that unwinds without
// its finish (a proxy's abort) is never written to after its handler.
func TestEndInjecting(t *testing.T) {
	bw := &blockingWriter{ResponseRecorder: httptest.NewRecorder(), writing: make(chan struct{}), release: make(chan struct{})}
	w, _ := replyfilter.Wrap(bw, replyfilter.Hooks{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	bw.block.Store(true)
	injected := make(chan error, 1)
	go func() { injected <- replyfilter.Inject(w, []byte(progress)) }()
	<-bw.writing
	ended := make(chan struct{})
	go func() { replyfilter.EndInjecting(w); close(ended) }()
	select {
	case <-ended:
		t.Fatal("EndInjecting returned while an Inject was writing")
	case <-time.After(50 * time.Millisecond):
	}
	bw.block.Store(false)
	close(bw.release)
	<-ended
	if err := <-injected; err != nil {
		t.Errorf("the Inject in progress: %v", err)
	}
	if err := replyfilter.Inject(w, []byte(progress)); err == nil {
		t.Error("Inject after EndInjecting wrote")
	}
}

// TestPassSuccessesAndScreenFailure: with PassSuccesses, a 2xx reply of
// any type passes unread and a redirect is held as a failure, not
// refused (unless encoded, as a failure); ScreenFailure sees every
// body, a success's too, and a body it refuses is replaced by its error,
// the status and other headers kept.
func TestPassSuccessesAndScreenFailure(t *testing.T) {
	screen := func(body []byte) *replyfilter.ResponseError {
		if strings.Contains(string(body), "secret") {
			return &replyfilter.ResponseError{Code: -31403, Message: "withheld"}
		}
		return nil
	}
	tests := []struct {
		name   string
		r      reply
		status int
		body   string
	}{
		{"a 200 of text", reply{status: 200, header: contentType("text/plain"), chunks: []string{"gone"}}, 200, "gone"},
		{"a 204", reply{status: 204}, 204, ""},
		{"a 200 of JSON that is no JSON-RPC", reply{status: 200, header: contentType("application/json"), chunks: []string{`{"ok":true}`}}, 200, `{"ok":true}`},
		{"a 200 with a secret", reply{status: 200, header: contentType("text/plain"), chunks: []string{"bye, secret"}}, 200, `"message":"withheld"`},
		{"a compressed 200", reply{status: 200, header: http.Header{"Content-Encoding": {"gzip"}}, chunks: []string{"\x1f\x8b"}}, 502, "Content-Encoding"},
		{"a redirect", reply{status: 307, header: http.Header{"Location": {"/elsewhere"}}, chunks: []string{"moved"}}, 307, "moved"},
		{"a 404 of text", reply{status: 404, header: contentType("text/plain"), chunks: []string{"no such session"}}, 404, "no such session"},
		{"a 404 with a secret", reply{status: 404, header: contentType("text/plain"), chunks: []string{"its last line: secret"}}, 404, `{"jsonrpc":"2.0","id":null,"error":{"code":-31403,"message":"withheld"}}`},
		{"a redirect with a secret", reply{status: 302, header: http.Header{"Location": {"/x"}}, chunks: []string{"secret"}}, 302, `"message":"withheld"`},
		{"a compressed redirect", reply{status: 302, header: http.Header{"Location": {"/x"}, "Content-Encoding": {"gzip"}}, chunks: []string{"\x1f\x8b"}}, 502, "Content-Encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := send(t, replyfilter.Hooks{PassSuccesses: true, ScreenFailure: screen}, tt.r)
			if out.rec.Code != tt.status || !strings.Contains(out.rec.Body.String(), tt.body) || (out.finishErr != nil) != (tt.status == http.StatusBadGateway) {
				t.Errorf("HTTP %d %q (finish %v); want HTTP %d with %q", out.rec.Code, out.rec.Body, out.finishErr, tt.status, tt.body)
			}
			if strings.Contains(tt.body, "withheld") && out.rec.Header().Get("Content-Length") != strconv.Itoa(out.rec.Body.Len()) {
				t.Errorf("Content-Length %q for %d bytes", out.rec.Header().Get("Content-Length"), out.rec.Body.Len())
			}
		})
	}
}

// TestStripUnread: with StripUnread, a response loses
// the members JSON-RPC does not define, its others kept to the byte
// (escapes as written); a response without such members is not written
// anew; requests and notifications are left as they came.
func TestStripUnread(t *testing.T) {
	body := `[{"jsonrpc":"2.0","id":1,"result":{"text":"caf\u00e9 \/"},"debug":"x"},{"jsonrpc":"2.0", "id":2, "result":{}},{"jsonrpc":"2.0","method":"notifications/message","params":{},"extra":1}]`
	out := send(t, replyfilter.Hooks{StripUnread: true, WatchAll: true}, reply{status: 200, header: contentType("application/json"), chunks: []string{body}})
	want := `[{"jsonrpc":"2.0","id":1,"result":{"text":"caf\u00e9 \/"}},{"jsonrpc":"2.0", "id":2, "result":{}},{"jsonrpc":"2.0","method":"notifications/message","params":{},"extra":1}]`
	if got := out.rec.Body.String(); got != want {
		t.Errorf("relayed %s; want %s", got, want)
	}
	// An event stream's comments go on empty (keepalives keep): clients
	// ignore them, but one reading the stream raw would see what the
	// hooks never read. Without StripUnread, they go on as they came.
	stream := ": ghp_secret\n: and more\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n: keepalive\n\n"
	for _, strip := range []bool{true, false} {
		out := send(t, replyfilter.Hooks{StripUnread: strip, WatchAll: true}, streamReply(stream))
		got := out.rec.Body.String()
		kept := strings.Contains(got, ": ghp_secret\n") && strings.Contains(got, ": keepalive\n")
		emptied := !strings.Contains(got, "ghp_secret") && !strings.Contains(got, "keepalive") && strings.Count(got, ":\n") == 2
		if strip && !emptied || !strip && !kept {
			t.Errorf("StripUnread %v: relayed %q; want the comments' text kept: %v, every comment kept", strip, got, !strip)
		}
	}
}

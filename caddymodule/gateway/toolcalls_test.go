package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// scriptedCalls is how the scripted upstream of TestToolCallOutcomes
// answers a call of each of its tools: a status, a Content-Type and a
// body ("%s" is the call's id).
var scriptedCalls = map[string]struct {
	status      int
	contentType string
	body        string
}{
	"plain":           {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"fine, no error"}]}}`},
	"quotes_error":    {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"the word \"error\" quoted"}]}}`},
	"names_iserror":   {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[],"structuredContent":{"isError":false},"isError":false}}`},
	"fails":           {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"no such file"}],"isError":true}}`},
	"fails_in_case":   {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[],"ISERROR":true}}`},
	"fails_escaped":   {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[],"\u0069sError":true}}`},
	"rpc_error":       {200, "application/json", `{"jsonrpc":"2.0","id":%s,"error":{"code":-32602,"message":"bad arguments"}}`},
	"streamed":        {200, "text/event-stream", "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[]}}\n\n"},
	"streamed_fails":  {200, "text/event-stream", "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[],\"isError\":true}}\n\n"},
	"streamed_error":  {200, "text/event-stream", "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":-32603,\"message\":\"broke\"}}\n\n"},
	"stream_no_reply": {200, "text/event-stream", ": nothing for %s\n\n"},
	"server_error":    {500, "text/plain", "internal error %s"},
	"empty_reply":     {200, "application/json", ""},
	// Past the strict parser's depth: passed as they came, and read as
	// the Go SDK reads them.
	"deep_ok":    {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[],"isError":false,"structuredContent":` + deepJSON + `}}`},
	"deep_fails": {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[],"isError":true,"structuredContent":` + deepJSON + `}}`},
	"deep_error": {200, "application/json", `{"jsonrpc":"2.0","id":%s,"error":{"code":-32603,"message":"m","data":` + deepJSON + `}}`},
	// Unreadable to the strict parser, read by exact names as the SDKs
	// read them: another id answers nothing; "Error" is no error.
	"deep_other_id":  {200, "application/json", `{"jsonrpc":"2.0","id":"not-%s","result":{"content":[],"isError":true,"structuredContent":` + deepJSON + `}}`},
	"error_in_case":  {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[]},"Error":{"code":-32603,"message":"m"}}`},
	"bad_utf8_fails": {200, "application/json", "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"\xff\"}],\"isError\":true}}"},
	// An error answering another request: dropped, and the reply, left
	// with nothing, refused.
	"stray_error": {200, "application/json", `{"jsonrpc":"2.0","id":"not-%s","error":{"code":-32603,"message":"m"}}`},
	// A result answering another request (its id a string, the call's a
	// number), whatever it names: dropped, the reply refused.
	"other_id":       {200, "application/json", `{"jsonrpc":"2.0","id":"%s","result":{"content":[]}}`},
	"other_id_fails": {200, "application/json", `{"jsonrpc":"2.0","id":"%s","result":{"content":[],"isError":true}}`},
	// No JSON at all, passed as it came: no client reads an answer in it.
	"not_json": {200, "application/json", `hello %s`},
	// A result no client reads: its isError is no boolean.
	"iserror_string": {200, "application/json", `{"jsonrpc":"2.0","id":%s,"result":{"content":[],"isError":"true"}}`},
}

// deepJSON is a JSON value nested past the strict parser's depth.
var deepJSON = strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70)

// TestToolCallOutcomes: every tool call the gateway forwards is counted
// once, by what became of it (mcpgate_tool_calls_total), with its time
// (mcpgate_tool_call_seconds), whichever way the server answered: a JSON
// reply passed unread, read, or an event stream; a result, a failed
// result (isError, as any client reads the name), a JSON-RPC error, or
// no answer at all. A call the policy refused is not forwarded, and not
// counted.
func TestToolCallOutcomes(t *testing.T) {
	var tools []string
	for name := range scriptedCalls {
		tools = append(tools, fmt.Sprintf(`{"name":%q,"inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}`, name))
	}
	tools = append(tools, `{"name":"delete_issue","inputSchema":{"type":"object"},"annotations":{"destructiveHint":true}}`)
	up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		message, body := upstreamtest.ReadMessage(r)
		switch message.Method {
		case "tools/list":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[%s]}}`, message.ID, strings.Join(tools, ","))
		case "tools/call":
			var call struct {
				Params struct {
					Name string `json:"name"`
				} `json:"params"`
			}
			_ = json.Unmarshal(body, &call)
			name := call.Params.Name
			script, ok := scriptedCalls[name]
			if !ok {
				t.Errorf("the upstream was called with %q", name)
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", script.contentType)
			w.WriteHeader(script.status)
			if script.body != "" {
				fmt.Fprintf(w, script.body, message.ID)
			}
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	registry := prometheus.NewRegistry()
	cfg := libraryConfig(t)
	metrics, err := gateway.NewMetrics(registry)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metrics = metrics
	core, audited := observer.New(zapcore.InfoLevel)
	cfg.Audit = &gateway.Audit{Logger: zap.New(core)}
	gw := serveGateway(t, cfg, up.URL)

	call := func(id int, tool string) reply {
		return post(t, gw.URL, http.Header{"Mcp-Protocol-Version": {"2025-11-25"}},
			fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{}}}`, id, tool))
	}
	id := 0
	for name := range scriptedCalls {
		id++
		call(id, name)
	}
	call(id+1, "delete_issue") // blocked by the table: never forwarded
	call(id+2, "plain")

	want := map[string]string{
		"plain":           "ok",
		"quotes_error":    "ok",
		"names_iserror":   "ok",
		"fails":           "tool_error",
		"fails_in_case":   "ok", // isError by its exact name, as the SDKs read it
		"fails_escaped":   "tool_error",
		"rpc_error":       "error",
		"streamed":        "ok",
		"streamed_fails":  "tool_error",
		"streamed_error":  "error",
		"stream_no_reply": "failed",
		"server_error":    "failed",
		"empty_reply":     "failed",
		"deep_ok":         "ok",
		"deep_fails":      "tool_error",
		"deep_error":      "error",
		"deep_other_id":   "failed",
		"error_in_case":   "ok",
		"bad_utf8_fails":  "tool_error",
		"stray_error":     "failed",
		"other_id":        "failed",
		"other_id_fails":  "failed",
		"not_json":        "failed",
		"iserror_string":  "failed",
	}
	counted := toolCallCounts(t, registry)
	for tool, outcome := range want {
		wantCount := 1.0
		if tool == "plain" {
			wantCount = 2
		}
		if got := counted[tool+"/"+outcome]; got != wantCount {
			t.Errorf("%s: counted %v times as %s; want %v (all counted: %v)", tool, got, outcome, wantCount, counted)
		}
	}
	total := 0.0
	for key, n := range counted {
		if strings.HasPrefix(key, "delete_issue/") {
			t.Errorf("a call the policy blocked was counted as forwarded: %s %v", key, n)
		}
		total += n
	}
	if total != float64(len(want)+1) {
		t.Errorf("%v tool calls counted; want %d (one each, plain twice): %v", total, len(want)+1, counted)
	}
	if n := toolCallTimes(t, registry, "plain"); n != 2 {
		t.Errorf("plain's calls timed %d times; want 2", n)
	}

	// The audit trail records each call's end, as the metrics count it,
	// with the call's id and the POST's facts.
	ended := map[string][]string{}
	for _, entry := range audited.FilterMessage("tool call ended").AllUntimed() {
		fields := entry.ContextMap()
		tool := fmt.Sprint(fields["tool"])
		ended[tool] = append(ended[tool], fmt.Sprint(fields["outcome"]))
		if fields["id"] == "" || fields["request_id"] == nil || fields["server"] != cfg.Server || fields["duration"] == nil || fields["elapsed"] == nil {
			t.Errorf("tool call ended record %v; want the call's id, the POST's request id and server, and durations", fields)
		}
	}
	for tool, outcome := range want {
		wantEnded := []string{outcome}
		if tool == "plain" {
			wantEnded = []string{outcome, outcome}
		}
		if !slices.Equal(ended[tool], wantEnded) {
			t.Errorf("%s: audit trail recorded ends %q; want %q", tool, ended[tool], wantEnded)
		}
	}
	if len(ended["delete_issue"]) != 0 {
		t.Errorf("a call the policy blocked was recorded as ended: %q", ended["delete_issue"])
	}
}

// toolCallCounts reads mcpgate_tool_calls_total from registry, by
// "tool/outcome".
func toolCallCounts(t *testing.T, registry *prometheus.Registry) map[string]float64 {
	t.Helper()
	counts := map[string]float64{}
	for _, m := range gatheredMetric(t, registry, "mcpgate_tool_calls_total") {
		counts[labelOf(m, "tool")+"/"+labelOf(m, "outcome")] += m.GetCounter().GetValue()
	}
	return counts
}

// toolCallTimes is how many calls of tool mcpgate_tool_call_seconds timed.
func toolCallTimes(t *testing.T, registry *prometheus.Registry, tool string) uint64 {
	t.Helper()
	for _, m := range gatheredMetric(t, registry, "mcpgate_tool_call_seconds") {
		if labelOf(m, "tool") == tool {
			return m.GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// gatheredMetric returns the series of the named metric in registry.
func gatheredMetric(t *testing.T, registry *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

// labelOf is the value of m's label name.
func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestReplyToAnotherRequestRefused: a JSON reply whose one response
// answers another request than the POST's (its id a string where the
// call's is a number, which the TypeScript SDK's client would match) is
// refused whatever it names, whether or not it would be read for
// anything else, and whether or not the strict parser can read it (a
// member given twice, invalid UTF-8, nesting past its depth), and the
// refusal carries the call's id, so that the client matches it to its
// call.
func TestReplyToAnotherRequestRefused(t *testing.T) {
	for _, result := range []string{
		`{"content":[]}`,
		`{"content":[],"isError":true}`,
		`{"content":[],"structuredContent":` + deepJSON + `}`,
		`{"content":[],"x":1,"x":2}`,
		"{\"content\":[{\"type\":\"text\",\"text\":\"\xff\"}]}",
	} {
		up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			message, _ := upstreamtest.ReadMessage(r)
			w.Header().Set("Content-Type", "application/json")
			switch message.Method {
			case "tools/list":
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]}}`, message.ID)
			case "tools/call":
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":"%s","result":%s}`, message.ID, result)
			}
		}))
		gw := serveGateway(t, libraryConfig(t), up.URL)
		got := post(t, gw.URL, http.Header{"Mcp-Protocol-Version": {"2025-11-25"}},
			`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
		resp := got.rpc(t)
		if got.status != http.StatusBadGateway || string(resp.ID) != "7" || resp.Error == nil ||
			!strings.Contains(resp.Error.Message, "it answered no request it was the reply to") {
			t.Errorf("result %s answering id \"7\": HTTP %d, %s; want 502 and an error for id 7 saying why", result, got.status, got.body)
		}
	}
}

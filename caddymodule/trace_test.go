package caddymodule_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpgate/mcpgate/internal/testwait"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// spans records the spans of the requests test_trace starts.
var spans = tracetest.NewSpanRecorder()

func init() {
	caddy.RegisterModule(testTrace{})
	httpcaddyfile.RegisterHandlerDirective("test_trace", func(httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		return testTrace{}, nil
	})
}

// testTrace starts a span for each request with a tracer provider that
// records in memory, as Caddy's tracing directive does with one that
// exports, so that tests read the spans the gateway adds.
type testTrace struct{}

func (testTrace) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.test_trace", New: func() caddy.Module { return testTrace{} }}
}

func (testTrace) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	ctx, span := provider.Tracer("test").Start(r.Context(), "request")
	defer span.End()
	return next.ServeHTTP(w, r.WithContext(ctx))
}

// TestTracing: in a traced request, each message gets a span named and
// attributed per the OpenTelemetry conventions for MCP, with the
// decision; a held call's wait is a span of its own; and the upstream gets
// the message's trace context.
func TestTracing(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{before: "route {\n\t\ttest_trace\n\t}", policy: callerTable})
	client := clientHandlers{action: "accept"}
	session := connectOver(t, &mcp.StreamableClientTransport{Endpoint: gateway}, client.options(), "2025-06-18")
	if text, _ := callText(t, session, "echo", "traced"); text != "echo:traced" {
		t.Fatalf("echo answered %q", text)
	}
	if text, _ := callText(t, session, "create_issue", "confirmed"); !strings.Contains(text, "create_issue:confirmed") {
		t.Fatalf("create_issue answered %q", text)
	}

	echo := findSpan(t, "tools/call echo")
	attrs := attributes(echo)
	for key, want := range map[attribute.Key]string{
		"mcp.method.name":         "tools/call",
		"gen_ai.tool.name":        "echo",
		"mcp.protocol.version":    "2025-06-18",
		"mcpgate.decision.action": "allow",
	} {
		if attrs[key] != want {
			t.Errorf("span %q: %s = %q, want %q", echo.Name(), key, attrs[key], want)
		}
	}
	if attrs["mcp.session.id"] == "" || attrs["jsonrpc.request.id"] == "" {
		t.Errorf("span %q lacks the session or the request id: %v", echo.Name(), attrs)
	}
	if !echo.Parent().IsValid() {
		t.Error("the message's span has no parent: it does not join the request's trace")
	}
	propagated := false
	for _, r := range up.Received() {
		if strings.Contains(string(r.Body), `"traced"`) && strings.Contains(r.Header.Get("Traceparent"), echo.SpanContext().SpanID().String()) {
			propagated = true
		}
	}
	if !propagated {
		t.Error("the upstream did not get the message's trace context")
	}

	// Each forwarded call has a span of its own, under its message's,
	// from its forwarding to its end, with what became of it (ended as
	// the handler finishes, perhaps after the client read the answer).
	toolCallSpan := func(from int, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
		t.Helper()
		var found sdktrace.ReadOnlySpan
		testwait.Until(t, 5*time.Second, func() string {
			for _, s := range spans.Ended()[from:] {
				if s.Name() == "mcpgate.tool_call" && match(s) {
					found = s
					return ""
				}
			}
			return "no such tool call span"
		})
		return found
	}
	ok := toolCallSpan(0, func(s sdktrace.ReadOnlySpan) bool { return s.Parent().SpanID() == echo.SpanContext().SpanID() })
	if a := attributes(ok); a["mcpgate.tool_call.outcome"] != "ok" || a["gen_ai.tool.name"] != "echo" || a["error.type"] != "" || ok.Status().Code == codes.Error {
		t.Errorf("echo's tool call span: %v, status %v; want outcome ok, no error", a, ok.Status())
	}
	before := len(spans.Ended())
	if res, err := session.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": 5}}); err != nil || !res.IsError {
		t.Fatalf("echo with a number: %v %v; want its schema's refusal, isError", res, err)
	}
	failed := toolCallSpan(before, func(s sdktrace.ReadOnlySpan) bool { return attributes(s)["mcpgate.tool_call.outcome"] == "tool_error" })
	if a := attributes(failed); a["gen_ai.tool.name"] != "echo" || a["error.type"] != "tool_error" || failed.Status().Code != codes.Error {
		t.Errorf("a failed call's span: %v, status %v; want echo's, error.type tool_error, status Error", a, failed.Status())
	}

	wait := findSpan(t, "mcpgate.confirmation.wait")
	create := findSpan(t, "tools/call create_issue")
	if wait.Parent().SpanID() != create.SpanContext().SpanID() || attributes(wait)["mcpgate.approval.outcome"] != "confirmed" {
		t.Errorf("the confirmation's wait: parent %s (want %s), outcome %q (want confirmed)",
			wait.Parent().SpanID(), create.SpanContext().SpanID(), attributes(wait)["mcpgate.approval.outcome"])
	}
}

// findSpan returns the span named name recorded last (the recorder is
// the process's: a test run again finds its own).
func findSpan(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	ended := spans.Ended()
	for i := len(ended) - 1; i >= 0; i-- {
		if ended[i].Name() == name {
			return ended[i]
		}
	}
	var names []string
	for _, s := range spans.Ended() {
		names = append(names, s.Name())
	}
	t.Fatalf("no span %q among %q", name, names)
	return nil
}

// attributes maps a span's attributes by key.
func attributes(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// TestRateLimitedSpan: a message a rate limit refused after the policy
// allowed it has a span that shows the refusal (block, status Error, the
// limit's text), as {mcp.decision.action} does.
func TestRateLimitedSpan(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{before: "route {\n\t\ttest_trace\n\t}", policy: openTable + `
		rate_limit {mcp.server}/{mcp.tool.name} 1/1h`})
	header := http.Header{"Mcp-Protocol-Version": {"2025-06-18"}}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"x"}}}`
	for i, want := range []bool{false, true} {
		if _, body := post(t, gateway, header, call); strings.Contains(string(body), "Rate limit") != want {
			t.Fatalf("call %d: %s; want rate limited: %t", i+1, body, want)
		}
	}
	span := findSpan(t, "tools/call create_issue")
	attrs := attributes(span)
	if attrs["mcpgate.decision.action"] != "block" || span.Status().Code != codes.Error || !strings.Contains(span.Status().Description, "Rate limit") ||
		!strings.Contains(fmt.Sprint(attrs["mcpgate.refusal"]), "Rate limit") {
		t.Errorf("the rate-limited call's span: action %v, refusal %v, status %v; want block, status Error and the limit's refusal",
			attrs["mcpgate.decision.action"], attrs["mcpgate.refusal"], span.Status())
	}
}

package gateway

import (
	"cmp"
	"context"
	"net/http"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// The gateway traces with the tracer provider of the span its host
// started for the request (in Caddy, the tracing directive's), so that
// its spans join the request's trace; without one, tracing costs nothing.
// Each decided message gets a span named and attributed as the
// OpenTelemetry semantic conventions for MCP say ("{mcp.method.name}
// {target}", mcp.method.name, gen_ai.tool.name, mcp.session.id,
// mcp.protocol.version, jsonrpc.request.id), plus the decision; a held
// call's wait for a decision is a span of its own, and so is a forwarded
// call, until it ends; and the trace context passed upstream is the
// message's.

// tracerName names the gateway's tracer.
const tracerName = "github.com/mcpgate/mcpgate/caddymodule/gateway"

// tracer is the tracer of the request's trace; a no-op one when the
// request is not traced.
func tracer(ctx context.Context) trace.Tracer {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName)
}

// maxSpanText bounds the span names and string attributes made of what a
// client or a policy wrote (a method, a tool name, a request id, a
// reason): they can be as long as a body, and telemetry back ends bill,
// and batch exporters drop, by size. OpenTelemetry's own attribute limit
// is off by default and never applies to span names.
const maxSpanText = 256

// bounded cuts s to maxSpanText bytes, at a rune boundary, marking the cut
// with an ellipsis.
func bounded(s string) string {
	if len(s) <= maxSpanText {
		return s
	}
	cut := maxSpanText - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// startMessageSpan starts the span of one message's decision.
func (x *exchange) startMessageSpan(input *policy.Input, id []byte) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(x.r.Context())
	if !parent.SpanContext().IsValid() {
		return x.r.Context(), parent
	}
	name := input.Method
	if input.Tool != nil {
		name += " " + input.Tool.Name
	}
	name = bounded(name)
	attrs := []attribute.KeyValue{
		attribute.String("mcp.method.name", bounded(input.Method)),
		attribute.String("mcp.protocol.version", input.ProtocolVersion),
		attribute.String("jsonrpc.protocol.version", "2.0"),
		attribute.String("mcpgate.direction", input.Direction),
	}
	if input.Session != "" {
		attrs = append(attrs, attribute.String("mcp.session.id", bounded(input.Session)))
	}
	if len(id) > 0 {
		attrs = append(attrs, attribute.String("jsonrpc.request.id", bounded(string(id))))
	}
	if input.Tool != nil {
		attrs = append(attrs, attribute.String("gen_ai.tool.name", bounded(input.Tool.Name)),
			attribute.String("gen_ai.operation.name", "execute_tool"))
	}
	return tracer(x.r.Context()).Start(x.r.Context(), name, trace.WithAttributes(attrs...))
}

// requestIn is the exchange's request in ctx: the request itself when
// ctx is its own, as it is when the message is not traced, since a copy
// would cost every message.
func (x *exchange) requestIn(ctx context.Context) *http.Request {
	if ctx == x.r.Context() {
		return x.r
	}
	return x.r.WithContext(ctx)
}

// endMessageSpans ends the spans of the exchange's messages, once their
// verdicts are final: the policy's decision, or the refusal that took its
// place (a rate limit's, a declined confirmation's). A span ended already
// is left.
func (x *exchange) endMessageSpans() {
	for i := range x.verdicts {
		v := &x.verdicts[i]
		if v.openSpan != nil {
			endMessageSpan(v.openSpan, *v)
			v.openSpan = nil
		}
	}
}

// endMessageSpan records the verdict on the span, and ends it.
func endMessageSpan(span trace.Span, v verdict) {
	if !span.IsRecording() {
		return
	}
	d, elapsed := v.decision, v.evaluated
	if v.text != "" {
		span.SetAttributes(attribute.String("mcpgate.refusal", bounded(v.text)))
	}
	span.SetAttributes(
		attribute.String("mcpgate.decision.action", string(d.Action)),
		attribute.String("mcpgate.decision.reason", bounded(d.Reason)),
		attribute.Bool("mcpgate.decision.cached", d.Cached),
		attribute.Float64("mcpgate.decision.evaluation_seconds", elapsed.Seconds()),
		attribute.String("mcpgate.policy.revision", d.Revision),
	)
	if d.Action == policy.ActionBlock {
		span.SetStatus(codes.Error, bounded(cmp.Or(v.text, d.Reason)))
	}
	span.End()
}

// startWaitSpan starts the span of a call's wait for approval, under its
// message's span.
func (x *exchange) startWaitSpan(v verdict, name string) trace.Span {
	ctx := trace.ContextWithSpanContext(x.r.Context(), v.span)
	_, span := tracer(x.r.Context()).Start(ctx, name)
	return span
}

// endWaitSpan records how the wait ended, and ends it.
func endWaitSpan(span trace.Span, outcome, approvalID string) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("mcpgate.approval.outcome", outcome))
	if approvalID != "" {
		span.SetAttributes(attribute.String("mcpgate.approval.id", approvalID))
	}
	span.End()
}

// startToolCallSpan starts the span of the forwarded call of v, a child
// of its message's span, named mcpgate.tool_call; nil when the request is
// not traced (t nil, or without a tracer).
func (t *callTrail) startToolCallSpan(v verdict) trace.Span {
	if t == nil || t.tracer == nil || !v.span.IsValid() {
		return nil
	}
	ctx := trace.ContextWithSpanContext(context.Background(), v.span)
	_, span := t.tracer.Start(ctx, "mcpgate.tool_call", trace.WithAttributes(
		attribute.String("gen_ai.tool.name", bounded(v.message.Tool.Name)),
		attribute.String("jsonrpc.request.id", bounded(string(v.message.ID))),
	))
	return span
}

// endToolCallSpan records how a forwarded call ended (its outcome, and
// as error.type when it is not ok; status Error when the call failed),
// and ends its span at at.
func endToolCallSpan(span trace.Span, outcome toolOutcome, at time.Time) {
	if span == nil || !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("mcpgate.tool_call.outcome", string(outcome)))
	if outcome != toolOK {
		span.SetAttributes(attribute.String("error.type", string(outcome)))
	}
	if outcome == toolError || outcome == rpcError || outcome == toolFailed {
		span.SetStatus(codes.Error, string(outcome))
	}
	span.End(trace.WithTimestamp(at))
}

// propagateTrace passes the trace context of the message forwarded (the
// first allowed one) upstream, in place of the request's.
func (x *exchange) propagateTrace(r *http.Request) {
	for _, v := range x.verdicts {
		if v.allowed() && v.span.IsValid() {
			ctx := trace.ContextWithSpanContext(r.Context(), v.span)
			propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(r.Header))
			return
		}
	}
}

package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// TestForgetLeavesALaterRequest: a POST that failed takes out of those
// awaited only the requests it recorded, not a later request that took
// the same id once the first was answered.
func TestForgetLeavesALaterRequest(t *testing.T) {
	s := newLegacyStream(func([]byte) error { return nil })
	call := func(text string) []verdict {
		return []verdict{{
			message:  &mcpmsg.Message{Kind: mcpmsg.KindRequest, ID: []byte("1"), Method: "tools/call", Params: map[string]any{"name": "echo", "arguments": map[string]any{"text": text}}},
			decision: policy.Decision{Action: policy.ActionAllow},
		}}
	}
	first, err := s.expectAnswers(call("A"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.take([]byte("1")); !ok {
		t.Fatal("call A was not awaited")
	}
	if _, err := s.expectAnswers(call("B"), 0, nil); err != nil {
		t.Fatal(err)
	}
	s.forget(first, true) // A's POST failed after its answer came
	request, ok := s.take([]byte("1"))
	want, _ := call("B")[0].answered().paramsDigest()
	if got, _ := request.paramsDigest(); !ok || got != want {
		t.Errorf("after A's POST failed, id 1 awaits %+v (%v); want call B", request, ok)
	}
}

// TestLegacyUnansweredCallsCounted: on an HTTP+SSE session a tool call
// whose answer will not come is counted once, as failed, however it is
// given up (its POST failed, the session's stream ended, the session
// forgot it past its bound), or as cancelled when its client cancelled
// it; a call answered before its POST failed is not counted again.
func TestLegacyUnansweredCallsCounted(t *testing.T) {
	registry := prometheus.NewRegistry()
	all, err := NewMetrics(registry)
	if err != nil {
		t.Fatal(err)
	}
	metrics := all.of("test")
	s := newLegacyStream(func([]byte) error { return nil })
	s.metrics = &metrics
	call := func(id string) []verdict {
		return []verdict{{
			message:  &mcpmsg.Message{Kind: mcpmsg.KindRequest, ID: []byte(id), Method: "tools/call", Params: map[string]any{"name": "echo"}, Tool: &mcpmsg.ToolCall{Name: "echo"}},
			decision: policy.Decision{Action: policy.ActionAllow},
		}}
	}
	expect := func(verdicts []verdict) map[string]uint64 {
		t.Helper()
		recorded, err := s.expectAnswers(verdicts, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		return recorded
	}
	failedPOST := expect(call("1"))
	answered := expect(call("2"))
	if _, ok := s.take([]byte("2")); !ok {
		t.Fatal("call 2 was not awaited")
	}
	s.forget(failedPOST, true)
	s.forget(answered, true)
	expect(call("1")) // an id retired: a call of its own, counted all the same
	expect(call("3"))
	expect([]verdict{{
		message:  &mcpmsg.Message{Kind: mcpmsg.KindNotification, Method: "notifications/cancelled", Params: map[string]any{"requestId": json.Number("3")}},
		decision: policy.Decision{Action: policy.ActionAllow},
	}})
	for i := range maxInFlight + 1 {
		expect(call(fmt.Sprint(100 + i)))
	}
	s.endWith("gone")
	counts := map[string]float64{}
	for outcome, want := range map[toolOutcome]float64{toolFailed: 2 + maxInFlight + 1, toolCancelled: 1, toolOK: 0} {
		counts[string(outcome)] = testutil.ToFloat64(all.toolCalls.WithLabelValues("test", "echo", string(outcome)))
		if counts[string(outcome)] != want {
			t.Errorf("%s: counted %v; want %v", outcome, counts[string(outcome)], want)
		}
	}
}

// TestLegacyCallsEndedWithTheStream: on an HTTP+SSE session, the tool
// calls awaiting their answers when the stream ends are each counted and
// recorded in the audit trail once: as cancelled when the client went
// away (its stream's request ended), as failed when the stream ended
// otherwise, whether or not the client could still be told.
func TestLegacyCallsEndedWithTheStream(t *testing.T) {
	tests := []struct {
		name     string
		clientGo bool
		writeErr error
		want     toolOutcome
	}{
		{"the client gone", true, nil, toolCancelled},
		{"the stream ended, the client told", false, nil, toolFailed},
		{"the stream ended, the client unreachable", false, errStreamEnded, toolFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			registry := prometheus.NewRegistry()
			all, err := NewMetrics(registry)
			if err != nil {
				t.Fatal(err)
			}
			metrics := all.of("test")
			core, audited := observer.New(zapcore.InfoLevel)
			recorder := tracetest.NewSpanRecorder()
			tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder)).Tracer("test")
			_, message := tracer.Start(context.Background(), "tools/call echo")
			trail := &callTrail{logger: zap.New(core), tracer: tracer}
			s := newLegacyStream(func([]byte) error { return tt.writeErr })
			s.metrics = &metrics
			for _, id := range []string{"1", "2", "3"} {
				if _, err := s.expectAnswers([]verdict{{
					message:  &mcpmsg.Message{Kind: mcpmsg.KindRequest, ID: []byte(id), Method: "tools/call", Params: map[string]any{"name": "echo"}, Tool: &mcpmsg.ToolCall{Name: "echo"}},
					decision: policy.Decision{Action: policy.ActionAllow},
					span:     message.SpanContext(),
				}}, 0, trail); err != nil {
					t.Fatal(err)
				}
			}
			if tt.clientGo {
				s.end()
			}
			s.endWith("gone")
			s.endWith("gone again")
			if got := testutil.ToFloat64(all.toolCalls.WithLabelValues("test", "echo", string(tt.want))); got != 3 {
				t.Errorf("counted %v calls %s; want 3", got, tt.want)
			}
			var ids []string
			for _, entry := range audited.FilterMessage("tool call ended").AllUntimed() {
				fields := entry.ContextMap()
				ids = append(ids, fmt.Sprint(fields["id"]))
				if fields["outcome"] != string(tt.want) {
					t.Errorf("call %v recorded %v; want %s", fields["id"], fields["outcome"], tt.want)
				}
			}
			if strings.Join(ids, ",") != "1,2,3" {
				t.Errorf("recorded the ends of %q; want 1, 2 and 3 once each", ids)
			}
			var traced []string
			for _, span := range recorder.Ended() {
				for _, a := range span.Attributes() {
					if a.Key == "mcpgate.tool_call.outcome" && span.Parent().SpanID() == message.SpanContext().SpanID() {
						traced = append(traced, a.Value.AsString())
					}
				}
			}
			if want := strings.Repeat(string(tt.want)+",", 3); strings.Join(traced, ",")+"," != want {
				t.Errorf("tool call spans ended as %q; want three, %s", traced, tt.want)
			}
		})
	}
}

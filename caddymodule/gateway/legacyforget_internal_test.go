package gateway

import (
	"testing"

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
	first, err := s.expectAnswers(call("A"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.take([]byte("1")); !ok {
		t.Fatal("call A was not awaited")
	}
	if _, err := s.expectAnswers(call("B"), 0); err != nil {
		t.Fatal(err)
	}
	s.forget(first, true) // A's POST failed after its answer came
	request, ok := s.take([]byte("1"))
	want, _ := call("B")[0].answered().paramsDigest()
	if got, _ := request.paramsDigest(); !ok || got != want {
		t.Errorf("after A's POST failed, id 1 awaits %+v (%v); want call B", request, ok)
	}
}

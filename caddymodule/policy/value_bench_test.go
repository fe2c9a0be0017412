package policy

import "testing"

// BenchmarkInputValue measures building the input document for a typical
// tools/call.
func BenchmarkInputValue(b *testing.B) {
	arguments := map[string]any{"text": "hello", "repo": "acme/widgets"}
	in := &Input{
		Kind: "request", Method: "tools/call", Direction: DirectionClientToServer,
		Params:          map[string]any{"name": "echo", "arguments": arguments},
		Tool:            &Tool{Name: "echo", Arguments: arguments, Annotations: map[string]any{"readOnlyHint": true}, Category: "read_only"},
		Server:          "tracker",
		ProtocolVersion: "2025-06-18",
		Request: Request{RemoteIP: "127.0.0.1", Host: "127.0.0.1:8080", Path: "/mcp", Headers: map[string]string{
			"accept": "application/json, text/event-stream", "content-type": "application/json",
			"mcp-protocol-version": "2025-06-18", "user-agent": "Go-http-client/1.1", "content-length": "293",
		}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.Value(); err != nil {
			b.Fatal(err)
		}
	}
}

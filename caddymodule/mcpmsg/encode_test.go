package mcpmsg

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeJSON decodes data with encoding/json, numbers as json.Number, failing
// t when data is not valid JSON.
func decodeJSON(t *testing.T, data []byte) any {
	t.Helper()
	if !json.Valid(data) {
		t.Fatalf("output %q is not valid JSON", data)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decoding %q: %v", data, err)
	}
	return v
}

func TestErrorResponse(t *testing.T) {
	tests := []struct {
		name    string
		id      []byte
		code    int
		message string
		want    map[string]any
	}{
		{
			name: "number id", id: []byte(`7`), code: CodeInvalidRequest, message: "bad request",
			want: map[string]any{"jsonrpc": "2.0", "id": 7.0, "error": map[string]any{"code": -32600.0, "message": "bad request"}},
		},
		{
			name: "string id kept raw", id: []byte(`"a\u0062c"`), code: CodeMethodNotFound, message: "no such method",
			want: map[string]any{"jsonrpc": "2.0", "id": "abc", "error": map[string]any{"code": -32601.0, "message": "no such method"}},
		},
		{
			name: "nil id is null", id: nil, code: CodeParseError, message: "empty body",
			want: map[string]any{"jsonrpc": "2.0", "id": nil, "error": map[string]any{"code": -32700.0, "message": "empty body"}},
		},
		{
			name: "message is escaped", id: []byte(`1`), code: CodeInternalError, message: "quote \" backslash \\ newline \n bad \xff",
			want: map[string]any{"jsonrpc": "2.0", "id": 1.0, "error": map[string]any{"code": -32603.0, "message": "quote \" backslash \\ newline \n bad \uFFFD"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeJSON(t, ErrorResponse(tt.id, tt.code, tt.message))
			if !reflect.DeepEqual(got, any(tt.want)) {
				t.Errorf("ErrorResponse decodes to %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestToolErrorResult(t *testing.T) {
	tests := []struct {
		name string
		id   []byte
		text string
		want map[string]any
	}{
		{
			name: "denied", id: []byte(`"call-1"`), text: `tool "delete_issue" denied by policy`,
			want: map[string]any{"jsonrpc": "2.0", "id": "call-1", "result": map[string]any{
				"content": []any{map[string]any{"type": "text", "text": `tool "delete_issue" denied by policy`}},
				"isError": true,
			}},
		},
		{
			name: "number id and unicode text", id: []byte(`12`), text: "refusé <b>",
			want: map[string]any{"jsonrpc": "2.0", "id": 12.0, "result": map[string]any{
				"content": []any{map[string]any{"type": "text", "text": "refusé <b>"}},
				"isError": true,
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeJSON(t, ToolErrorResult(tt.id, tt.text))
			if !reflect.DeepEqual(got, any(tt.want)) {
				t.Errorf("ToolErrorResult decodes to %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestBatchResponse(t *testing.T) {
	first := ErrorResponse([]byte(`1`), CodeInvalidRequest, "bad")
	second := ToolErrorResult([]byte(`2`), "denied")
	tests := []struct {
		name      string
		responses [][]byte
		want      string
	}{
		{"none", nil, `[]`},
		{"one", [][]byte{first}, "[" + string(first) + "]"},
		{"two", [][]byte{first, second}, "[" + string(first) + "," + string(second) + "]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := BatchResponse(tt.responses)
			if string(got) != tt.want {
				t.Errorf("BatchResponse = %s, want %s", got, tt.want)
			}
			decodeJSON(t, got)
		})
	}
}

// TestEncodedResponsesParse checks that the encoders produce responses that
// Parse itself accepts, with the id they were given.
func TestEncodedResponsesParse(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		id   string
	}{
		{"error response", ErrorResponse([]byte(`"x"`), CodeInvalidParams, "bad params"), `"x"`},
		{"error response with null id", ErrorResponse(nil, CodeParseError, "bad"), `null`},
		{"tool error result", ToolErrorResult([]byte(`5`), "denied"), `5`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := Parse(tt.data, Limits{})
			if err != nil {
				t.Fatalf("Parse(%s) failed: %v", tt.data, err)
			}
			if m := body.Messages[0]; m.Kind != KindResponse || string(m.ID) != tt.id {
				t.Errorf("Parse(%s) = %v with id %s, want response with id %s", tt.data, m.Kind, m.ID, tt.id)
			}
		})
	}
}

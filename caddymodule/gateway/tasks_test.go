package gateway_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
)

// TestCreatedTask reads the task a tools/call result creates, in both
// shapes MCP has for it, and refuses member names a loose reader would
// take for them.
func TestCreatedTask(t *testing.T) {
	tests := []struct {
		name, result, want string
		wantErr            bool
	}{
		{"2025-11-25", `{"task":{"taskId":"t-1","status":"working"}}`, "t-1", false},
		{"the 2026-07-28 extension", `{"resultType":"task","taskId":"t-2","status":"working"}`, "t-2", false},
		{"a tool's result", `{"content":[{"type":"text","text":"taskId"}]}`, "", false},
		{"a complete result naming a task id", `{"resultType":"complete","taskId":"t-3"}`, "", false},
		{"task in another case", `{"Task":{"taskId":"t-4"}}`, "", true},
		{"taskId in two cases", `{"task":{"taskId":"t-5","TaskId":"t-6"}}`, "", true},
		{"a task id that is not a string", `{"task":{"taskId":7}}`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := gateway.CreatedTask([]byte(tt.result))
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("CreatedTask(%s) = %q, %v; want %q, error %v", tt.result, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

package mcpmsg

import (
	"slices"
	"testing"
)

func TestCheckClientRequestMethod(t *testing.T) {
	if !slices.IsSorted(ClientRequestMethods) {
		t.Fatal("ClientRequestMethods is not sorted")
	}
	tests := []struct {
		method string
		ok     bool
	}{
		{"tools/call", true},
		{"resources/templates/list", true},
		{"initialize", true},
		{"tasks/update", true},
		{"acme/search", true},
		{"acme/tools/call", true},
		{"tools/cal", false},
		{"tools/Call", false},
		{"Tools/call", false},
		{"TOOLS/CALL", false},
		{"notifications/cancelled", false},
		{"sampling/createMessage", false},
		{"toolscall", false},
		{"", false},
		{"/call", false},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			if err := CheckClientRequestMethod(tt.method); (err == nil) != tt.ok {
				t.Errorf("CheckClientRequestMethod(%q) = %v, want ok %v", tt.method, err, tt.ok)
			}
		})
	}
}

// TestCheckNotifications: a message without an id whose method MCP
// defines as a request, in any case, is refused; notifications, and
// extensions' messages, pass.
func TestCheckNotifications(t *testing.T) {
	for body, wantErr := range map[string]bool{
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`:                                                   false,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`:                            false,
		`{"jsonrpc":"2.0","method":"acme/changed"}`:                                                                false,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`:                                     false,
		`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}`:                                            true,
		`{"jsonrpc":"2.0","method":"Tools/Call","params":{"name":"x"}}`:                                            true,
		`{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"file:///x"}}`:                                 true,
		`{"jsonrpc":"2.0","method":"ping"}`:                                                                        true,
		`{"jsonrpc":"2.0","method":"Initialize","params":{}}`:                                                      true,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}]`: true,
	} {
		parsed, err := Parse([]byte(body), Limits{})
		if err != nil {
			t.Fatalf("Parse(%s): %v", body, err)
		}
		if got := parsed.CheckNotifications(); (got != nil) != wantErr {
			t.Errorf("CheckNotifications(%s) = %v; want an error: %v", body, got, wantErr)
		}
	}
}

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

package gateway

import "testing"

// TestCheckedHost: a Host goes on as every reader reads it (in lower
// case, an IPv6 address written as netip writes it), or is refused.
func TestCheckedHost(t *testing.T) {
	tests := []struct {
		host, want string // want "": refused (but for an empty Host)
	}{
		{"", ""},
		{"public.example", "public.example"},
		{"PUBLIC.Example:8080", "public.example:8080"},
		{"localhost", "localhost"},
		{"127.0.0.1:443", "127.0.0.1:443"},
		{"[::1]", "[::1]"},
		{"[::FFFF:7f00:1]:8080", "[::ffff:127.0.0.1]:8080"},
		{"[2001:DB8:0:0::1]:443", "[2001:db8::1]:443"},
		{"public.example.", ""},
		{"[public.example]:80", ""},
		{"public.example:80:80", ""},
		{"public.example:0", ""},
		{"127.1", ""},
		{"0x7f000001", ""},
		{"[fe80::1%25eth0]", ""},
		{"bücher.example", ""},
	}
	for _, tt := range tests {
		got, err := checkedHost(tt.host)
		if got != tt.want || (err == nil) != (tt.want != "" || tt.host == "") {
			t.Errorf("checkedHost(%q) = %q, %v; want %q", tt.host, got, err, tt.want)
		}
	}
}

package mcphttp

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCheckHeaders(t *testing.T) {
	call := BodyFacts{IsRequest: true, Method: "tools/call", Params: map[string]any{"name": "echo"}}
	read := BodyFacts{IsRequest: true, Method: "resources/read", Params: map[string]any{"uri": "file:///a"}}
	tests := []struct {
		name    string
		header  http.Header
		version string
		body    BodyFacts
		wantErr string
	}{
		{"no headers before 2026", http.Header{}, Version20251125, call, ""},
		{"agreeing headers before 2026", http.Header{HeaderMethod: {"tools/call"}, HeaderName: {"echo"}}, Version20251125, call, ""},
		{"disagreeing name before 2026", http.Header{HeaderName: {"other"}}, Version20251125, call, "does not match"},
		{"required under 2026", http.Header{}, Version20260728, call, "missing required Mcp-Method"},
		{"name required under 2026", http.Header{HeaderMethod: {"tools/call"}}, Version20260728, call, "missing required Mcp-Name"},
		{"complete under 2026", http.Header{HeaderMethod: {"tools/call"}, HeaderName: {"echo"}}, Version20260728, call, ""},
		{"resource uri", http.Header{HeaderMethod: {"resources/read"}, HeaderName: {"file:///a"}}, Version20260728, read, ""},
		{"base64 name", http.Header{HeaderMethod: {"tools/call"}, HeaderName: {"=?base64?ZWNobw==?="}}, Version20260728, call, ""},
		{"malformed base64", http.Header{HeaderMethod: {"tools/call"}, HeaderName: {"=?base64?!!?="}}, Version20260728, call, "malformed"},
		{"name for a method that names nothing", http.Header{HeaderMethod: {"ping"}, HeaderName: {"x"}}, Version20260728, BodyFacts{IsRequest: true, Method: "ping"}, "names nothing"},
		{"notification needs no headers", http.Header{}, Version20260728, BodyFacts{Method: "notifications/initialized"}, ""},
		{"version header disagrees with _meta", http.Header{HeaderProtocolVersion: {Version20251125}, HeaderMethod: {"tools/call"}, HeaderName: {"echo"}},
			Version20260728, BodyFacts{IsRequest: true, Method: "tools/call", Params: map[string]any{"name": "echo"}, ProtocolVersion: Version20260728}, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHeaders(tt.header, tt.version, tt.body)
			if tt.wantErr == "" && err != nil {
				t.Errorf("CheckHeaders = %v, want no error", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("CheckHeaders = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestOriginPolicy(t *testing.T) {
	loopback := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	public := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 443}
	lan := &net.TCPAddr{IP: net.IPv4(192, 168, 1, 5), Port: 8080}
	tests := []struct {
		name    string
		policy  OriginPolicy
		local   net.Addr
		tls     bool
		host    string
		origin  string // header lines apart by "\n"
		allowed bool
	}{
		{"no origin", OriginPolicy{}, public, true, "gw.example.com", "", true},
		{"loopback origin on loopback", OriginPolicy{}, loopback, false, "127.0.0.1:8080", "http://localhost:3000", true},
		{"rebinding on loopback", OriginPolicy{}, loopback, false, "evil.example:8080", "http://evil.example:8080", false},
		{"same origin on a public site", OriginPolicy{}, public, true, "gw.example.com", "https://gw.example.com", true},
		{"rebinding on a plain-HTTP site off loopback", OriginPolicy{}, lan, false, "rebind.evil.example:8080", "http://rebind.evil.example:8080", false},
		{"same origin by IP on a plain-HTTP site", OriginPolicy{}, lan, false, "192.168.1.5:8080", "http://192.168.1.5:8080", true},
		{"an https origin behind a TLS-terminating proxy", OriginPolicy{}, lan, false, "app.example.com", "https://app.example.com", true},
		{"same origin by IPv6 on a plain-HTTP site", OriginPolicy{}, lan, false, "[fd00::5]:8080", "http://[fd00::5]:8080", true},
		{"configured origin on a plain-HTTP site", OriginPolicy{Allowed: []string{"http://app.example.com:8080"}}, lan, false, "gw.lan:8080", "http://app.example.com:8080", true},
		{"foreign origin on a public site", OriginPolicy{}, public, true, "gw.example.com", "https://evil.example", false},
		{"configured origin", OriginPolicy{Allowed: []string{"https://app.example.com"}}, public, true, "gw.example.com", "https://app.example.com", true},
		{"configured list excludes others", OriginPolicy{Allowed: []string{"https://app.example.com"}}, loopback, false, "127.0.0.1", "http://localhost", false},
		{"wildcard", OriginPolicy{Allowed: []string{"*"}}, public, true, "gw.example.com", "https://any.example", true},
		{"null origin", OriginPolicy{}, public, true, "gw.example.com", "null", false},
		{"an empty origin, then a foreign one", OriginPolicy{}, loopback, false, "127.0.0.1:8080", "\nhttp://evil.example", false},
		{"a loopback origin, then a foreign one", OriginPolicy{}, loopback, false, "127.0.0.1:8080", "http://localhost\nhttp://evil.example", false},
		{"an origin given twice, any allowed", OriginPolicy{Allowed: []string{"*"}}, public, true, "gw.example.com", "https://a.example\nhttps://a.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://"+tt.host+"/mcp", nil)
			r.Host = tt.host
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tt.origin != "" {
				r.Header["Origin"] = strings.Split(tt.origin, "\n")
			}
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, tt.local))
			if err := tt.policy.Check(r); (err == nil) != tt.allowed {
				t.Errorf("Check = %v, want allowed %v", err, tt.allowed)
			}
		})
	}
}

func TestVersions(t *testing.T) {
	for _, v := range SupportedVersions {
		if err := CheckVersion(v); err != nil {
			t.Errorf("CheckVersion(%s) = %v", v, err)
		}
	}
	if err := CheckVersion(Version20241105); err != nil {
		t.Errorf("CheckVersion(2024-11-05) = %v: the SDKs speak it over Streamable HTTP", err)
	}
	if LatestVersion != SupportedVersions[len(SupportedVersions)-1] {
		t.Errorf("LatestVersion = %s, want the newest supported, %s", LatestVersion, SupportedVersions[len(SupportedVersions)-1])
	}
	if CheckVersion("2024-10-07") == nil || CheckVersion("") == nil {
		t.Error("CheckVersion accepted an unsupported revision")
	}
	if !BatchesAllowed(Version20250326) || BatchesAllowed(Version20250618) || BatchesAllowed(Version20241105) {
		t.Error("batches are allowed in 2025-03-26 only")
	}
	for _, v := range LegacySSEVersions {
		if err := CheckLegacySSEVersion(v); err != nil {
			t.Errorf("CheckLegacySSEVersion(%s) = %v", v, err)
		}
	}
	if CheckLegacySSEVersion("2024-10-07") == nil || CheckLegacySSEVersion("") == nil {
		t.Error("CheckLegacySSEVersion accepted a revision not spoken over HTTP+SSE")
	}
}

func TestContentCoding(t *testing.T) {
	tests := []struct {
		header  []string
		want    string
		encoded bool
	}{
		{nil, "", false},
		{[]string{"identity"}, "", false},
		{[]string{"IDENTITY, identity", " "}, "", false},
		{[]string{"gzip"}, "gzip", true},
		{[]string{"identity, br"}, "br", true},
		{[]string{"identity", "x-custom"}, "x-custom", true},
	}
	for _, tt := range tests {
		got, encoded := ContentCoding(http.Header{"Content-Encoding": tt.header})
		if got != tt.want || encoded != tt.encoded {
			t.Errorf("ContentCoding(%q) = %q, %v; want %q, %v", tt.header, got, encoded, tt.want, tt.encoded)
		}
	}
}

// TestHeaderText: a standard header's value goes as it is when it is
// printable ASCII, and base64-encoded otherwise, as CheckHeaders reads
// it back.
func TestHeaderText(t *testing.T) {
	for _, tt := range []struct{ value, want string }{
		{"search_issues", "search_issues"},
		{"café", "=?base64?Y2Fmw6k=?="},
		{" padded", "=?base64?IHBhZGRlZA==?="},
		{"=?base64?x?=", "=?base64?PT9iYXNlNjQ/eD89?="},
		{"a\tb", "=?base64?YQli?="},
	} {
		got := HeaderText(tt.value)
		if got != tt.want {
			t.Errorf("HeaderText(%q) = %q; want %q", tt.value, got, tt.want)
		}
		header := http.Header{HeaderName: {got}}
		if err := CheckHeaders(header, Version20251125, BodyFacts{Method: "tools/call", Params: map[string]any{"name": tt.value}, IsRequest: true}); err != nil {
			t.Errorf("CheckHeaders with %q for %q: %v", got, tt.value, err)
		}
	}
}

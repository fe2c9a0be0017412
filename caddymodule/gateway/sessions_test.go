package gateway

import (
	"strings"
	"testing"
)

// TestSealedCaller: a sealed caller names the caller's id in its realm,
// so that one id of two realms seals apart, and the id reads back whatever
// the realm holds (colons, digits); an anonymous caller seals as "".
func TestSealedCaller(t *testing.T) {
	tests := []struct {
		realm, caller string
	}{
		{`jwt issuer "https://idp.example"`, "alice"},
		{`jwt issuer "https://idp.example:8443/x"`, "alice:admin"},
		{"", "alice"},
		{"caddy \"http.auth.user.id\"", "12:x:y"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		k := sessionKey{realm: tt.realm, caller: tt.caller}
		sealed := k.sealedCaller()
		if seen[sealed] {
			t.Errorf("%q of %q seals as %q, as another caller does", tt.caller, tt.realm, sealed)
		}
		seen[sealed] = true
		if got := sealedCallerID(sealed); got != tt.caller {
			t.Errorf("sealedCallerID(%q) = %q, want %q", sealed, got, tt.caller)
		}
	}
	if got := (sessionKey{realm: "r"}).sealedCaller(); got != "" {
		t.Errorf("an anonymous caller seals as %q, want \"\"", got)
	}
	for _, old := range []string{"alice", "3:ab", "x:y:z"} {
		if got := sealedCallerID(old); got != old {
			t.Errorf("sealedCallerID(%q) of a caller sealed without a realm = %q, want it as it is", old, got)
		}
	}
}

// TestSessionShown: an HTTP+SSE session is shown by a digest of its
// endpoint, which holds the upstream's session id; a Streamable HTTP
// session by the upstream's id, which reaches nothing through the gateway.
func TestSessionShown(t *testing.T) {
	legacy := sessionKey{legacy: true, id: "/messages?sessionId=SECRETSECRETSECRET"}
	if shown := legacy.shown(); !strings.HasPrefix(shown, "sse-") || strings.Contains(shown, "SECRET") {
		t.Errorf("HTTP+SSE session shown as %q, want a digest", shown)
	}
	if shown := (sessionKey{id: "abc"}).shown(); shown != "abc" {
		t.Errorf("Streamable HTTP session shown as %q, want its id", shown)
	}
}

// TestSessionSecrets: the values of an endpoint that may name its session
// upstream are its long query values, or its path's last segment when it
// has no query; short values (a page, a flag) are not.
func TestSessionSecrets(t *testing.T) {
	tests := []struct {
		endpoint string
		want     []string
	}{
		{"/messages?sessionId=0123456789abcdef0123", []string{"0123456789abcdef0123"}},
		{"/messages?sessionId=0123456789abcdef0123&page=1", []string{"0123456789abcdef0123"}},
		{"/messages/0123456789abcdef0123", []string{"0123456789abcdef0123"}},
		{"/messages?", nil},
		{"/messages?x=short", nil},
	}
	for _, tt := range tests {
		if got := sessionSecrets(tt.endpoint); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("sessionSecrets(%q) = %q, want %q", tt.endpoint, got, tt.want)
		}
	}
}

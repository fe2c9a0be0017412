package gateway

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
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

// TestSessionIDSpellings: a request carrying an open HTTP+SSE session's
// UUID id in any spelling a server may accept (Python's uuid.UUID(hex=...)
// reads case, hyphens, braces, urn:uuid:, surrounding space, a sign, a 0x
// prefix and underscores, and any Unicode decimal digit as its value: a
// fullwidth or Arabic-Indic spelling posted into the session until
// 2026-12-03's evening, found by an acceptance run) is known to carry it,
// and so is one of 32 characters with a code point Go's Unicode tables do
// not assign (a later Python may read it as a digit); another UUID is not.
func TestSessionIDSpellings(t *testing.T) {
	const id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	// digitsFrom spells id's digits from zero, the digit 0 of a script.
	digitsFrom := func(zero rune) string {
		return strings.Map(func(r rune) rune {
			if '0' <= r && r <= '9' {
				return zero + r - '0'
			}
			return r
		}, id)
	}
	ls := &legacyStreams{streams: make(map[sessionKey]*legacyStream), secrets: make(map[string]int)}
	session := sessionKey{legacy: true, id: "/messages/?session_id=" + id}
	ls.open(session, &legacyStream{})
	carried := []string{
		id,
		strings.ToUpper(id),
		"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		"{0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0}",
		"urn:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
		"0f1e2d3c4buuid:5a69788796a5b4c3d2e1f0",
		" f1e2d3c4b5a69788796a5b4c3d2e1f0",
		"+f1e2d3c4b5a69788796a5b4c3d2e1f0",
		digitsFrom('０'),          // fullwidth
		digitsFrom('\u0660'),     // Arabic-Indic
		digitsFrom('\U0001D7CE'), // mathematical bold
		"\u3000" + id[1:],        // an ideographic space
		"\u00a0" + id[1:],        // a no-break space
	}
	for _, spelling := range carried {
		if value, ok, _ := uuidValue(spelling); !ok || value != id {
			t.Errorf("uuidValue(%q) = %q, %v; want %s", spelling, value, ok, id)
		}
	}
	carried = append(carried, "\U000E0080"+id[1:]) // unassigned
	for _, other := range []string{"\x1c" + id[1:], "Ａ" + id[1:]} {
		// What int() does not read (an information separator, a
		// fullwidth letter).
		if value, ok, unsure := uuidValue(other); ok || unsure {
			t.Errorf("uuidValue(%q) = %q, %v, %v; want no UUID", other, value, ok, unsure)
		}
	}
	for _, spelling := range carried {
		u := &url.URL{Path: "/messages/", RawQuery: url.Values{"Session_ID": {spelling}}.Encode()}
		if !ls.carriesOpenSession(u) {
			t.Errorf("a request with session_id %q does not carry the open session", spelling)
		}
	}
	// Where Go's query parser reads nothing (it drops a pair holding a
	// semicolon), or reads a name, as other servers may.
	// A raw byte 0xA0 or 0x85, which Starlette decodes as Latin-1 (a
	// space to Python's int()).
	for _, query := range []string{"x=1;session_id=" + id, "session_id=" + id + ";x=1", "a=%zz&" + id,
		"session_id=\xa0" + id[1:], "session_id=" + id[1:] + "\x85",
		// A raw byte and an escaped digit of another script, as
		// Starlette reads them together (Latin-1 first, then the escapes
		// as UTF-8); found by a review.
		"session_id=\xa0f%D9%A1e2d3c4b5a69788796a5b4c3d2e1f0", "session_id=\x85f%D9%A1e2d3c4b5a69788796a5b4c3d2e1f0"} {
		if !ls.carriesOpenSession(&url.URL{Path: "/messages/", RawQuery: query}) {
			t.Errorf("a request with the query %q does not carry the open session", query)
		}
	}
	// A "0x" prefix and an underscore, for an id of three leading zeros.
	if value, ok, _ := uuidValue("0x1e2d3c4b5a6978_8796a5b4c3d2e1f"); !ok || value != "0001e2d3c4b5a69788796a5b4c3d2e1f" {
		t.Errorf("uuidValue of a 0x spelling = %q, %v", value, ok)
	}
	for _, other := range []string{"1f1e2d3c4b5a69788796a5b4c3d2e1f0", "0f1e2d3c", "not a uuid at all, but long"} {
		if ls.carriesOpenSession(&url.URL{Path: "/messages/", RawQuery: "session_id=" + url.QueryEscape(other)}) {
			t.Errorf("a request with session_id %q carries the open session", other)
		}
	}
	ls.close(session, ls.streams[session])
	if ls.carriesOpenSession(&url.URL{Path: "/messages/", RawQuery: "session_id=" + id}) || len(ls.secrets) != 0 {
		t.Errorf("after the stream closed, its id is still known (%v)", ls.secrets)
	}
}

// TestRelayedRequestsBoundedPerCaller: another caller's sessions, however
// many, never make the gateway forget a session's unanswered request (an
// elicitation waiting on a person): past the bounds, a new session's
// request is not tracked instead, one caller reaching its own bound
// first; sessions whose requests expired make room again.
func TestRelayedRequestsBoundedPerCaller(t *testing.T) {
	rr := newRelayedRequests()
	now := time.Unix(0, 0)
	rr.now = func() time.Time { return now }
	alice := sessionKey{upstream: "u", caller: "alice", id: "s-alice"}
	if !rr.add(alice, []byte(`"elicit-1"`), 0) {
		t.Fatal("alice's request not tracked")
	}
	tracked := 0
	for i := range maxTrackedSessions {
		if rr.add(sessionKey{upstream: "u", caller: "mallory", id: fmt.Sprint("s-", i)}, []byte(`1`), 0) {
			tracked++
		}
	}
	if tracked != maxTrackedSessionsPerCaller {
		t.Errorf("mallory had %d sessions tracked; want %d, the bound of one caller", tracked, maxTrackedSessionsPerCaller)
	}
	for c := range maxTrackedSessions / maxTrackedSessionsPerCaller {
		for i := range maxTrackedSessionsPerCaller {
			rr.add(sessionKey{upstream: "u", caller: fmt.Sprint("c", c), id: fmt.Sprint("s-", i)}, []byte(`1`), 0)
		}
	}
	if len(rr.sessions) > maxTrackedSessions {
		t.Errorf("%d sessions tracked; the bound is %d", len(rr.sessions), maxTrackedSessions)
	}
	if !rr.took(alice, []byte(`"elicit-1"`)) {
		t.Fatal("alice's unanswered request was forgotten to make room for other callers' sessions")
	}
	if rr.add(sessionKey{upstream: "u", caller: "mallory", id: "s-new"}, []byte(`1`), 0) {
		t.Error("a new session of mallory's tracked past his bound")
	}
	// Expired sessions make room, and leave nothing of them behind.
	now = now.Add(pendingTTL + time.Second)
	newcomer := sessionKey{upstream: "u", caller: "mallory", id: "s-new"}
	if !rr.add(newcomer, []byte(`1`), 0) {
		t.Error("a new session of mallory's not tracked once mallory's others expired")
	}
	rr.took(newcomer, []byte(`1`))
	if notes := len(rr.expiresAt); notes > len(rr.byCaller)+1 {
		t.Errorf("%d expiry notes kept for %d callers", notes, len(rr.byCaller))
	}
}

// TestRelayedRequestsBoundedAcrossUpstreams: a caller's bound counts its
// sessions on every upstream (one identity on ten upstreams would fill
// every place), and anonymous sessions count each on its own (one is not
// another's).
func TestRelayedRequestsBoundedAcrossUpstreams(t *testing.T) {
	rr := newRelayedRequests()
	tracked := 0
	for u := range maxTrackedSessions / maxTrackedSessionsPerCaller {
		for i := range maxTrackedSessionsPerCaller {
			if rr.add(sessionKey{upstream: fmt.Sprint("u", u), caller: "mallory", id: fmt.Sprint("m", i)}, []byte(`1`), 0) {
				tracked++
			}
		}
	}
	if tracked != maxTrackedSessionsPerCaller {
		t.Errorf("mallory had %d sessions tracked on ten upstreams; want %d in all", tracked, maxTrackedSessionsPerCaller)
	}
	for i := range 2 * maxTrackedSessionsPerCaller {
		if !rr.add(sessionKey{upstream: "u0", id: fmt.Sprint("anonymous-", i)}, []byte(`1`), 0) {
			t.Fatalf("anonymous session %d not tracked: anonymous sessions count against one another's bound", i)
		}
	}
}

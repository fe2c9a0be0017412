package sessiontoken_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
)

func mustSealer(t *testing.T, keys ...[]byte) *sessiontoken.Sealer {
	t.Helper()
	s, err := sessiontoken.New(keys...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestSealOpen(t *testing.T) {
	s := mustSealer(t, sessiontoken.NewKey())
	for _, session := range []sessiontoken.Session{
		{Kind: sessiontoken.Streamable, Caller: "alice", ID: "abc-123", Capabilities: 0b1011},
		{Kind: sessiontoken.Streamable, ID: "abc"},
		{Kind: sessiontoken.Legacy, Caller: "", ID: "/message?sessionId=x"},
		{Kind: sessiontoken.Streamable, Caller: "b\x00ob", ID: ""},
	} {
		token := s.Seal("tracker", session)
		for _, c := range token {
			if c < 0x21 || c > 0x7e {
				t.Fatalf("token %q holds %q, which Mcp-Session-Id may not", token, c)
			}
		}
		got, err := s.Open("tracker", token)
		if err != nil || got != session {
			t.Errorf("Open(Seal(%+v)) = %+v, %v; want the same session", session, got, err)
		}
		if again := s.Seal("tracker", session); again != token {
			t.Errorf("Seal(%+v) gave %q, then %q; want one token for one session", session, token, again)
		}
		if other := s.Seal("files", session); other == token {
			t.Errorf("Seal gave the same token in two scopes")
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	key := sessiontoken.NewKey()
	s := mustSealer(t, key)
	token := s.Seal("tracker", sessiontoken.Session{Kind: sessiontoken.Streamable, Caller: "alice", ID: "s1"})
	flipped := []byte(token)
	if i := len(flipped) - 3; flipped[i] == 'A' {
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}
	tests := []struct {
		name  string
		scope string
		token string
		want  error
	}{
		{"another upstream", "files", token, sessiontoken.ErrUnknownKey},
		{"another gateway's key", "tracker", mustSealer(t, sessiontoken.NewKey()).Seal("tracker", sessiontoken.Session{Kind: sessiontoken.Streamable, ID: "s1"}), sessiontoken.ErrUnknownKey},
		{"tampered", "tracker", string(flipped), sessiontoken.ErrUnknownKey},
		{"the upstream's raw id", "tracker", "s1", sessiontoken.ErrMalformed},
		{"not base64url", "tracker", "mcpgate1.a+b/", sessiontoken.ErrMalformed},
		{"padded", "tracker", token + "=", sessiontoken.ErrMalformed},
		{"truncated", "tracker", token[:20], sessiontoken.ErrMalformed},
		{"empty", "tracker", "", sessiontoken.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Open(tt.scope, tt.token)
			if !errors.Is(err, tt.want) {
				t.Errorf("Open(%q) = %+v, %v; want error %v", tt.token, got, err, tt.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := sessiontoken.NewKey(), sessiontoken.NewKey()
	session := sessiontoken.Session{Kind: sessiontoken.Streamable, Caller: "alice", ID: "s1"}
	oldToken := mustSealer(t, oldKey).Seal("tracker", session)

	rotating := mustSealer(t, newKey, oldKey)
	if got, err := rotating.Open("tracker", oldToken); err != nil || got != session {
		t.Errorf("during rotation, a session sealed with the old key = %+v, %v; want it open", got, err)
	}
	newToken := rotating.Seal("tracker", session)
	if _, err := mustSealer(t, oldKey).Open("tracker", newToken); !errors.Is(err, sessiontoken.ErrUnknownKey) {
		t.Errorf("a new token opened with the old key alone: %v; want it sealed with the new key", err)
	}
	if _, err := mustSealer(t, newKey).Open("tracker", oldToken); !errors.Is(err, sessiontoken.ErrUnknownKey) {
		t.Errorf("after rotation, the old token = %v; want ErrUnknownKey", err)
	}
}

func TestKeys(t *testing.T) {
	key := sessiontoken.NewKey()
	if _, err := sessiontoken.New(key, key); err == nil {
		t.Error("New accepted the same key twice")
	}
	if _, err := sessiontoken.New(key[:16]); err == nil {
		t.Error("New accepted a 16-byte key")
	}
	if _, err := sessiontoken.New(); err == nil {
		t.Error("New accepted no key")
	}
	for _, encoded := range []string{
		"q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=",
		"q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",
	} {
		parsed, err := sessiontoken.ParseKey(encoded)
		if err != nil || len(parsed) != sessiontoken.KeySize {
			t.Errorf("ParseKey(%q) = %x, %v; want a 32-byte key", encoded, parsed, err)
		}
	}
	if _, err := sessiontoken.ParseKey(strings.Repeat("A", 20)); err == nil {
		t.Error("ParseKey accepted a 15-byte key")
	}
	if bytes.Equal(sessiontoken.NewKey(), sessiontoken.NewKey()) {
		t.Error("NewKey returned the same key twice")
	}
}

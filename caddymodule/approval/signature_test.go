package approval

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// testSecret is a Standard Webhooks secret for tests (a 32-byte key).
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// TestSignatureMatchesSpecExample checks Sign against the example of the
// Standard Webhooks specification's reference libraries.
func TestSignatureMatchesSpecExample(t *testing.T) {
	secret, err := ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := secret.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	if got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestVerify(t *testing.T) {
	secret, err := ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParseSecret("whsec_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := []byte(`{"decision":"approve"}`)
	signed := func(s Secret, at time.Time) http.Header {
		h := make(http.Header)
		s.SetHeaders(h, "msg_1", at, body)
		return h
	}
	rotated := signed(secret, now)
	rotated.Set(HeaderSignature, "v1,bm90IGl0 v2,whatever "+rotated.Get(HeaderSignature))

	tests := []struct {
		name   string
		header http.Header
		body   []byte
		want   error
	}{
		{"signed", signed(secret, now), body, nil},
		{"among several signatures", rotated, body, nil},
		{"unsigned", http.Header{}, body, ErrUnsigned},
		{"other key", signed(other, now), body, ErrBadSignature},
		{"body changed", signed(secret, now), []byte(`{"decision":"deny"}`), ErrBadSignature},
		{"stale", signed(secret, now.Add(-6*time.Minute)), body, ErrStale},
		{"from the future", signed(secret, now.Add(6*time.Minute)), body, ErrStale},
		{"timestamp changed", func() http.Header {
			h := signed(secret, now)
			h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return h
		}(), body, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := secret.Verify(tt.header, tt.body, now)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Verify: got error %v, want %v", err, tt.want)
			}
			if tt.want == nil && id != "msg_1" {
				t.Errorf("Verify returned webhook-id %q, want msg_1", id)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	for _, bad := range []string{"", "whsec_", "whsec_not base64!", "whsec_c2hvcnQ="} {
		if _, err := ParseSecret(bad); err == nil {
			t.Errorf("ParseSecret(%q) accepted a secret it should refuse", bad)
		}
	}
	withPrefix, err1 := ParseSecret(testSecret)
	without, err2 := ParseSecret(testSecret[len("whsec_"):])
	if err1 != nil || err2 != nil || !withPrefix.Equal(without) {
		t.Errorf("the whsec_ prefix should be optional: %v, %v", err1, err2)
	}
}

func TestFormToken(t *testing.T) {
	secret, _ := ParseSecret(testSecret)
	token := secret.FormToken("alice", "apr_x")
	if !secret.CheckFormToken(token, "alice", "apr_x") {
		t.Error("a token does not check for the user and id it was made for")
	}
	if secret.CheckFormToken(token, "mallory", "apr_x") || secret.CheckFormToken(token, "alice", "apr_y") {
		t.Error("a token checks for another user or approval")
	}
}

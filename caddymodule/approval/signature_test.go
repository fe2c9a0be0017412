package approval

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testSecret is a Standard Webhooks secret for tests (a 32-byte key); the
// tests sign webhooks with it.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// testDecisionSecret signs the tests' decisions (a 32-byte key).
const testDecisionSecret = "whsec_" + "ZGVjaXNpb25zIGFyZSBzaWduZWQgd2l0aCB0aGlzIGtleQ=="

// mustSecret parses a secret, failing the test if it cannot.
func mustSecret(t *testing.T, s string) Secret {
	t.Helper()
	secret, err := ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret(%q): %v", s, err)
	}
	return secret
}

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

func TestCheckDistinctSecrets(t *testing.T) {
	a, b, c := mustSecret(t, testSecret), mustSecret(t, testDecisionSecret), mustSecret(t, "whsec_"+strings.Repeat("C", 43)+"=")
	sameAsA := mustSecret(t, testSecret[len("whsec_"):])
	long := Secret{key: bytes.Repeat([]byte("k"), 80)}
	longSum := sha256.Sum256(long.key)
	tests := []struct {
		name              string
		webhook, decision []Secret
		wantErr           string // "" when accepted
	}{
		{"distinct", []Secret{a}, []Secret{b}, ""},
		{"several, distinct", []Secret{a, c}, []Secret{b}, ""},
		{"same key", []Secret{a}, []Secret{a}, "webhook secret 1 is also decision secret 1"},
		{"same key spelled otherwise", []Secret{c, a}, []Secret{b, sameAsA}, "webhook secret 2 is also decision secret 2"},
		// Keys HMAC-SHA256 signs alike (found by an acceptance run: a
		// webhook receiver decided approvals so): a key and the same with
		// a zero byte after it (HMAC pads a key with zeros), a key longer
		// than the block and its SHA-256 (HMAC hashes such a key).
		{"a key and the same with a zero after it", []Secret{a}, []Secret{{key: append(bytes.Clone(a.key), 0)}}, "webhook secret 1 is also decision secret 1"},
		{"a long key and its SHA-256", []Secret{long}, []Secret{{key: longSum[:]}}, "webhook secret 1 is also decision secret 1"},
		{"a long key and its SHA-256 with a zero after it", []Secret{{key: append(longSum[:], 0)}}, []Secret{long}, "webhook secret 1 is also decision secret 1"},
		{"no webhook secret", nil, []Secret{b}, "webhook secret is required"},
		{"no decision secret", []Secret{a}, []Secret{}, "decision secret is required"},
		{"unset webhook secret", []Secret{{}}, []Secret{b}, "webhook secret 1 is unset"},
		{"unset decision secret", []Secret{a}, []Secret{b, {}}, "decision secret 2 is unset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckDistinctSecrets(tt.webhook, tt.decision)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckDistinctSecrets: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckDistinctSecrets: %v, want an error saying %q", err, tt.wantErr)
			}
		})
	}
}

package identity

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// signRaw returns a compact JWS of header and payload exactly as given,
// signed with k, which must be an Ed25519 key, so that tests can sign what
// jwx would never write (duplicate members, invalid UTF-8).
func signRaw(t *testing.T, k testKey, header, payload string) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	signature, err := k.private.Sign(rand.Reader, []byte(input), crypto.Hash(0))
	if err != nil {
		t.Fatalf("signing with key %s: %v", k.kid, err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(signature)
}

// changeSegment returns token with its segment i (0 header, 1 payload,
// 2 signature) replaced by what change makes of it.
func changeSegment(token string, i int, change func(string) string) string {
	segments := strings.Split(token, ".")
	segments[i] = change(segments[i])
	return strings.Join(segments, ".")
}

// pad adds the "=" padding base64 would give segment; the segment must need
// some.
func pad(t *testing.T, segment string) string {
	t.Helper()
	if len(segment)%4 == 0 {
		t.Fatalf("segment of %d characters needs no padding: change the fixture", len(segment))
	}
	return segment + strings.Repeat("=", 4-len(segment)%4)
}

// setTrailingBit sets the lowest bit of segment's last character, which
// canonical base64url leaves zero when the segment's length is not a
// multiple of 4: the segment then decodes, leniently, to the same bytes.
func setTrailingBit(t *testing.T, segment string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(segment)%4 == 0 {
		t.Fatalf("segment of %d characters has no trailing bits: change the fixture", len(segment))
	}
	last := strings.IndexByte(alphabet, segment[len(segment)-1])
	return segment[:len(segment)-1] + string(alphabet[last|1])
}

// replaceAll replaces old with new in s, which must contain old.
func replaceAll(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%q holds no %q: change the fixture", s, old)
	}
	return strings.ReplaceAll(s, old, new)
}

func TestVerifyMalformed(t *testing.T) {
	known, unknown := newEdKey(t, "ed-1"), newEdKey(t, "ed-2")
	server := newJWKSServer(t, known)
	v := newTestVerifier(t, server.URL)
	waitForKeys(t, v)
	v.refreshGap = 0 // every lookup of an unknown key fetches the JWKS

	header := func(k testKey) string { return `{"alg":"EdDSA","kid":"` + k.kid + `"}` }
	exp := time.Now().Add(5 * time.Minute).Unix()
	// payload returns valid claims with extra members at the end. The note
	// makes the payload's base64url hold a "-" and end in trailing bits.
	payload := func(extra string) string {
		return fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"user-42","exp":%d,"note":"~~~~~~~"%s}`,
			testIssuer, testAudience, exp, extra)
	}
	wellFormed := func(t *testing.T, k testKey) string {
		t.Helper()
		return signRaw(t, k, header(k), payload(""))
	}

	t.Run("well-formed", func(t *testing.T) {
		if _, err := v.Verify(t.Context(), wellFormed(t, known)); err != nil {
			t.Fatalf("Verify: %v, want success", err)
		}
		hits := server.hits.Load()
		_, err := v.Verify(t.Context(), wellFormed(t, unknown))
		if got := description(err); got != "unknown signing key" {
			t.Errorf("Verify with key %s: %v, want %q", unknown.kid, err, "unknown signing key")
		}
		if server.hits.Load() == hits {
			t.Errorf("Verify with key %s fetched no JWKS, want a fetch: this test could not tell a key lookup", unknown.kid)
		}
	})

	tests := []struct {
		name  string
		token func(t *testing.T, k testKey) string
	}{
		{"padded header", func(t *testing.T, k testKey) string {
			return changeSegment(wellFormed(t, k), 0, func(s string) string { return pad(t, s) })
		}},
		{"padded payload", func(t *testing.T, k testKey) string {
			return changeSegment(wellFormed(t, k), 1, func(s string) string { return pad(t, s) })
		}},
		{"padded signature", func(t *testing.T, k testKey) string {
			return changeSegment(wellFormed(t, k), 2, func(s string) string { return pad(t, s) })
		}},
		{"trailing bits in the header", func(t *testing.T, k testKey) string {
			return changeSegment(wellFormed(t, k), 0, func(s string) string { return setTrailingBit(t, s) })
		}},
		{"trailing bits in the payload", func(t *testing.T, k testKey) string {
			return changeSegment(wellFormed(t, k), 1, func(s string) string { return setTrailingBit(t, s) })
		}},
		{"trailing bits in the signature", func(t *testing.T, k testKey) string {
			return changeSegment(wellFormed(t, k), 2, func(s string) string { return setTrailingBit(t, s) })
		}},
		{"standard base64 alphabet", func(t *testing.T, k testKey) string {
			return changeSegment(wellFormed(t, k), 1, func(s string) string { return replaceAll(t, s, "-", "+") })
		}},
		{"line break in a segment", func(t *testing.T, k testKey) string {
			return changeSegment(wellFormed(t, k), 1, func(s string) string { return s[:10] + "\r\n" + s[10:] })
		}},
		{"empty signature", func(t *testing.T, k testKey) string {
			return changeSegment(wellFormed(t, k), 2, func(string) string { return "" })
		}},

		{"two subjects", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), payload(`,"sub":"admin"`))
		}},
		{"two expiries", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), payload(`,"exp":9999999999`))
		}},
		{"two subjects, one escaped", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), payload(`,"s\u0075b":"admin"`))
		}},
		{"duplicate in a nested claim", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), payload(`,"cnf":{"jkt":"a","jkt":"b"}`))
		}},
		{"claims with invalid UTF-8", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), payload(`,"name":"`+"\xff"+`"`))
		}},
		{"claims with a lone surrogate", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), payload(`,"name":"\ud800"`))
		}},
		{"data after the claims", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), payload("")+` {}`)
		}},
		{"claims an array", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), "["+payload("")+"]")
		}},
		{"claims null", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), "null")
		}},
		{"claims empty", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k), "")
		}},

		{"two algorithms in the header", func(t *testing.T, k testKey) string {
			return signRaw(t, k, `{"alg":"none","alg":"EdDSA","kid":"`+k.kid+`"}`, payload(""))
		}},
		{"two key ids in the header", func(t *testing.T, k testKey) string {
			return signRaw(t, k, `{"alg":"EdDSA","kid":"other","kid":"`+k.kid+`"}`, payload(""))
		}},
		{"header with invalid UTF-8", func(t *testing.T, k testKey) string {
			return signRaw(t, k, `{"alg":"EdDSA","kid":"`+k.kid+`","x":"`+"\xff"+`"}`, payload(""))
		}},
		{"data after the header", func(t *testing.T, k testKey) string {
			return signRaw(t, k, header(k)+`x`, payload(""))
		}},
		{"header an array", func(t *testing.T, k testKey) string {
			return signRaw(t, k, "["+header(k)+"]", payload(""))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []testKey{known, unknown} {
				hits := server.hits.Load()
				token := tt.token(t, k)
				_, err := v.Verify(t.Context(), token)
				var tokenErr *TokenError
				if !errors.As(err, &tokenErr) || tokenErr.Code != CodeInvalidToken || tokenErr.Description != "malformed token" {
					t.Errorf("Verify with key %s: %v, want %s %q", k.kid, err, CodeInvalidToken, "malformed token")
				}
				if got := server.hits.Load() - hits; got != 0 {
					t.Errorf("Verify with key %s fetched the JWKS %d times, want none: a malformed token must not reach key lookup", k.kid, got)
				}
			}
		})
	}
}

// description returns err's TokenError description, or "" when it has none.
func description(err error) string {
	var tokenErr *TokenError
	if !errors.As(err, &tokenErr) {
		return ""
	}
	return tokenErr.Description
}

package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

const (
	testIssuer   = "https://idp.example.com"
	testAudience = "https://gw.example.com/mcp"
)

// testKey is a signing key and how the JWKS publishes its public half.
type testKey struct {
	kid     string
	alg     jwa.SignatureAlgorithm
	use     string
	private crypto.Signer
}

func newRSAKey(t *testing.T, kid string) testKey {
	t.Helper()
	private, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generating RSA key: %v", err)
	}
	return testKey{kid: kid, alg: jwa.RS256(), private: private}
}

func newECKey(t *testing.T, kid string) testKey {
	t.Helper()
	private, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating EC key: %v", err)
	}
	return testKey{kid: kid, alg: jwa.ES256(), private: private}
}

func newEdKey(t *testing.T, kid string) testKey {
	t.Helper()
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generating Ed25519 key: %v", err)
	}
	return testKey{kid: kid, alg: jwa.EdDSA(), private: private}
}

// publicJWK returns the key as the JWKS publishes it: public half, kid, alg
// and use.
func (k testKey) publicJWK(t *testing.T) jwk.Key {
	t.Helper()
	key, err := jwk.Import(k.private.Public())
	if err != nil {
		t.Fatalf("importing public key %s: %v", k.kid, err)
	}
	use := k.use
	if use == "" {
		use = jwk.ForSignature.String()
	}
	for name, value := range map[string]any{jwk.KeyIDKey: k.kid, jwk.AlgorithmKey: k.alg, jwk.KeyUsageKey: use} {
		if err := key.Set(name, value); err != nil {
			t.Fatalf("setting %s on key %s: %v", name, k.kid, err)
		}
	}
	return key
}

// jwksServer serves a JWKS on 127.0.0.1 and counts the fetches.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int64
	body   atomic.Pointer[[]byte]
	broken atomic.Bool
}

func newJWKSServer(t *testing.T, keys ...testKey) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.publish(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		if s.broken.Load() {
			http.Error(w, "identity provider down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

// publish makes the server serve the public halves of keys from now on.
func (s *jwksServer) publish(t *testing.T, keys ...testKey) {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k.publicJWK(t)); err != nil {
			t.Fatalf("adding key %s to JWKS: %v", k.kid, err)
		}
	}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatalf("encoding JWKS: %v", err)
	}
	s.body.Store(&body)
}

// newTestVerifier returns a verifier for testIssuer and testAudience whose
// keys come from jwksURL; it is closed when the test ends.
func newTestVerifier(t *testing.T, jwksURL string) *JWTVerifier {
	t.Helper()
	v, err := NewJWTVerifier(t.Context(), JWTConfig{
		JWKSURL:  jwksURL,
		Issuer:   testIssuer,
		Audience: []string{"https://other.example.com", testAudience},
	})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return v
}

// waitForKeys waits for the verifier's first background fetch of the JWKS.
func waitForKeys(t *testing.T, v *JWTVerifier) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for v.jwks.Resource() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the JWKS was not fetched within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// absent marks a claim to leave out of validClaims.
type absent struct{}

// validClaims returns the claims of a token the test verifier accepts,
// with changes applied; an absent{} value removes the claim.
func validClaims(changes map[string]any) map[string]any {
	now := time.Now()
	claims := map[string]any{
		"iss":   testIssuer,
		"aud":   []string{testAudience},
		"sub":   "user-42",
		"iat":   now,
		"exp":   now.Add(5 * time.Minute),
		"role":  "admin",
		"quota": int64(9007199254740993),
	}
	for name, value := range changes {
		if _, ok := value.(absent); ok {
			delete(claims, name)
			continue
		}
		claims[name] = value
	}
	return claims
}

// sign returns a compact JWS of the claims, signed with alg and key, with
// the given protected headers.
func sign(t *testing.T, alg jwa.SignatureAlgorithm, key any, headers map[string]any, claims map[string]any) string {
	t.Helper()
	token := jwt.New()
	for name, value := range claims {
		if err := token.Set(name, value); err != nil {
			t.Fatalf("setting claim %s: %v", name, err)
		}
	}
	protected := jws.NewHeaders()
	for name, value := range headers {
		if err := protected.Set(name, value); err != nil {
			t.Fatalf("setting header %s: %v", name, err)
		}
	}
	signed, err := jwt.Sign(token, jwt.WithKey(alg, key, jws.WithProtectedHeaders(protected)))
	if err != nil {
		t.Fatalf("signing token: %v", err)
	}
	return string(signed)
}

// signWith signs claims with k under its own kid and algorithm.
func signWith(t *testing.T, k testKey, claims map[string]any) string {
	t.Helper()
	return sign(t, k.alg, k.private, map[string]any{jws.KeyIDKey: k.kid}, claims)
}

// signTyped signs valid claims with k under its own kid, with typ as the
// "typ" header (none when nil).
func signTyped(t *testing.T, k testKey, typ any) string {
	t.Helper()
	headers := map[string]any{jws.KeyIDKey: k.kid}
	if typ != nil {
		headers[jws.TypeKey] = typ
	}
	return sign(t, k.alg, k.private, headers, validClaims(nil))
}

// signPayload signs raw bytes as a JWS payload with k.
func signPayload(t *testing.T, k testKey, payload []byte) string {
	t.Helper()
	protected := jws.NewHeaders()
	if err := protected.Set(jws.KeyIDKey, k.kid); err != nil {
		t.Fatalf("setting kid: %v", err)
	}
	signed, err := jws.Sign(payload, jws.WithKey(k.alg, k.private, jws.WithProtectedHeaders(protected)))
	if err != nil {
		t.Fatalf("signing payload: %v", err)
	}
	return string(signed)
}

func b64(data string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(data))
}

// tamper replaces the token's payload, keeping its header and signature.
func tamper(t *testing.T, token string, change func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decoding payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("decoding claims: %v", err)
	}
	change(claims)
	payload, err = json.Marshal(claims)
	if err != nil {
		t.Fatalf("encoding claims: %v", err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestVerify(t *testing.T) {
	rsaKey := newRSAKey(t, "rsa-1")
	ecKey := newECKey(t, "ec-1")
	edKey := newEdKey(t, "ed-1")
	encKey := newECKey(t, "enc-1")
	encKey.use = "enc"
	foreign := newECKey(t, "ec-1") // same kid as ecKey, not in the JWKS
	stranger := newECKey(t, "stranger")
	server := newJWKSServer(t, rsaKey, ecKey, edKey, encKey)
	v := newTestVerifier(t, server.URL)

	rsaPublicDER, err := x509.MarshalPKIXPublicKey(rsaKey.private.Public())
	if err != nil {
		t.Fatalf("encoding RSA public key: %v", err)
	}
	rsaPublicPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPublicDER})
	now := time.Now()
	valid := signWith(t, rsaKey, validClaims(nil))

	tests := []struct {
		name  string
		token string
		// wantError is the rejection's description; empty for success.
		wantError string
	}{
		{"RS256", valid, ""},
		{"ES256", signWith(t, ecKey, validClaims(nil)), ""},
		{"EdDSA", signWith(t, edKey, validClaims(nil)), ""},
		{"audience list containing an accepted one",
			signWith(t, ecKey, validClaims(map[string]any{"aud": []string{"https://a.example.com", testAudience}})), ""},
		{"expired within the leeway", signWith(t, ecKey, validClaims(map[string]any{"exp": now.Add(-10 * time.Second)})), ""},

		{"expired", signWith(t, ecKey, validClaims(map[string]any{"exp": now.Add(-2 * time.Minute)})), "token expired"},
		{"no expiry", signWith(t, ecKey, validClaims(map[string]any{"exp": absent{}})), "missing expiry"},
		{"nbf in the future", signWith(t, ecKey, validClaims(map[string]any{"nbf": now.Add(2 * time.Minute)})), "token not yet valid"},
		{"iat in the future", signWith(t, ecKey, validClaims(map[string]any{"iat": now.Add(2 * time.Minute)})), "token issued in the future"},
		{"wrong issuer", signWith(t, ecKey, validClaims(map[string]any{"iss": "https://evil.example.com"})), "wrong issuer"},
		{"no issuer", signWith(t, ecKey, validClaims(map[string]any{"iss": absent{}})), "wrong issuer"},
		{"wrong audience", signWith(t, ecKey, validClaims(map[string]any{"aud": []string{"https/gw.example.com"}})), "wrong audience"},
		{"audience of another resource on the same host",
			signWith(t, ecKey, validClaims(map[string]any{"aud": []string{"https://gw.example.com/other"}})), "wrong audience"},
		{"no audience", signWith(t, ecKey, validClaims(map[string]any{"aud": absent{}})), "wrong audience"},
		{"no subject", signWith(t, ecKey, validClaims(map[string]any{"sub": absent{}})), "missing subject"},
		{"empty subject", signWith(t, ecKey, validClaims(map[string]any{"sub": ""})), "missing subject"},
		{"blank subject", signWith(t, ecKey, validClaims(map[string]any{"sub": " \t"})), "missing subject"},
		{"DPoP-bound (RFC 9449)", signWith(t, ecKey, validClaims(map[string]any{"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})),
			"token bound to a client key"},
		{"certificate-bound (RFC 8705)", signWith(t, ecKey, validClaims(map[string]any{"cnf": map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}})),
			"token bound to a client key"},

		{"typed JWT", signTyped(t, ecKey, "JWT"), ""},
		{"typed as an access token (RFC 9068)", signTyped(t, ecKey, "at+jwt"), ""},
		{"typed as an access token, media type in full and in other case",
			signTyped(t, ecKey, "Application/AT+JWT"), ""},
		{"a DPoP proof (RFC 9449)", signTyped(t, ecKey, "dpop+jwt"),
			"not an access token"},
		{"a logout token (OpenID back-channel logout)", signTyped(t, ecKey, "logout+jwt"),
			"not an access token"},
		{"an introspection response (RFC 9701)", signTyped(t, ecKey, "token-introspection+jwt"),
			"not an access token"},
		{"a security event (RFC 8417)", signTyped(t, ecKey, "secevent+jwt"),
			"not an access token"},
		{"a type with surrounding space", signTyped(t, ecKey, " JWT"),
			"not an access token"},
		{"an empty type", signTyped(t, ecKey, ""),
			"not an access token"},
		{"a type that is not a string",
			b64(`{"alg":"ES256","kid":"ec-1","typ":7}`) + "." + strings.Split(valid, ".")[1] + "." + b64("sig"),
			"malformed token"},

		{"unsigned (alg none)",
			b64(`{"alg":"none"}`) + "." + strings.Split(valid, ".")[1] + ".",
			"malformed token"},
		{"alg none with a signature",
			b64(`{"alg":"none"}`) + "." + strings.Split(valid, ".")[1] + "." + b64("sig"),
			"signing algorithm not accepted"},
		{"alg none with the kid of a real key",
			b64(`{"alg":"none","kid":"rsa-1"}`) + "." + strings.Split(valid, ".")[1] + "." + b64("sig"),
			"signing algorithm not accepted"},
		{"HS256 keyed with the RSA public key",
			sign(t, jwa.HS256(), rsaPublicPEM, map[string]any{jws.KeyIDKey: "rsa-1"}, validClaims(nil)),
			"signing algorithm not accepted"},
		{"tampered payload", tamper(t, valid, func(c map[string]any) { c["sub"] = "admin" }), "invalid signature"},
		{"signed by a key not in the JWKS under a known kid", signWith(t, foreign, validClaims(nil)), "invalid signature"},
		{"unknown kid", signWith(t, stranger, validClaims(nil)), "unknown signing key"},
		{"no kid", sign(t, jwa.ES256(), ecKey.private, nil, validClaims(nil)), "no key id"},
		{"algorithm other than the key's",
			sign(t, jwa.PS256(), rsaKey.private, map[string]any{jws.KeyIDKey: "rsa-1"}, validClaims(nil)),
			"signing algorithm does not match the key"},
		{"kid of a key of another type",
			sign(t, jwa.ES256(), ecKey.private, map[string]any{jws.KeyIDKey: "rsa-1"}, validClaims(nil)),
			"unknown signing key"},
		{"key meant for encryption", signWith(t, encKey, validClaims(nil)), "key is not for signatures"},
		{"unknown critical header",
			sign(t, jwa.ES256(), ecKey.private, map[string]any{jws.KeyIDKey: "ec-1", "crit": []string{"x-ext"}, "x-ext": true}, validClaims(nil)),
			"unsupported critical header"},

		{"empty", "", "malformed token"},
		{"two segments", strings.Join(strings.Split(valid, ".")[:2], "."), "malformed token"},
		{"five segments (JWE)", "a.b.c.d.e", "malformed token"},
		{"garbage base64", "!!!.###.$$$", "malformed token"},
		{"header not JSON", b64("hello") + "." + b64("{}") + ".c2ln", "malformed token"},
		{"payload not JSON", signPayload(t, ecKey, []byte("hello")), "malformed token"},
		{"payload a JSON array", signPayload(t, ecKey, []byte(`["sub"]`)), "malformed token"},
		{"payload a nested token", signPayload(t, ecKey, []byte(`"`+valid+`"`)), "malformed token"},
		{"expiry not a number",
			signPayload(t, ecKey, []byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","sub":"user-42","exp":"soon"}`)),
			"malformed claims"},
		// jwx reads these; the policy would see a string, not seconds.
		{"expiry a date in a string",
			signPayload(t, ecKey, []byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","sub":"user-42","exp":"2099-01-01T00:00:00Z"}`)),
			"malformed claims"},
		{"expiry a number in a string",
			signPayload(t, ecKey, []byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","sub":"user-42","exp":"4070908800"}`)),
			"malformed claims"},
		{"not-before a string",
			signPayload(t, ecKey, []byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","sub":"user-42","exp":4070908800,"nbf":"2000-01-01T00:00:00Z"}`)),
			"malformed claims"},
		{"issued-at a string",
			signPayload(t, ecKey, []byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","sub":"user-42","exp":4070908800,"iat":"946684800"}`)),
			"malformed claims"},
		{"times as numbers",
			signPayload(t, ecKey, []byte(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","sub":"user-42","role":"admin","exp":4070908800,"nbf":946684800,"iat":946684800}`)),
			""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := v.Verify(t.Context(), tt.token)
			if tt.wantError == "" {
				if err != nil {
					t.Fatalf("Verify: %v, want success", err)
				}
				if user.ID != "user-42" {
					t.Errorf("ID = %q, want %q", user.ID, "user-42")
				}
				if got := user.Claims["role"]; got != "admin" {
					t.Errorf(`claims["role"] = %#v, want "admin"`, got)
				}
				return
			}
			var tokenErr *TokenError
			if !errors.As(err, &tokenErr) {
				t.Fatalf("Verify: error %v (user %+v), want a *TokenError %q", err, user, tt.wantError)
			}
			if tokenErr.Code != CodeInvalidToken || tokenErr.Description != tt.wantError {
				t.Errorf("Verify: %s %q (%v), want %s %q", tokenErr.Code, tokenErr.Description, err, CodeInvalidToken, tt.wantError)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("Verify error %q quotes the token", err)
			}
		})
	}
}

func TestVerifyClaims(t *testing.T) {
	key := newECKey(t, "ec-1")
	server := newJWKSServer(t, key)
	v := newTestVerifier(t, server.URL)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)

	user, err := v.Verify(t.Context(), signWith(t, key, validClaims(map[string]any{
		"exp":    exp,
		"groups": []string{"eng", "ops"},
		"limits": map[string]any{"ratio": json.Number("1.50"), "tags": []any{}},
	})))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	tests := []struct {
		claim string
		want  any
	}{
		{"sub", "user-42"},
		{"iss", testIssuer},
		{"exp", json.Number(fmt.Sprint(exp.Unix()))},
		{"quota", json.Number("9007199254740993")},
		{"groups", []any{"eng", "ops"}},
		{"limits", map[string]any{"ratio": json.Number("1.50"), "tags": []any{}}},
	}
	for _, tt := range tests {
		t.Run(tt.claim, func(t *testing.T) {
			got := user.Claims[tt.claim]
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tt.want) {
				t.Errorf("claims[%q] = %#v, want %#v", tt.claim, got, tt.want)
			}
		})
	}
}

func TestVerifyKeyRotation(t *testing.T) {
	old, rotated, later := newECKey(t, "2026-01"), newECKey(t, "2026-02"), newECKey(t, "2026-03")
	server := newJWKSServer(t, old)
	v := newTestVerifier(t, server.URL)
	waitForKeys(t, v)
	verify := func(t *testing.T, k testKey, wantOK bool) {
		t.Helper()
		_, err := v.Verify(t.Context(), signWith(t, k, validClaims(nil)))
		if (err == nil) != wantOK {
			t.Fatalf("Verify with key %s: error %v, want success %t", k.kid, err, wantOK)
		}
	}
	wantHits := func(t *testing.T, want int64) {
		t.Helper()
		if got := server.hits.Load(); got != want {
			t.Fatalf("JWKS fetched %d times, want %d", got, want)
		}
	}

	verify(t, old, true)
	wantHits(t, 1)

	server.publish(t, old, rotated)
	verify(t, rotated, true)
	wantHits(t, 2)

	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i := range 100 {
		ghost := rotated
		ghost.kid = fmt.Sprintf("ghost-%d", i)
		token := signWith(t, ghost, validClaims(nil))
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), token); err == nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d tokens with unknown kids accepted", n)
	}
	wantHits(t, 2)

	server.publish(t, old, rotated, later)
	verify(t, later, false) // within MinRefreshGap of the last fetch
	wantHits(t, 2)

	v.refreshGap = 0
	verify(t, later, true)
	wantHits(t, 3)
}

// countingTransport counts the requests it carries.
type countingTransport struct {
	requests atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestVerifyHTTPClient(t *testing.T) {
	key := newECKey(t, "ec-1")
	server := newJWKSServer(t, key)
	transport := &countingTransport{}
	v, err := NewJWTVerifier(t.Context(), JWTConfig{
		JWKSURL:    server.URL,
		Issuer:     testIssuer,
		Audience:   []string{testAudience},
		HTTPClient: &http.Client{Transport: transport},
	})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	defer func() {
		if err := v.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	waitForKeys(t, v)

	if _, err := v.Verify(t.Context(), signWith(t, key, validClaims(nil))); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got, want := transport.requests.Load(), server.hits.Load(); got == 0 || got != want {
		t.Errorf("the configured client made %d requests, want all %d JWKS fetches", got, want)
	}
}

func TestVerifyKeysUnavailable(t *testing.T) {
	key := newECKey(t, "ec-1")
	server := newJWKSServer(t, key)
	server.broken.Store(true)
	v := newTestVerifier(t, server.URL)
	token := signWith(t, key, validClaims(nil))

	_, err := v.Verify(t.Context(), token)
	var tokenErr *TokenError
	if !errors.Is(err, ErrKeysUnavailable) || errors.As(err, &tokenErr) {
		t.Fatalf("Verify while the JWKS is down: %v, want ErrKeysUnavailable and no *TokenError", err)
	}

	server.broken.Store(false)
	v.refreshGap = 0
	if _, err := v.Verify(t.Context(), token); err != nil {
		t.Fatalf("Verify once the JWKS is back: %v", err)
	}
}

func TestRefusalIdentityProviderDown(t *testing.T) {
	key, stranger := newECKey(t, "ec-1"), newECKey(t, "stranger")
	server := newJWKSServer(t, key)
	withKeys := newTestVerifier(t, server.URL)
	waitForKeys(t, withKeys)
	withKeys.refreshGap = 0
	server.Close()
	withoutKeys := newTestVerifier(t, server.URL)
	host := strings.TrimPrefix(server.URL, "http://")

	tests := []struct {
		name            string
		verifier        *JWTVerifier
		token           string
		wantStatus      int
		wantCode        string
		wantDescription string
	}{
		{"unknown key, the JWKS not fetched again", withKeys, signWith(t, stranger, validClaims(nil)),
			http.StatusUnauthorized, CodeInvalidToken, "unknown signing key"},
		{"no keys fetched yet", withoutKeys, signWith(t, key, validClaims(nil)),
			http.StatusServiceUnavailable, "", "the identity provider's signing keys are unavailable; try again later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.verifier.Verify(t.Context(), tt.token)
			if err == nil || !strings.Contains(err.Error(), host) {
				t.Fatalf("Verify: %v, want an error naming the JWKS host %s", err, host)
			}
			status, code, description := Refusal(err)
			if status != tt.wantStatus || code != tt.wantCode || description != tt.wantDescription {
				t.Errorf("Refusal = %d, %q, %q; want %d, %q, %q", status, code, description, tt.wantStatus, tt.wantCode, tt.wantDescription)
			}
			if challenge := Challenge("https://gw.example.com/.well-known/oauth-protected-resource", err, nil); strings.Contains(challenge, host) {
				t.Errorf("Challenge = %s, want no mention of the JWKS host %s", challenge, host)
			}
		})
	}
}

func TestVerifyCanceled(t *testing.T) {
	key := newECKey(t, "ec-1")
	server := newJWKSServer(t, key)
	server.broken.Store(true)
	v := newTestVerifier(t, server.URL)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := v.Verify(ctx, signWith(t, key, validClaims(nil)))
	var tokenErr *TokenError
	if err == nil || errors.As(err, &tokenErr) {
		t.Fatalf("Verify with a canceled context: %v, want an error that is not a *TokenError", err)
	}
}

func TestNewJWTVerifier(t *testing.T) {
	valid := func(change func(*JWTConfig)) JWTConfig {
		cfg := JWTConfig{
			JWKSURL:  "https://idp.example.com/jwks.json",
			Issuer:   testIssuer,
			Audience: []string{testAudience},
		}
		if change != nil {
			change(&cfg)
		}
		return cfg
	}
	tests := []struct {
		name      string
		cfg       JWTConfig
		wantError string
	}{
		{"minimal", valid(nil), ""},
		{"loopback http", valid(func(c *JWTConfig) { c.JWKSURL = "http://127.0.0.1:8080/jwks" }), ""},
		{"chosen algorithms", valid(func(c *JWTConfig) { c.Algorithms = []string{"RS256", "ES256"} }), ""},
		{"no JWKS URL", valid(func(c *JWTConfig) { c.JWKSURL = "" }), "jwks_url is required"},
		{"relative JWKS URL", valid(func(c *JWTConfig) { c.JWKSURL = "/jwks.json" }), "must be an absolute URL"},
		{"plain http", valid(func(c *JWTConfig) { c.JWKSURL = "http://idp.example.com/jwks" }), "must use https"},
		{"no issuer", valid(func(c *JWTConfig) { c.Issuer = "" }), "issuer is required"},
		{"no audience", valid(func(c *JWTConfig) { c.Audience = nil }), "at least one audience"},
		{"empty audience", valid(func(c *JWTConfig) { c.Audience = []string{testAudience, ""} }), "audience must not be empty"},
		{"negative leeway", valid(func(c *JWTConfig) { c.Leeway = -time.Second }), "must not be negative"},
		{"refresh too often", valid(func(c *JWTConfig) { c.RefreshInterval = time.Second }), "must be at least"},
		{"HMAC", valid(func(c *JWTConfig) { c.Algorithms = []string{"RS256", "HS256"} }), `algorithm "HS256" is not accepted`},
		{"none", valid(func(c *JWTConfig) { c.Algorithms = []string{"none"} }), `algorithm "none" is not accepted`},
		{"lower case", valid(func(c *JWTConfig) { c.Algorithms = []string{"rs256"} }), `algorithm "rs256" is not accepted`},
		{"chosen types", valid(func(c *JWTConfig) { c.Types = []string{"at+jwt", "application/okta-internal-at+jwt"} }), ""},
		{"an empty type", valid(func(c *JWTConfig) { c.Types = []string{"at+jwt", ""} }), "token type must not be empty"},
		{"a type with space", valid(func(c *JWTConfig) { c.Types = []string{"at+ jwt"} }), `token type "at+ jwt" is not a media type`},
		{"a type with two slashes", valid(func(c *JWTConfig) { c.Types = []string{"application/at/jwt"} }), `token type "application/at/jwt" is not a media type`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewJWTVerifier(t.Context(), tt.cfg)
			if tt.wantError == "" {
				if err != nil {
					t.Fatalf("NewJWTVerifier: %v, want success", err)
				}
				if err := v.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				return
			}
			if err == nil {
				_ = v.Close()
				t.Fatalf("NewJWTVerifier succeeded, want an error containing %q", tt.wantError)
			}
			if !strings.Contains(err.Error(), tt.wantError) {
				t.Errorf("NewJWTVerifier: %v, want an error containing %q", err, tt.wantError)
			}
		})
	}
}

func TestNewJWTVerifierDefaults(t *testing.T) {
	v, err := newJWTVerifier(JWTConfig{
		JWKSURL:  "https://idp.example.com/jwks.json",
		Issuer:   testIssuer,
		Audience: []string{testAudience},
	})
	if err != nil {
		t.Fatalf("newJWTVerifier: %v", err)
	}
	if v.leeway != DefaultLeeway {
		t.Errorf("leeway = %s, want %s", v.leeway, DefaultLeeway)
	}
	want := []string{"ES256", "ES384", "ES512", "EdDSA", "Ed25519", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}
	if !sameElements(v.algorithms, want) {
		t.Errorf("algorithms = %v, want %v", v.algorithms, want)
	}
}

func sameElements(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// abandonedContext is a request's context that is live for jws.Verify's
// first liveChecks looks at it, and cancelled after: its client went
// away just as the token was verified.
type abandonedContext struct {
	context.Context
	looks atomic.Int32
	done  chan struct{}
}

const liveChecks = 2

func (c *abandonedContext) Done() <-chan struct{} {
	if c.looks.Load() < liveChecks {
		return nil
	}
	return c.done
}

func (c *abandonedContext) Err() error {
	if c.looks.Add(1) <= liveChecks {
		return nil
	}
	return context.Canceled
}

// TestAbandonedRequestFetchesKeys: a request naming an unknown key whose
// client goes away as the keys are fetched again still has them fetched:
// the fetch it spent the refresh gap on is made, and a key rotated in at
// the identity provider is known at once to the next request.
func TestAbandonedRequestFetchesKeys(t *testing.T) {
	for trial := range 20 {
		old, rotated, ghost := newECKey(t, "old"), newECKey(t, "rotated"), newECKey(t, "ghost")
		server := newJWKSServer(t, old)
		v := newTestVerifier(t, server.URL)
		waitForKeys(t, v)
		server.publish(t, old, rotated)
		done := make(chan struct{})
		close(done)
		_, _ = v.Verify(&abandonedContext{Context: context.Background(), done: done}, signWith(t, ghost, validClaims(nil)))
		if _, err := v.Verify(context.Background(), signWith(t, rotated, validClaims(nil))); err != nil {
			t.Fatalf("trial %d: a token of the key rotated in refused: %v", trial, err)
		}
	}
}

func TestVerifyChosenTokenTypes(t *testing.T) {
	ecKey := newECKey(t, "ec-1")
	server := newJWKSServer(t, ecKey)
	v, err := NewJWTVerifier(t.Context(), JWTConfig{
		JWKSURL:  server.URL,
		Issuer:   testIssuer,
		Audience: []string{testAudience},
		Types:    []string{"at+jwt", "application/okta-internal-at+jwt"},
	})
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	tests := []struct {
		name      string
		typ       any
		wantError string
	}{
		{"at+jwt", "at+jwt", ""},
		{"in full", "application/at+jwt", ""},
		{"the second type, short", "okta-internal-at+jwt", ""},
		{"untyped", nil, "not an access token"},
		{"JWT, not chosen", "JWT", "not an access token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), signTyped(t, ecKey, tt.typ))
			if tt.wantError == "" {
				if err != nil {
					t.Fatalf("Verify: %v, want success", err)
				}
				return
			}
			var tokenErr *TokenError
			if !errors.As(err, &tokenErr) || tokenErr.Description != tt.wantError {
				t.Fatalf("Verify: %v, want the rejection %q", err, tt.wantError)
			}
		})
	}
}

package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name      string
		values    []string
		wantToken string
		// wantErr is ErrNoToken, or nil; wantCode is the TokenError code.
		wantErr  error
		wantCode string
	}{
		{"bearer", []string{"Bearer abc.def.ghi"}, "abc.def.ghi", nil, ""},
		{"scheme case-insensitive", []string{"bEaReR abc.def.ghi"}, "abc.def.ghi", nil, ""},
		{"several spaces", []string{"Bearer   abc.def.ghi  "}, "abc.def.ghi", nil, ""},
		{"b64token characters", []string{"Bearer aZ09-._~+/=="}, "aZ09-._~+/==", nil, ""},
		{"no header", nil, "", ErrNoToken, ""},
		{"empty header", []string{""}, "", ErrNoToken, ""},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, "", ErrNoToken, ""},
		{"scheme only as prefix", []string{"Bearerabc"}, "", ErrNoToken, ""},
		{"bearer without token", []string{"Bearer"}, "", nil, CodeInvalidRequest},
		{"bearer with blank token", []string{"Bearer    "}, "", nil, CodeInvalidRequest},
		{"two tokens", []string{"Bearer abc def"}, "", nil, CodeInvalidRequest},
		{"comma-joined", []string{"Bearer abc, Bearer def"}, "", nil, CodeInvalidRequest},
		{"padding only", []string{"Bearer =="}, "", nil, CodeInvalidRequest},
		{"padding inside", []string{"Bearer ab=c"}, "", nil, CodeInvalidRequest},
		{"quotes", []string{`Bearer "abc"`}, "", nil, CodeInvalidRequest},
		{"several headers", []string{"Bearer abc", "Bearer def"}, "", nil, CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.values {
				h.Add("Authorization", v)
			}
			token, err := BearerToken(h)
			if token != tt.wantToken {
				t.Errorf("token = %q, want %q", token, tt.wantToken)
			}
			switch {
			case tt.wantCode != "":
				var tokenErr *TokenError
				if !errors.As(err, &tokenErr) || tokenErr.Code != tt.wantCode {
					t.Errorf("error = %v, want a *TokenError with code %s", err, tt.wantCode)
				}
			case !errors.Is(err, tt.wantErr):
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestTokenError(t *testing.T) {
	cause := errors.New("crypto/rsa: verification error")
	tests := []struct {
		name      string
		err       *TokenError
		want      string
		wantCause error
	}{
		{"with cause", invalidToken("invalid signature", cause), "invalid_token: invalid signature: crypto/rsa: verification error", cause},
		{"without cause", invalidRequest("several Authorization headers"), "invalid_request: several Authorization headers", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if got := errors.Unwrap(tt.err); got != tt.wantCause {
				t.Errorf("Unwrap() = %v, want %v", got, tt.wantCause)
			}
		})
	}
}

func TestRefusal(t *testing.T) {
	const (
		jwksURL = "https://idp.internal.example.com/jwks.json"
		dialErr = "dial tcp 10.0.0.7:443: connect: connection refused"
		kid     = "kid-2026-secret"
	)
	idpDown := fmt.Errorf("fetching JWKS %s: %w", jwksURL, errors.New(dialErr))
	const keysUnavailable = "the identity provider's signing keys are unavailable; try again later"
	tests := []struct {
		name            string
		err             error
		wantStatus      int
		wantCode        string
		wantDescription string
		// hidden is what err says, for the log, and the description must not.
		hidden []string
	}{
		{"no token", ErrNoToken, http.StatusUnauthorized, "", "no bearer token", nil},
		{"malformed request", invalidRequest("several Authorization headers"),
			http.StatusBadRequest, CodeInvalidRequest, "several Authorization headers", nil},
		{"rejected token", invalidToken("token expired", errors.New(`"exp" not satisfied`)),
			http.StatusUnauthorized, CodeInvalidToken, "token expired", []string{`"exp" not satisfied`}},
		{"unknown key while the identity provider is down",
			invalidToken("unknown signing key", errors.Join(fmt.Errorf("no EC key %q in the JWKS", kid), idpDown)),
			http.StatusUnauthorized, CodeInvalidToken, "unknown signing key", []string{kid, jwksURL, dialErr}},
		{"wrapped rejection", fmt.Errorf("identifying caller: %w", invalidToken("wrong audience", nil)),
			http.StatusUnauthorized, CodeInvalidToken, "wrong audience", nil},
		{"keys unavailable", fmt.Errorf("verifying bearer token: %w", fmt.Errorf("%w: %w", ErrKeysUnavailable, idpDown)),
			http.StatusServiceUnavailable, "", keysUnavailable, []string{jwksURL, dialErr}},
		{"canceled", fmt.Errorf("verifying bearer token: %w", context.Canceled),
			http.StatusServiceUnavailable, "", "could not verify the token; try again later", []string{context.Canceled.Error()}},
		{"unknown error", fmt.Errorf("reading %s: %w", jwksURL, errors.New(dialErr)),
			http.StatusServiceUnavailable, "", "could not verify the token; try again later", []string{jwksURL, dialErr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code, description := Refusal(tt.err)
			if status != tt.wantStatus || code != tt.wantCode || description != tt.wantDescription {
				t.Errorf("Refusal = %d, %q, %q; want %d, %q, %q", status, code, description, tt.wantStatus, tt.wantCode, tt.wantDescription)
			}
			for _, detail := range tt.hidden {
				if !strings.Contains(tt.err.Error(), detail) {
					t.Errorf("error %q does not hold %q, want it kept for the log", tt.err, detail)
				}
				if strings.Contains(description, detail) {
					t.Errorf("description %q holds %q, want it left in the error", description, detail)
				}
			}
		})
	}
}

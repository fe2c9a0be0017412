package identity

import (
	"errors"
	"net/http"
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

// Package identity tells the gateway who is calling: it takes the OAuth 2.0
// bearer token from a request (RFC 6750), verifies it as a JWT signed by a
// key from the authorization server's JWKS, and describes the gateway as an
// OAuth protected resource (RFC 9728) so that MCP clients can find where to
// get a token, as the MCP authorization specification (revisions 2025-06-18
// and 2025-11-25, "basic/authorization") requires.
//
// A handler that requires identity maps the errors to responses with
// Refusal, which tells the client only a status, a code and a fixed phrase
// (the details, such as the JWKS URL of an identity provider that is down,
// stay in the error, for the log):
//
//   - ErrNoToken: 401 with Challenge, which then names no error (RFC 6750
//     §3.1: a request without credentials gets no error code);
//   - *TokenError with Code "invalid_request": 400 (RFC 6750 §3.1) with
//     Challenge;
//   - *TokenError with Code "invalid_token": 401 with Challenge;
//   - ErrKeysUnavailable, or any other error: the gateway could not check
//     the token, so 503 rather than a challenge the client cannot answer.
package identity

import (
	"errors"
	"net/http"
	"strings"
)

// User is a verified caller.
type User struct {
	// ID is the caller's stable identifier: the token's "sub" claim.
	ID string
	// Claims are all of the token's claims, decoded as JSON with numbers as
	// json.Number (as the rest of the policy input holds them), so numeric
	// dates such as "exp" stay whole seconds.
	Claims map[string]any
}

// ErrNoToken reports a request that presents no bearer token: it has no
// Authorization header, or one for another scheme.
var ErrNoToken = errors.New("no bearer token")

// ErrKeysUnavailable reports that the verifier has no signing keys because
// the JWKS could not be fetched; the token was not judged.
var ErrKeysUnavailable = errors.New("signing keys unavailable")

// RFC 6750 §3.1 error codes a TokenError carries.
const (
	// CodeInvalidRequest is for a malformed Authorization header.
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidToken is for a token that is malformed, expired, not
	// correctly signed or not meant for this resource.
	CodeInvalidToken = "invalid_token"
)

// TokenError reports a bearer token that was presented but rejected.
type TokenError struct {
	// Code is CodeInvalidRequest or CodeInvalidToken.
	Code string
	// Description says what was wrong in a short fixed phrase, one per
	// kind of rejection ("malformed token", "token expired"), that is safe
	// to send back to the client: it never holds the token, a key id, a
	// URL or the cause.
	Description string
	// Err is the underlying cause, for logs; it may be nil.
	Err error
}

// Error returns the code, description and cause, for logs.
func (e *TokenError) Error() string {
	msg := e.Code + ": " + e.Description
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying cause.
func (e *TokenError) Unwrap() error {
	return e.Err
}

// phrase is a TokenError's Description. Only constants convert to it
// implicitly, so a description built from a cause, a key id or the token
// does not compile.
type phrase string

func invalidRequest(description phrase) *TokenError {
	return &TokenError{Code: CodeInvalidRequest, Description: string(description)}
}

func invalidToken(description phrase, cause error) *TokenError {
	return &TokenError{Code: CodeInvalidToken, Description: string(description), Err: cause}
}

// Refusal returns what a client may be told about a failed identification:
// the HTTP status, the RFC 6750 error code ("" when none) and a short fixed
// description. Details stay in err, for the log.
func Refusal(err error) (status int, code, description string) {
	var tokenErr *TokenError
	switch {
	case errors.Is(err, ErrNoToken):
		return http.StatusUnauthorized, "", "no bearer token"
	case errors.As(err, &tokenErr) && tokenErr.Code == CodeInvalidRequest:
		return http.StatusBadRequest, CodeInvalidRequest, tokenErr.Description
	case errors.As(err, &tokenErr) && tokenErr.Code == CodeInvalidToken:
		return http.StatusUnauthorized, CodeInvalidToken, tokenErr.Description
	case errors.Is(err, ErrKeysUnavailable):
		return http.StatusServiceUnavailable, "", "the identity provider's signing keys are unavailable; try again later"
	}
	return http.StatusServiceUnavailable, "", "could not verify the token; try again later"
}

// BearerToken extracts the token from the request's Authorization header
// ("Bearer <token>", scheme case-insensitive). It returns ErrNoToken when
// there is no Authorization header, an empty one or one for another scheme,
// and a *TokenError with CodeInvalidRequest when there are several
// Authorization headers or the bearer token is empty or not a b64token.
func BearerToken(h http.Header) (string, error) {
	values := h.Values("Authorization")
	switch {
	case len(values) == 0:
		return "", ErrNoToken
	case len(values) > 1:
		return "", invalidRequest("several Authorization headers")
	}
	scheme, credentials, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	token := strings.TrimLeft(credentials, " ")
	if token == "" {
		return "", invalidRequest("empty bearer token")
	}
	if !isB64Token(token) {
		return "", invalidRequest("malformed bearer token")
	}
	return token, nil
}

// isB64Token reports whether s has the syntax of RFC 6750 §2.1:
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for _, c := range []byte(body) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

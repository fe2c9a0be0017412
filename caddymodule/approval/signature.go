package approval

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file signs and verifies messages as the Standard Webhooks
// specification (https://www.standardwebhooks.com, "Signature scheme")
// defines: the signed content is "<webhook-id>.<webhook-timestamp>.<body>",
// the signature is HMAC-SHA256 with the secret's key, sent as
// "v1,<base64>" in webhook-signature (several may be given, separated by
// spaces, during a key rotation).

// The Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far a message's timestamp may lie from the receiver's
// clock; older (or newer) messages are refused as possible replays.
const Tolerance = 5 * time.Minute

// secretPrefix opens a Standard Webhooks secret.
const secretPrefix = "whsec_"

// Errors Verify returns, wrapped with details.
var (
	// ErrUnsigned: a Standard Webhooks header is missing.
	ErrUnsigned = errors.New("message is not signed")
	// ErrBadSignature: no signature matches.
	ErrBadSignature = errors.New("signature does not match")
	// ErrStale: the timestamp is too far from now.
	ErrStale = errors.New("timestamp is outside the tolerance")
)

// Secret is a Standard Webhooks signing key.
type Secret struct {
	key []byte
}

// ParseSecret reads a secret written as "whsec_<base64 key>" (the prefix
// may be left out). Keys shorter than 24 bytes are refused, as the
// specification's minimum.
func ParseSecret(s string) (Secret, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, secretPrefix))
	if err != nil {
		return Secret{}, fmt.Errorf("webhook secret is not whsec_<base64>: %w", err)
	}
	if len(key) < 24 {
		return Secret{}, fmt.Errorf("webhook secret key has %d bytes, want at least 24", len(key))
	}
	return Secret{key: key}, nil
}

// ID names the key without revealing it: the first 8 bytes of its
// SHA-256, in hex. Approvals record it, so that only the secret that
// announced an approval can decide it.
func (s Secret) ID() string {
	sum := sha256.Sum256(s.key)
	return hex.EncodeToString(sum[:8])
}

// Equal reports whether both secrets hold the same key.
func (s Secret) Equal(other Secret) bool {
	return hmac.Equal(s.key, other.key)
}

// Sign returns the webhook-signature value for a message.
func (s Secret) Sign(id string, timestamp time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(s.mac(id, strconv.FormatInt(timestamp.Unix(), 10), body))
}

// SetHeaders signs body as message id, sent now, into h.
func (s Secret) SetHeaders(h http.Header, id string, now time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, s.Sign(id, now, body))
}

// FormToken returns a token that only holders of the secret can make,
// bound to a user and an approval id: the inbox page's forms carry it, so
// that no other site can make a signed-in approver's browser decide.
func (s Secret) FormToken(user, id string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("mcpgate-inbox", user, []byte(id)))
}

// CheckFormToken reports whether token is FormToken(user, id).
func (s Secret) CheckFormToken(token, user, id string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && hmac.Equal(got, s.mac("mcpgate-inbox", user, []byte(id)))
}

func (s Secret) mac(id, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks the Standard Webhooks headers of a message with body
// received at now, and returns its webhook-id. The signature is checked
// before the timestamp, so that an unsigned sender learns nothing.
func (s Secret) Verify(h http.Header, body []byte, now time.Time) (string, error) {
	id, timestamp, signatures := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || timestamp == "" || signatures == "" {
		return "", fmt.Errorf("%w: %s, %s and %s are required", ErrUnsigned, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	want := s.mac(id, timestamp, body)
	matched := false
	for _, signature := range strings.Fields(signatures) {
		version, value, ok := strings.Cut(signature, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(value)
		if err == nil && hmac.Equal(got, want) {
			matched = true
			break
		}
	}
	if !matched {
		return "", ErrBadSignature
	}
	seconds, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q is not a Unix time", ErrStale, HeaderTimestamp, timestamp)
	}
	if skew := now.Sub(time.Unix(seconds, 0)); skew > Tolerance || skew < -Tolerance {
		return "", fmt.Errorf("%w: sent %s from now", ErrStale, skew.Round(time.Second))
	}
	return id, nil
}

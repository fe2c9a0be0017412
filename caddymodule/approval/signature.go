package approval

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
		return Secret{}, fmt.Errorf("the secret is not whsec_<base64>: %w", err)
	}
	if len(key) < 24 {
		return Secret{}, fmt.Errorf("the secret's key has %d bytes, want at least 24", len(key))
	}
	return Secret{key: key}, nil
}

// ID names the key without revealing it: the first 8 bytes of its
// SHA-256, in hex. Approvals record the ID of the decision secret they
// were announced under (see Approval.KeyID).
func (s Secret) ID() string {
	sum := sha256.Sum256(s.key)
	return hex.EncodeToString(sum[:8])
}

// Equal reports whether both secrets sign alike: whether HMAC-SHA256
// uses the same key for both (see hmacKey).
func (s Secret) Equal(other Secret) bool {
	return hmac.Equal(s.hmacKey(), other.hmacKey())
}

// hmacKey is the key HMAC-SHA256 signs with for s, as RFC 2104 makes it
// from the key given, without the zeros it pads it with to its block (64
// bytes): a key longer than the block is hashed first, and a shorter one
// padded, so that a key and its SHA-256, or a key and the same with
// zero bytes after it, are one key to HMAC.
func (s Secret) hmacKey() []byte {
	key := s.key
	if len(key) > sha256.BlockSize {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	return bytes.TrimRight(key, "\x00")
}

// Sign returns the webhook-signature value for a message.
func (s Secret) Sign(id string, timestamp time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(s.mac(id, strconv.FormatInt(timestamp.Unix(), 10), body))
}

// SetHeaders signs body as message id, sent now, into h.
func (s Secret) SetHeaders(h http.Header, id string, now time.Time, body []byte) {
	setHeaders(h, id, now, body, []Secret{s})
}

// setHeaders signs body as message id, sent now, into h, with every one of
// secrets: webhook-signature holds one signature per secret, separated by
// spaces.
func setHeaders(h http.Header, id string, now time.Time, body []byte, secrets []Secret) {
	signatures := make([]string, len(secrets))
	for i, s := range secrets {
		signatures[i] = s.Sign(id, now, body)
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(signatures, " "))
}

// formToken returns a token that only holders of the secret can make,
// bound to a user and an approval id (see Service.FormToken).
func (s Secret) formToken(user, id string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("mcpgate-inbox", user, []byte(id)))
}

// checkFormToken reports whether token is formToken(user, id).
func (s Secret) checkFormToken(token, user, id string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && hmac.Equal(got, s.mac("mcpgate-inbox", user, []byte(id)))
}

// CheckDistinctSecrets checks the secrets of approvals: at least one
// webhook secret and one decision secret, none of them unset, and no
// webhook secret that is also a decision secret. A webhook secret is given
// to whoever receives approval requests; were it a decision secret, they
// could decide the approvals as well as read them.
func CheckDistinctSecrets(webhook, decision []Secret) error {
	if len(webhook) == 0 {
		return errors.New("at least one webhook secret is required")
	}
	if len(decision) == 0 {
		return errors.New("at least one decision secret is required")
	}
	for i, w := range webhook {
		if len(w.key) == 0 {
			return fmt.Errorf("webhook secret %d is unset", i+1)
		}
	}
	for j, d := range decision {
		if len(d.key) == 0 {
			return fmt.Errorf("decision secret %d is unset", j+1)
		}
		if i, ok := SignsAs(webhook, d); ok {
			return fmt.Errorf("webhook secret %d is also decision secret %d (key %s): "+
				"whoever receives approval requests could decide them; use distinct secrets", i+1, j+1, d.ID())
		}
	}
	return nil
}

// SignsAs returns the index of the first of secrets that signs as s does
// (Equal), if one does.
func SignsAs(secrets []Secret, s Secret) (int, bool) {
	i := slices.IndexFunc(secrets, s.Equal)
	return i, i >= 0
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
	return verify(h, body, now, []Secret{s})
}

// verify is Verify for a message that any of secrets may have signed.
func verify(h http.Header, body []byte, now time.Time, secrets []Secret) (string, error) {
	id, timestamp, signatures := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || timestamp == "" || signatures == "" {
		return "", fmt.Errorf("%w: %s, %s and %s are required", ErrUnsigned, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	if !signedByAny(id, timestamp, body, strings.Fields(signatures), secrets) {
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

// signedByAny reports whether one of the v1 signatures is the message's
// signature under one of the secrets.
func signedByAny(id, timestamp string, body []byte, signatures []string, secrets []Secret) bool {
	for _, s := range secrets {
		if len(s.key) == 0 {
			continue // an unset secret would let anyone sign
		}
		want := s.mac(id, timestamp, body)
		for _, signature := range signatures {
			version, value, ok := strings.Cut(signature, ",")
			if !ok || version != "v1" {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(value)
			if err == nil && hmac.Equal(got, want) {
				return true
			}
		}
	}
	return false
}

// Package sessiontoken seals MCP session ids: the gateway hands a client,
// in place of the session id its upstream chose, a token that carries that
// id together with what the session is bound to (the upstream it belongs
// to, the caller who opened it, its transport), encrypted and
// authenticated with AES-256-GCM. On every request the gateway opens the
// token, checks the binding and forwards the upstream's own id. The
// binding needs no state in the gateway, so it holds across restarts,
// replicas and any number of sessions; a token the gateway cannot open
// names no session of its.
//
// Keys rotate: a Sealer seals with its first key and opens with any, so
// adding a new key in front keeps live sessions while new ones move to
// it, and removing the old key later ends the sessions sealed with it.
//
// The package knows nothing of Caddy or HTTP.
package sessiontoken

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of a sealing key: AES-256.
const KeySize = 32

// prefix opens every token, naming the format.
const prefix = "mcpgate1."

// Kind is the transport a session belongs to.
type Kind byte

// The kinds of sessions.
const (
	// Streamable is a Streamable HTTP session: the id is the upstream's
	// Mcp-Session-Id.
	Streamable Kind = 1
	// Legacy is an HTTP+SSE session of MCP 2024-11-05: the id is the
	// message endpoint the upstream named (path and query).
	Legacy Kind = 2
	// RequestState is not a session but what a sealed requestState of a
	// multi-round-trip request holds (2026-07-28): the id holds it.
	RequestState Kind = 3
	// Approval is not a session but a token naming the session an
	// approval was asked in: the id holds that session's id.
	Approval Kind = 4
)

// Session is what a token carries.
type Session struct {
	// Kind is the transport.
	Kind Kind
	// Caller is the id of the caller who opened the session; "" when the
	// gateway identifies nobody.
	Caller string
	// ID is the upstream's own id of the session.
	ID string
	// Capabilities are what the client declared when it opened the
	// session, as flags its user defines.
	Capabilities byte
}

// Errors Open returns.
var (
	// ErrMalformed: the token is not one this package makes.
	ErrMalformed = errors.New("malformed session token")
	// ErrUnknownKey: no key of the sealer's opens it (it was sealed by
	// another gateway, or with a key since retired), or it was forged.
	ErrUnknownKey = errors.New("session token sealed with an unknown key")
)

// Sealer seals and opens session tokens. It is safe for concurrent use.
type Sealer struct {
	keys []sealingKey
}

type sealingKey struct {
	id   [4]byte
	aead cipher.AEAD
	// nonceKey makes each token's nonce from what it seals (see Seal).
	nonceKey []byte
}

// New returns a sealer that seals with the first key and opens with any.
// Every key must be KeySize bytes, and no two may be equal.
func New(keys ...[]byte) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("session keys: at least one key is required")
	}
	s := &Sealer{}
	seen := make(map[[sha256.Size]byte]bool)
	for i, key := range keys {
		if len(key) != KeySize {
			return nil, fmt.Errorf("session key %d has %d bytes, want %d", i+1, len(key), KeySize)
		}
		sum := sha256.Sum256(key)
		if seen[sum] {
			return nil, fmt.Errorf("session key %d is given twice", i+1)
		}
		seen[sum] = true
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("session key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("session key %d: %w", i+1, err)
		}
		nonceMAC := hmac.New(sha256.New, key)
		nonceMAC.Write([]byte("mcpgate session nonce"))
		k := sealingKey{aead: aead, nonceKey: nonceMAC.Sum(nil)}
		copy(k.id[:], sum[:])
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// ParseKey reads a key written as base64 (standard or URL alphabet, with
// or without padding).
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	for _, encoding := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if key, err := encoding.DecodeString(s); err == nil {
			if len(key) != KeySize {
				return nil, fmt.Errorf("session key has %d bytes, want %d", len(key), KeySize)
			}
			return key, nil
		}
	}
	return nil, errors.New("session key is not base64")
}

// NewKey returns a fresh random key.
func NewKey() []byte {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key)
	return key
}

// Seal returns the token for session within scope (the upstream the
// session belongs to: a token opens only within the scope it was sealed
// for).
//
// The same session always gets the same token: clients compare the
// session ids of successive replies (the Go SDK refuses a session whose
// id changes), and upstreams repeat the id in every reply, which the
// gateway seals anew each time. So the nonce is not random but made
// from what is sealed, with an HMAC under a key of its own (a synthetic
// IV, as in AES-SIV, RFC 5297): a nonce repeats only for the same
// plaintext, which then gives the same token, and reveals nothing but
// that equality.
func (s *Sealer) Seal(scope string, session Session) string {
	k := s.keys[0]
	plain := make([]byte, 0, 2+len(session.Caller)+len(session.ID)+binary.MaxVarintLen64)
	plain = append(plain, byte(session.Kind), session.Capabilities)
	plain = binary.AppendUvarint(plain, uint64(len(session.Caller)))
	plain = append(plain, session.Caller...)
	plain = append(plain, session.ID...)
	sealed := make([]byte, len(k.id), len(k.id)+k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	copy(sealed, k.id[:])
	aad := additionalData(scope, k.id)
	nonceMAC := hmac.New(sha256.New, k.nonceKey)
	nonceMAC.Write(aad)
	nonceMAC.Write(plain)
	nonce := nonceMAC.Sum(nil)[:k.aead.NonceSize()]
	sealed = append(sealed, nonce...)
	sealed = k.aead.Seal(sealed, nonce, plain, aad)
	return prefix + base64.RawURLEncoding.EncodeToString(sealed)
}

// Open returns the session a token carries, if it was sealed for scope by
// a key of the sealer's.
func (s *Sealer) Open(scope, token string) (Session, error) {
	encoded, ok := strings.CutPrefix(token, prefix)
	if !ok {
		return Session{}, ErrMalformed
	}
	sealed, err := base64.RawURLEncoding.Strict().DecodeString(encoded)
	if err != nil || len(sealed) < 4 {
		return Session{}, ErrMalformed
	}
	for _, k := range s.keys {
		if [4]byte(sealed[:4]) != k.id {
			continue
		}
		rest := sealed[4:]
		if len(rest) < k.aead.NonceSize()+k.aead.Overhead() {
			return Session{}, ErrMalformed
		}
		nonce, ciphertext := rest[:k.aead.NonceSize()], rest[k.aead.NonceSize():]
		plain, err := k.aead.Open(nil, nonce, ciphertext, additionalData(scope, k.id))
		if err != nil {
			return Session{}, ErrUnknownKey
		}
		return decode(plain)
	}
	return Session{}, ErrUnknownKey
}

// additionalData binds a token to its scope and key.
func additionalData(scope string, id [4]byte) []byte {
	return append(append([]byte("mcpgate session v1\x00"), id[:]...), scope...)
}

// decode reads the plaintext Seal wrote.
func decode(plain []byte) (Session, error) {
	if len(plain) < 3 {
		return Session{}, ErrMalformed
	}
	session := Session{Kind: Kind(plain[0]), Capabilities: plain[1]}
	if session.Kind < Streamable || session.Kind > Approval {
		return Session{}, ErrMalformed
	}
	n, size := binary.Uvarint(plain[2:])
	if size <= 0 || n > uint64(len(plain)-2-size) {
		return Session{}, ErrMalformed
	}
	rest := plain[2+size:]
	session.Caller, session.ID = string(rest[:n]), string(rest[n:])
	return session, nil
}

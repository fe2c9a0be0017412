package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/identity"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// Identity sources.
const (
	// IdentityJWT verifies bearer tokens (JWTs signed by a key from a JWKS).
	IdentityJWT = "jwt"
	// IdentityCaddy takes the user an earlier Caddy handler established
	// (basic_auth, forward_auth, any http.auth.user.* provider).
	IdentityCaddy = "caddy"
)

// IdentityConfig says how the gateway learns who is calling. With an
// identity, every request must identify its caller, sessions are bound to
// the caller who created them, and policy input carries input.user.
type IdentityConfig struct {
	// Source is "jwt" or "caddy".
	Source string `json:"source"`

	// JWKSURL is where the authorization server publishes its keys (jwt).
	JWKSURL string `json:"jwks_url,omitempty"`
	// Issuer is the exact "iss" tokens must carry (jwt).
	Issuer string `json:"issuer,omitempty"`
	// Audience lists accepted "aud" values: the gateway's canonical URI
	// (jwt).
	Audience []string `json:"audience,omitempty"`
	// Resource is the gateway's canonical URI, named in the protected
	// resource metadata (RFC 9728). Default: the first audience (jwt).
	Resource string `json:"resource,omitempty"`
	// AuthorizationServers are named in the protected resource metadata,
	// so MCP clients know where to get tokens. Default: the issuer (jwt).
	AuthorizationServers []string `json:"authorization_servers,omitempty"`
	// Scopes are advertised in the metadata and in 401 challenges (jwt).
	Scopes []string `json:"scopes,omitempty"`

	// User is the placeholder holding the user id an earlier handler set
	// (caddy). Default: {http.auth.user.id}.
	User string `json:"user,omitempty"`
}

// callerKey is the request context key of the identified caller.
type callerKey struct{}

// caller returns the user identify stored in the request, or nil.
func caller(r *http.Request) *policy.User {
	user, _ := r.Context().Value(callerKey{}).(*policy.User)
	return user
}

// callerGate is the runtime side of an IdentityConfig.
type callerGate struct {
	config       *IdentityConfig
	verifier     *identity.JWTVerifier
	metadata     []byte
	metadataPath string
	metadataURL  string
	sessions     *sessionOwners
}

func newCallerGate(ctx context.Context, cfg *IdentityConfig) (*callerGate, error) {
	gate := &callerGate{config: cfg, sessions: newSessionOwners(sessionOwnerLimit)}
	switch cfg.Source {
	case IdentityCaddy:
		return gate, nil
	case IdentityJWT:
	default:
		return nil, fmt.Errorf("identity: unknown source %q (want jwt or caddy)", cfg.Source)
	}
	verifier, err := identity.NewJWTVerifier(ctx, identity.JWTConfig{
		JWKSURL:  cfg.JWKSURL,
		Issuer:   cfg.Issuer,
		Audience: cfg.Audience,
	})
	if err != nil {
		return nil, fmt.Errorf("identity jwt: %w", err)
	}
	gate.verifier = verifier
	resource := cfg.Resource
	if resource == "" && len(cfg.Audience) > 0 {
		resource = cfg.Audience[0]
	}
	servers := cfg.AuthorizationServers
	if len(servers) == 0 {
		servers = []string{cfg.Issuer}
	}
	if gate.metadataPath, err = identity.MetadataPath(resource); err != nil {
		return nil, fmt.Errorf("identity jwt: %w", err)
	}
	if gate.metadataURL, err = identity.MetadataURL(resource); err != nil {
		return nil, fmt.Errorf("identity jwt: %w", err)
	}
	gate.metadata, err = json.Marshal(identity.ProtectedResourceMetadata{
		Resource:               resource,
		AuthorizationServers:   servers,
		ScopesSupported:        cfg.Scopes,
		BearerMethodsSupported: []string{"header"},
	})
	if err != nil {
		return nil, fmt.Errorf("identity jwt: encoding metadata: %w", err)
	}
	return gate, nil
}

func (g *callerGate) close() error {
	if g.verifier != nil {
		return g.verifier.Close()
	}
	return nil
}

// servesMetadata reports whether r asks for the protected resource
// metadata, which is public.
func (g *callerGate) servesMetadata(r *http.Request) bool {
	return g.metadata != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path == g.metadataPath
}

func (g *callerGate) writeMetadata(w http.ResponseWriter) {
	// Browser-based MCP clients fetch it cross-origin; it holds nothing
	// secret.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "max-age=3600")
	writeJSON(w, http.StatusOK, g.metadata)
}

// identify returns who is calling, or an HTTP status and error to refuse
// the request with.
func (g *callerGate) identify(r *http.Request) (*policy.User, int, error) {
	switch g.config.Source {
	case IdentityCaddy:
		placeholder := g.config.User
		if placeholder == "" {
			placeholder = "{http.auth.user.id}"
		}
		repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		id := ""
		if repl != nil {
			id = repl.ReplaceKnown(placeholder, "")
		}
		if id == "" {
			return nil, http.StatusUnauthorized, errors.New("no authenticated user: an earlier handler must authenticate the request")
		}
		return &policy.User{ID: id, Claims: map[string]any{}}, 0, nil
	default:
		token, err := identity.BearerToken(r.Header)
		if err == nil {
			var user *identity.User
			if user, err = g.verifier.Verify(r.Context(), token); err == nil {
				return &policy.User{ID: user.ID, Claims: user.Claims}, 0, nil
			}
		}
		var tokenErr *identity.TokenError
		switch {
		case errors.Is(err, identity.ErrKeysUnavailable):
			return nil, http.StatusServiceUnavailable, errors.New("the identity provider's signing keys are unavailable; try again later")
		case errors.As(err, &tokenErr) && tokenErr.Code == identity.CodeInvalidRequest:
			return nil, http.StatusBadRequest, err
		}
		return nil, http.StatusUnauthorized, err
	}
}

// admit identifies the caller and checks the session it names. It returns
// the request carrying the caller, or false when it has answered the
// request itself (metadata, or a refusal).
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) (*http.Request, http.ResponseWriter, bool) {
	g := h.callers
	if g.servesMetadata(r) {
		g.writeMetadata(w)
		return nil, nil, false
	}
	user, status, err := g.identify(r)
	if err != nil {
		if status != http.StatusServiceUnavailable && g.metadataURL != "" {
			w.Header().Set("WWW-Authenticate", identity.Challenge(g.metadataURL, err, g.config.Scopes))
		}
		h.logger.Info("caller refused", zap.Int("status", status), zap.Error(err), zap.String("remote_ip", clientIP(r)))
		writeJSON(w, status, mcpmsg.ErrorResponse(nil, mcpmsg.CodeInvalidRequest, "unauthorized: "+err.Error()))
		return nil, nil, false
	}
	if sessions := r.Header.Values(mcphttp.HeaderSessionID); len(sessions) > 1 {
		// Which copy an upstream reads is not something to guess.
		writeJSON(w, http.StatusBadRequest, mcpmsg.ErrorResponse(nil, mcpmsg.CodeInvalidRequest, "Mcp-Session-Id given more than once"))
		return nil, nil, false
	}
	if session := r.Header.Get(mcphttp.HeaderSessionID); session != "" {
		if owner, bound := g.sessions.owner(session); bound && owner != user.ID {
			h.logger.Warn("session presented by another user refused",
				zap.String("user", user.ID), zap.String("remote_ip", clientIP(r)))
			writeJSON(w, http.StatusForbidden, mcpmsg.ErrorResponse(nil, mcpmsg.CodeInvalidRequest, "this session belongs to another user"))
			return nil, nil, false
		}
		if r.Method == http.MethodDelete {
			defer g.sessions.forget(session)
		}
	} else {
		w = &sessionBinder{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, owners: g.sessions, user: user.ID}
	}
	if !h.ForwardToken {
		// The token was issued for the gateway; passing it on would be
		// the token passthrough the MCP authorization spec forbids.
		r.Header.Del("Authorization")
	}
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, user)), w, true
}

// sessionBinder binds the session an upstream creates (the Mcp-Session-Id
// of its reply) to the caller who created it.
type sessionBinder struct {
	*caddyhttp.ResponseWriterWrapper
	owners *sessionOwners
	user   string
	done   bool
}

// WriteHeader binds the session named in the reply, if any.
func (b *sessionBinder) WriteHeader(status int) {
	if !b.done {
		b.done = true
		if session := b.Header().Get(mcphttp.HeaderSessionID); session != "" {
			b.owners.bind(session, b.user)
		}
	}
	b.ResponseWriterWrapper.WriteHeader(status)
}

// Write writes the header first, so that an implicit 200 binds too.
func (b *sessionBinder) Write(p []byte) (int, error) {
	if !b.done {
		b.WriteHeader(http.StatusOK)
	}
	return b.ResponseWriterWrapper.Write(p)
}

// sessionOwnerLimit bounds how many sessions are remembered; the oldest
// are forgotten first (and then refused nobody: an unknown session is the
// upstream's to refuse).
const sessionOwnerLimit = 100_000

// sessionOwnerTTL is how long an idle binding is kept.
const sessionOwnerTTL = 24 * time.Hour

// sessionOwners remembers which user created each session.
type sessionOwners struct {
	mu     sync.Mutex
	owners map[string]sessionOwner
	limit  int
}

type sessionOwner struct {
	user string
	seen time.Time
}

func newSessionOwners(limit int) *sessionOwners {
	return &sessionOwners{owners: make(map[string]sessionOwner), limit: limit}
}

func (s *sessionOwners) bind(session, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.owners[session]; ok {
		return
	}
	if len(s.owners) >= s.limit {
		s.evictLocked()
	}
	s.owners[session] = sessionOwner{user: user, seen: time.Now()}
}

func (s *sessionOwners) owner(session string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owners[session]
	if !ok || time.Since(o.seen) > sessionOwnerTTL {
		return "", false
	}
	o.seen = time.Now()
	s.owners[session] = o
	return o.user, true
}

func (s *sessionOwners) forget(session string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.owners, session)
}

// evictLocked drops expired bindings, or the oldest tenth when none has
// expired.
func (s *sessionOwners) evictLocked() {
	var oldest []time.Time
	for session, o := range s.owners {
		if time.Since(o.seen) > sessionOwnerTTL {
			delete(s.owners, session)
		} else {
			oldest = append(oldest, o.seen)
		}
	}
	if len(s.owners) < s.limit {
		return
	}
	cutoff := nthOldest(oldest, len(oldest)/10)
	for session, o := range s.owners {
		if !o.seen.After(cutoff) {
			delete(s.owners, session)
		}
	}
}

func nthOldest(times []time.Time, n int) time.Time {
	slices.SortFunc(times, time.Time.Compare)
	return times[n]
}

// unmarshalIdentity parses `identity jwt { jwks_url; issuer; audience...;
// resource; authorization_servers...; scopes... }` or
// `identity caddy [<placeholder>]`.
func unmarshalIdentity(d *caddyfile.Dispenser) (*IdentityConfig, error) {
	cfg := new(IdentityConfig)
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	cfg.Source = d.Val()
	switch cfg.Source {
	case IdentityCaddy:
		if d.NextArg() {
			cfg.User = d.Val()
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		return cfg, nil
	case IdentityJWT:
	default:
		return nil, d.Errf("identity: unknown source %q (want jwt or caddy)", cfg.Source)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		args := d.RemainingArgs()
		single := func(dst *string) error {
			if len(args) != 1 {
				return d.Errf("identity jwt: %s takes one value", key)
			}
			*dst = args[0]
			return nil
		}
		var err error
		switch key {
		case "jwks_url":
			err = single(&cfg.JWKSURL)
		case "issuer":
			err = single(&cfg.Issuer)
		case "resource":
			err = single(&cfg.Resource)
		case "audience":
			cfg.Audience = append(cfg.Audience, args...)
		case "authorization_servers":
			cfg.AuthorizationServers = append(cfg.AuthorizationServers, args...)
		case "scopes":
			cfg.Scopes = append(cfg.Scopes, args...)
		default:
			return nil, d.Errf("identity jwt: unrecognized subdirective %q", key)
		}
		if err != nil {
			return nil, err
		}
		if len(args) == 0 {
			return nil, d.Errf("identity jwt: %s needs a value", key)
		}
	}
	return cfg, nil
}

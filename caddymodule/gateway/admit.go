package gateway

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/identity"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// callerKey is the request context key of the identified caller.
type callerKey struct{}

// callerOf returns the caller admit identified for r, or nil.
func callerOf(r *http.Request) *policy.User {
	user, _ := r.Context().Value(callerKey{}).(*policy.User)
	return user
}

// admit is the first stage: the request's origin must be allowed, and,
// with an identity, the caller is identified and the session it names
// must be theirs.
func (x *exchange) admit() error {
	if err := x.g.cfg.Origins.Check(x.r); err != nil {
		return refuse(http.StatusForbidden, mcpmsg.CodeInvalidRequest, err.Error())
	}
	c := x.g.callers
	if c == nil {
		return nil
	}
	if c.servesMetadata(x.r) {
		c.writeMetadata(x.w)
		return errDone
	}
	user, err := c.identify(x.r)
	if err != nil {
		status, description := c.refusal(err)
		if status != http.StatusServiceUnavailable && c.metadataURL != "" {
			x.w.Header().Set("WWW-Authenticate", identity.Challenge(c.metadataURL, err, c.config.Scopes))
		}
		x.g.logger.Info("caller refused", zap.Int("status", status), zap.Error(err), zap.String("remote_ip", x.g.host.ClientIP(x.r)))
		return refuse(status, mcpmsg.CodeInvalidRequest, "unauthorized: "+description)
	}
	if sessions := x.r.Header.Values(mcphttp.HeaderSessionID); len(sessions) > 1 {
		// Which copy an upstream reads is not something to guess.
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, "Mcp-Session-Id given more than once")
	}
	if session := x.r.Header.Get(mcphttp.HeaderSessionID); session != "" {
		if owner, bound := c.sessions.owner(session); bound && owner != user.ID {
			x.g.logger.Warn("session presented by another user refused",
				zap.String("user", user.ID), zap.String("remote_ip", x.g.host.ClientIP(x.r)))
			return refuse(http.StatusForbidden, mcpmsg.CodeInvalidRequest, "this session belongs to another user")
		}
		if x.r.Method == http.MethodDelete {
			defer c.sessions.forget(session)
		}
	} else {
		x.w = &sessionBinder{ResponseWriter: x.w, owners: c.sessions, user: user.ID}
	}
	if !x.g.cfg.ForwardToken {
		// The token was issued for the gateway; passing it on would be
		// the token passthrough the MCP authorization spec forbids.
		x.r.Header.Del("Authorization")
	}
	x.caller = user
	x.r = x.r.WithContext(context.WithValue(x.r.Context(), callerKey{}, user))
	return nil
}

// sessionBinder binds the session an upstream creates (the Mcp-Session-Id
// of its reply) to the caller who created it.
type sessionBinder struct {
	http.ResponseWriter
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
	b.ResponseWriter.WriteHeader(status)
}

// Write writes the header first, so that an implicit 200 binds too.
func (b *sessionBinder) Write(p []byte) (int, error) {
	if !b.done {
		b.WriteHeader(http.StatusOK)
	}
	return b.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (b *sessionBinder) Unwrap() http.ResponseWriter { return b.ResponseWriter }

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
	slices.SortFunc(oldest, time.Time.Compare)
	cutoff := oldest[len(oldest)/10]
	for session, o := range s.owners {
		if !o.seen.After(cutoff) {
			delete(s.owners, session)
		}
	}
}

package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/mcpgate/mcpgate/caddymodule/identity"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// Identity says how the gateway learns who is calling: by verified JWT
// bearer tokens, or from the user an earlier handler authenticated.
type Identity struct {
	// Verifier verifies bearer tokens. The Gateway owns it and closes it.
	Verifier *identity.JWTVerifier
	// Metadata is the protected resource metadata (RFC 9728) served to
	// clients that look for where to get a token; with Verifier.
	Metadata *identity.ProtectedResourceMetadata
	// Scopes are advertised in 401 challenges; with Verifier.
	Scopes []string
	// Realm says where the callers' ids come from (the token issuer, or
	// the authentication read), so that an approval bound to a caller
	// names the caller's realm too (see approval.Call.Realm).
	Realm string
	// AuthenticatedUser returns the user an earlier handler
	// authenticated, "" when none (a blank one counts as none); used when
	// Verifier is nil.
	AuthenticatedUser func(*http.Request) string
}

// callerIdentifier is the runtime side of an Identity.
type callerIdentifier struct {
	config       *Identity
	metadata     []byte
	metadataPath string
	metadataURL  string
}

func newCallerIdentifier(cfg *Identity) (*callerIdentifier, error) {
	c := &callerIdentifier{config: cfg}
	if cfg.Verifier == nil {
		if cfg.AuthenticatedUser == nil {
			return nil, errors.New("identity: a token verifier or an authenticated user source is required")
		}
		return c, nil
	}
	if cfg.Metadata == nil {
		return nil, errors.New("identity: a token verifier needs protected resource metadata")
	}
	var err error
	if c.metadataPath, err = identity.MetadataPath(cfg.Metadata.Resource); err != nil {
		return nil, fmt.Errorf("identity jwt: %w", err)
	}
	if c.metadataURL, err = identity.MetadataURL(cfg.Metadata.Resource); err != nil {
		return nil, fmt.Errorf("identity jwt: %w", err)
	}
	if c.metadata, err = json.Marshal(cfg.Metadata); err != nil {
		return nil, fmt.Errorf("identity jwt: encoding metadata: %w", err)
	}
	return c, nil
}

// servesMetadata reports whether r asks for the protected resource
// metadata, which is public.
func (c *callerIdentifier) servesMetadata(r *http.Request) bool {
	return c.metadata != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path == c.metadataPath
}

// writeMetadata answers with the protected resource's metadata.
func (c *callerIdentifier) writeMetadata(w http.ResponseWriter) {
	// Browser-based MCP clients fetch it cross-origin; it holds nothing
	// secret.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Cache-Control", "max-age=3600")
	mcphttp.WriteJSON(w, http.StatusOK, c.metadata)
}

// identify returns who is calling, or why the request is refused: an
// error for identity.Refusal to describe.
func (c *callerIdentifier) identify(r *http.Request) (*policy.User, error) {
	if c.config.Verifier == nil {
		id := c.config.AuthenticatedUser(r)
		if strings.TrimSpace(id) == "" {
			return nil, errNoAuthenticatedUser
		}
		return &policy.User{ID: id, Claims: map[string]any{}}, nil
	}
	token, err := identity.BearerToken(r.Header)
	if err != nil {
		return nil, err
	}
	user, err := c.config.Verifier.Verify(r.Context(), token)
	if err != nil {
		return nil, err
	}
	return &policy.User{ID: user.ID, Claims: user.Claims}, nil
}

// errNoAuthenticatedUser refuses a request that no earlier handler
// authenticated, when the caller is the user it authenticates.
var errNoAuthenticatedUser = errors.New("no authenticated user: an earlier handler must authenticate the request")

// refusal describes why identification failed, for the client: a status
// and a short fixed text that names no detail of the gateway's (the log
// has them).
func (c *callerIdentifier) refusal(err error) (int, string) {
	if errors.Is(err, errNoAuthenticatedUser) {
		return http.StatusUnauthorized, err.Error()
	}
	status, code, description := identity.Refusal(err)
	if code != "" {
		description = code + ": " + description
	}
	return status, description
}

// identityRealm is where the gateway's callers' ids come from (see
// Identity.Realm); "" without an identity.
func (g *Gateway) identityRealm() string {
	if g.cfg.Identity == nil {
		return ""
	}
	return g.cfg.Identity.Realm
}

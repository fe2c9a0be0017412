package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/identity"
	"github.com/mcpgate/mcpgate/caddymodule/subdirective"
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
	// TokenTypes are the token types ("typ" header) accepted (jwt).
	// Default: a token without one, "JWT" or "at+jwt" (RFC 9068); given,
	// a token must name one of them.
	TokenTypes []string `json:"token_types,omitempty"`
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
	// Realm names the namespace of the user ids an earlier handler sets
	// (caddy). Handlers that front one upstream with Caddy's
	// authentication must name the same realm: the gateway cannot tell
	// whether two authentications (two basic_auth lists, two forward_auth
	// services) know the same users, and binds sessions, approvals and
	// confirmations to the caller's id within its realm.
	Realm string `json:"realm,omitempty"`
}

// gatewayIdentity resolves the configuration into the gateway's
// identity: a JWT verifier with the metadata it advertises, or the user
// an earlier handler authenticated, read from a placeholder.
func (cfg *IdentityConfig) gatewayIdentity(ctx context.Context, repl *caddy.Replacer, upstream string) (*gateway.Identity, error) {
	switch cfg.Source {
	case IdentityCaddy:
		key, err := userPlaceholder(cfg.User)
		if err != nil {
			return nil, err
		}
		if clientSet(key) {
			caddy.Log().Named("mcp_policy").Warn("identity caddy reads the caller from what the client sent (a header, the query, a cookie, the URI): only an authentication handler "+
				"that sets it (forward_auth's copy_headers, which drops the client's own header) makes it a user; otherwise any client can name any user",
				zap.String("placeholder", "{"+key+"}"))
		}
		fromAuthentication := strings.HasPrefix(key, "http.auth.user.")
		return &gateway.Identity{Realm: cfg.realm(repl, upstream), AuthenticatedUser: func(r *http.Request) string {
			if !fromAuthentication && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(r.TLS.VerifiedChains) == 0 {
				// Caddy fills its TLS client placeholders from any
				// certificate the client presented, verified or not
				// (client_auth mode request or require, a leaf verifier
				// alone): one no trust pool verified names anyone its
				// maker chose, read directly or through another
				// placeholder (a map of the subject), which the gateway
				// cannot tell apart. Only an authentication handler's
				// user stands beside such a certificate.
				return ""
			}
			// Get, not a replacement: a placeholder nothing set is left
			// as written by ReplaceKnown, which would make its text
			// everyone's user id when no authentication handler ran.
			requestRepl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			if requestRepl == nil {
				return ""
			}
			value, ok := requestRepl.Get(key)
			if !ok {
				return ""
			}
			return caddy.ToString(value)
		}}, nil
	case IdentityJWT:
		if cfg.Realm != "" {
			return nil, fmt.Errorf("identity jwt: realm is for identity caddy: a token's realm is its issuer")
		}
	default:
		return nil, fmt.Errorf("identity: unknown source %q (want jwt or caddy)", cfg.Source)
	}
	jwksURL, issuer, resource := repl.ReplaceKnown(cfg.JWKSURL, ""), cfg.issuer(repl), repl.ReplaceKnown(cfg.Resource, "")
	audience := make([]string, 0, len(cfg.Audience))
	for _, a := range cfg.Audience {
		replaced := repl.ReplaceKnown(a, "")
		if strings.TrimSpace(replaced) == "" {
			return nil, fmt.Errorf("identity jwt: audience %q names nothing once its placeholders are replaced", a)
		}
		audience = append(audience, replaced)
	}
	verifier, err := identity.NewJWTVerifier(ctx, identity.JWTConfig{
		JWKSURL:  jwksURL,
		Issuer:   issuer,
		Audience: audience,
		Types:    cfg.TokenTypes,
	})
	if err != nil {
		return nil, fmt.Errorf("identity jwt: %w", err)
	}
	if resource == "" && len(audience) > 0 {
		resource = audience[0]
	}
	servers := cfg.AuthorizationServers
	if len(servers) == 0 {
		servers = []string{issuer}
	}
	return &gateway.Identity{
		Realm:    cfg.realm(repl, upstream),
		Verifier: verifier,
		Metadata: &identity.ProtectedResourceMetadata{
			Resource:               resource,
			AuthorizationServers:   servers,
			ScopesSupported:        cfg.Scopes,
			BearerMethodsSupported: []string{"header"},
		},
		Scopes: cfg.Scopes,
	}, nil
}

// clientSet reports whether a placeholder reads the request as its client
// sent it (a header, the query, a cookie, the URI, the host), rather than
// what an authentication handler or a verified TLS client certificate set.
func clientSet(key string) bool {
	return strings.HasPrefix(key, "http.request.") && !strings.HasPrefix(key, "http.request.tls.client.")
}

// userPlaceholder returns the name of the placeholder that holds the
// authenticated user (identity caddy): the setting must be exactly one
// placeholder, {http.auth.user.id} by default, so that a request no
// authentication handler saw has no user rather than a literal one, and
// not one of Caddy's global placeholders, which are alike for every
// request (an environment variable, a file, the system, the time) and
// would make every request that user.
func userPlaceholder(setting string) (string, error) {
	if setting == "" {
		return "http.auth.user.id", nil
	}
	key, ok := strings.CutPrefix(setting, "{")
	key, closed := strings.CutSuffix(key, "}")
	if !ok || !closed || key == "" || strings.ContainsAny(key, "{}") {
		return "", fmt.Errorf("identity caddy: the user must be one placeholder, such as {http.auth.user.id}, not %q", setting)
	}
	// The file provider is asked by its prefix: asking it reads the file.
	if _, global := caddy.NewReplacer().Get(key); global || strings.HasPrefix(key, "file.") {
		return "", fmt.Errorf("identity caddy: %s is one of Caddy's global placeholders, the same for every request, so every request would be that user: name the placeholder an authentication handler sets, such as {http.auth.user.id}", setting)
	}
	return key, nil
}

// unmarshalIdentity parses `identity jwt { jwks_url; issuer; audience...;
// token_types...; resource; authorization_servers...; scopes... }` or
// `identity caddy [<placeholder>] { realm <name> }`.
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
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			if d.Val() != "realm" {
				return nil, d.Errf("identity caddy: unrecognized subdirective %q", d.Val())
			}
			if cfg.Realm != "" {
				return nil, d.Err("identity caddy: realm given twice")
			}
			if !d.NextArg() || d.Val() == "" {
				return nil, d.Err("identity caddy: realm needs a name")
			}
			cfg.Realm = d.Val()
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		}
		return cfg, nil
	case IdentityJWT:
	default:
		return nil, d.Errf("identity: unknown source %q (want jwt or caddy)", cfg.Source)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	given := subdirective.Once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := given.Check(d, "jwks_url", "issuer", "resource"); err != nil {
			return nil, err
		}
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
		case "token_types":
			cfg.TokenTypes = append(cfg.TokenTypes, args...)
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

// issuer is the issuer tokens must carry, its placeholders replaced
// (those no module knows are left as written).
func (cfg *IdentityConfig) issuer(repl *caddy.Replacer) string {
	return repl.ReplaceKnown(cfg.Issuer, "")
}

// realm says where the callers' ids come from, for telling apart handlers
// that front one upstream: the JWT issuer (placeholders replaced), or
// Caddy's authentication and the placeholder read ("" without an
// identity). Two Caddy authentication providers on different routes that
// set the same placeholder read alike: they are the operator's to keep to
// one namespace of user ids. A realm no other upstream's handler may
// share (Caddy's authentication without `realm`, see realmShared) is
// the upstream's alone: "alice" of two sites' basic_auth lists is two
// callers in whatever counts callers across upstreams
// (max_sessions_per_caller, the bounds of what is kept per caller).
func (cfg *IdentityConfig) realm(repl *caddy.Replacer, upstream string) string {
	switch {
	case cfg == nil:
		return ""
	case cfg.Source == IdentityJWT:
		// The issuer as the verifier checks it: issuers the verifiers
		// tell apart are realms apart.
		return "jwt issuer " + strconv.Quote(cfg.issuer(repl))
	case cfg.Realm != "":
		key, _ := userPlaceholder(cfg.User)
		return cfg.Source + " realm " + strconv.Quote(cfg.Realm) + " " + strconv.Quote(key)
	default:
		// The placeholder says which handler's user it is (a header
		// anyone may set is not an authentication's user).
		key, _ := userPlaceholder(cfg.User)
		return cfg.Source + " " + strconv.Quote(key) + " upstream " + strconv.Quote(upstream)
	}
}

// realmShared reports whether the realm may be shared by handlers that
// front one upstream: a JWT issuer names its users' namespace, and so
// does a realm the operator names; Caddy's authentication read from a
// placeholder does not (two handlers' authentications may each know an
// alice).
func (cfg *IdentityConfig) realmShared() bool {
	return cfg != nil && (cfg.Source == IdentityJWT || cfg.Realm != "")
}

package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Defaults and limits for JWTConfig.
const (
	// DefaultLeeway is the clock skew allowed when checking exp, nbf and
	// iat: small enough that an expired token is not honoured for long,
	// large enough to absorb the drift of NTP-synchronised clocks.
	DefaultLeeway = 30 * time.Second
	// DefaultRefreshInterval is how often the JWKS is fetched anew.
	DefaultRefreshInterval = 15 * time.Minute
	// MinRefreshGap is the least time between two fetches of the JWKS made
	// because a token names a key the verifier does not know, so that a
	// flood of such tokens cannot become a flood of fetches. It is also the
	// least RefreshInterval.
	MinRefreshGap = 10 * time.Second
)

// fetchTimeout bounds one on-demand fetch of the JWKS, and so the time a
// request can wait for it.
const fetchTimeout = 10 * time.Second

// closeTimeout bounds the wait for the background refresh to stop.
const closeTimeout = 5 * time.Second

// keyTypes maps every algorithm a JWTVerifier can accept to the type of key
// that signs with it. Symmetric algorithms (HS256...) are absent on purpose:
// a JWKS publishes keys, so an HMAC "secret" from it is public, and a token
// claiming one is the classic key-confusion attack. "none" is absent too.
var keyTypes = map[string]jwa.KeyType{
	jwa.RS256().String():        jwa.RSA(),
	jwa.RS384().String():        jwa.RSA(),
	jwa.RS512().String():        jwa.RSA(),
	jwa.PS256().String():        jwa.RSA(),
	jwa.PS384().String():        jwa.RSA(),
	jwa.PS512().String():        jwa.RSA(),
	jwa.ES256().String():        jwa.EC(),
	jwa.ES384().String():        jwa.EC(),
	jwa.ES512().String():        jwa.EC(),
	jwa.EdDSA().String():        jwa.OKP(),
	jwa.EdDSAEd25519().String(): jwa.OKP(),
}

// JWTConfig configures a JWTVerifier.
type JWTConfig struct {
	// JWKSURL is where the authorization server publishes its signing
	// keys. It must use https, or http to a loopback host.
	JWKSURL string
	// Issuer is the exact "iss" tokens must carry. Required.
	Issuer string
	// Audience lists the values accepted in "aud": a token is accepted
	// when its audience contains at least one of them. For an MCP server
	// this is the gateway's canonical URI (RFC 8707). At least one is
	// required.
	Audience []string
	// Leeway is the clock skew allowed when checking exp, nbf and iat;
	// zero means DefaultLeeway.
	Leeway time.Duration
	// Algorithms are the signing algorithms accepted; empty means every
	// asymmetric algorithm supported: RS256, RS384, RS512, PS256, PS384,
	// PS512, ES256, ES384, ES512, EdDSA and Ed25519. HMAC algorithms and
	// "none" are refused.
	Algorithms []string
	// Types are the token types ("typ" header, RFC 7515 §4.1.9) accepted,
	// compared as media types: case aside, "at+jwt" and
	// "application/at+jwt" are one. Empty means DefaultTypes, which a
	// token without "typ" passes too; with Types given, a token must name
	// one of them.
	Types []string
	// RefreshInterval is how often the JWKS is fetched anew in the
	// background; zero means DefaultRefreshInterval.
	RefreshInterval time.Duration
	// HTTPClient fetches the JWKS; nil means jwx's default client. Either
	// way the fetch gets jwx's protections: a 30-second timeout unless the
	// client sets one, no redirect from https to http, at most 5 redirects.
	HTTPClient *http.Client
}

// JWTVerifier verifies bearer tokens that are JWTs signed by a key from a
// JWKS. It is safe for concurrent use.
type JWTVerifier struct {
	jwksURL    string
	issuer     string
	audience   []string
	leeway     time.Duration
	algorithms []string
	// types are the accepted token types as mediaType gives them; the
	// empty string accepts a token without "typ".
	types []string

	cache *jwk.Cache
	// jwks is the cached key set; its Resource is nil until the first
	// successful fetch.
	jwks *httprc.ResourceBase[jwk.Set]
	// refreshing is a one-slot semaphore that serialises on-demand
	// fetches; whoever holds it may read and write lastRefresh.
	refreshing  chan struct{}
	lastRefresh time.Time
	refreshGap  time.Duration
}

// NewJWTVerifier checks cfg and starts keeping the JWKS in a cache that
// refreshes it in the background until ctx is done or Close is called.
//
// The first fetch starts at once but is not waited for, and its failure
// does not fail NewJWTVerifier: a gateway should start even while its
// identity provider blips. Until keys have been fetched, Verify fetches
// them itself (at most once per MinRefreshGap) and returns
// ErrKeysUnavailable when it cannot.
func NewJWTVerifier(ctx context.Context, cfg JWTConfig) (*JWTVerifier, error) {
	v, err := newJWTVerifier(cfg)
	if err != nil {
		return nil, err
	}
	refreshInterval := cfg.RefreshInterval
	if refreshInterval == 0 {
		refreshInterval = DefaultRefreshInterval
	}
	options := []jwk.RegisterOption{
		jwk.WithWaitReady(false),
		jwk.WithConstantInterval(refreshInterval),
	}
	if cfg.HTTPClient != nil {
		options = append(options, jwk.WithHTTPClient(jwk.WrapHTTPClientDefaults(cfg.HTTPClient)))
	}
	cache, err := jwk.NewCache(ctx, httprc.NewClient(httprc.WithWorkers(1)))
	if err != nil {
		return nil, fmt.Errorf("starting JWKS cache: %w", err)
	}
	v.cache = cache
	if err := cache.Register(ctx, v.jwksURL, options...); err != nil {
		return nil, errors.Join(fmt.Errorf("registering JWKS %s: %w", v.jwksURL, err), v.Close())
	}
	v.jwks, err = cache.LookupResource(ctx, v.jwksURL)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("looking up JWKS %s: %w", v.jwksURL, err), v.Close())
	}
	return v, nil
}

// newJWTVerifier checks cfg and returns a verifier without its cache.
func newJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.JWKSURL == "" {
		return nil, errors.New("jwks_url is required")
	}
	if _, err := parseEndpoint(cfg.JWKSURL); err != nil {
		return nil, fmt.Errorf("jwks_url %q: %w", cfg.JWKSURL, err)
	}
	if cfg.Issuer == "" {
		return nil, errors.New("issuer is required")
	}
	if len(cfg.Audience) == 0 {
		return nil, errors.New("at least one audience is required")
	}
	if slices.Contains(cfg.Audience, "") {
		return nil, errors.New("audience must not be empty")
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("leeway %s must not be negative", cfg.Leeway)
	}
	if cfg.RefreshInterval != 0 && cfg.RefreshInterval < MinRefreshGap {
		return nil, fmt.Errorf("refresh interval %s must be at least %s", cfg.RefreshInterval, MinRefreshGap)
	}
	algorithms := cfg.Algorithms
	if len(algorithms) == 0 {
		algorithms = slices.Sorted(maps.Keys(keyTypes))
	}
	for _, alg := range algorithms {
		if _, ok := keyTypes[alg]; !ok {
			return nil, fmt.Errorf("algorithm %q is not accepted: use an asymmetric algorithm (%s)",
				alg, strings.Join(slices.Sorted(maps.Keys(keyTypes)), ", "))
		}
	}
	types := []string{""}
	for _, typ := range DefaultTypes {
		types = append(types, mediaType(typ))
	}
	if len(cfg.Types) > 0 {
		types = types[:0]
		for _, typ := range cfg.Types {
			switch {
			case typ == "":
				return nil, errors.New("token type must not be empty")
			case !validMediaType(typ):
				return nil, fmt.Errorf("token type %q is not a media type, such as at+jwt", typ)
			}
			types = append(types, mediaType(typ))
		}
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	return &JWTVerifier{
		jwksURL:    cfg.JWKSURL,
		issuer:     cfg.Issuer,
		audience:   slices.Clone(cfg.Audience),
		leeway:     leeway,
		algorithms: slices.Clone(algorithms),
		types:      types,
		refreshing: make(chan struct{}, 1),
		refreshGap: MinRefreshGap,
	}, nil
}

// Close stops the background refresh of the JWKS.
func (v *JWTVerifier) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := v.cache.Shutdown(ctx); err != nil {
		return fmt.Errorf("stopping JWKS refresh: %w", err)
	}
	return nil
}

// errWrongAudience is the cause of a rejection for audience.
var errWrongAudience = errors.New(`"aud" contains none of the accepted audiences`)

// Verify checks a bearer token in JWS compact serialization and returns
// its caller. The token must be signed with an accepted algorithm by the
// key its "kid" names in the JWKS, that key's type and declared algorithm
// must match, and the token must carry "exp", be within exp and nbf and
// not issued in the future (give or take the leeway), carry the configured
// "iss", an "aud" containing an accepted audience, and a "sub" that is not
// blank; its times (exp, nbf, iat) must be JSON numbers.
// Tokens with a "crit" header are refused: the verifier implements no
// extension. A token that names its type ("typ") must name an accepted
// one (JWTConfig.Types).
//
// The token must have one reading only: each segment canonical unpadded
// base64url, the signature not empty, and the header and the claims each
// one JSON object with valid UTF-8 and no duplicate member names. Any other
// token is refused as "malformed token" before a key is looked up.
//
// A token naming an unknown key makes Verify fetch the JWKS again, at most
// once per MinRefreshGap, so that rotated keys are picked up.
//
// A rejected token yields a *TokenError; ErrKeysUnavailable means the
// token could not be judged.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (*User, error) {
	header, claims, err := readCompact(token)
	if err != nil {
		return nil, invalidToken("malformed token", err)
	}
	if crit, named := header["crit"]; named {
		// Refused with a reason of its own: jws.Verify's refusal of it
		// (WithCritValidation, below) reads as a bad signature.
		return nil, invalidToken("unsupported critical header", fmt.Errorf("crit %v names extensions this gateway does not implement", crit))
	}
	payload, err := jws.Verify([]byte(token),
		jws.WithCompact(),
		jws.WithContext(ctx),
		// No extension is implemented, so every "crit" header is refused,
		// and with it unencoded payloads ("b64": false, RFC 7797 §3).
		jws.WithCritValidation(true),
		jws.WithKeyProvider(jws.KeyProviderFunc(v.provideKey)),
	)
	if err != nil {
		return nil, verifyError(ctx, err)
	}
	if err := numericDates(claims); err != nil {
		return nil, invalidToken("malformed claims", err)
	}
	parsed, err := jwt.ParseInsecure(payload)
	if err != nil {
		return nil, invalidToken("malformed claims", err)
	}
	err = jwt.Validate(parsed,
		jwt.WithContext(ctx),
		jwt.WithAcceptableSkew(v.leeway),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithIssuer(v.issuer),
		jwt.WithValidator(jwt.ValidatorFunc(v.checkAudience)),
	)
	if err != nil {
		return nil, invalidToken(describeValidation(err), err)
	}
	sub, ok := claims[jwt.SubjectKey].(string)
	if !ok || strings.TrimSpace(sub) == "" {
		return nil, invalidToken("missing subject", errors.New(`"sub" is absent, empty or blank`))
	}
	if _, bound := claims[confirmationKey]; bound {
		// A DPoP-bound (RFC 9449) or certificate-bound (RFC 8705) token
		// is the client's only with its key's proof, which a bearer
		// token does not carry and the gateway does not check: whoever
		// copied one would be its subject here (RFC 9449 §7.2).
		return nil, invalidToken("token bound to a client key", errors.New(`the token has a "cnf" claim: it is sender-constrained (DPoP or mTLS), and this gateway accepts bearer tokens only`))
	}
	return &User{ID: sub, Claims: claims}, nil
}

// numericDates checks that the token's times (exp, nbf, iat), when given,
// are JSON numbers, as RFC 7519 (§2, NumericDate) has them. jwx also reads
// them from strings (an RFC 3339 date among them), which the policy would
// then see in input.user.claims as a string rather than whole seconds.
func numericDates(claims map[string]any) error {
	for _, name := range []string{jwt.ExpirationKey, jwt.NotBeforeKey, jwt.IssuedAtKey} {
		if value, given := claims[name]; given {
			if _, ok := value.(json.Number); !ok {
				return fmt.Errorf("%q is not a number (a NumericDate, RFC 7519)", name)
			}
		}
	}
	return nil
}

// verifyError turns an error from jws.Verify into what Verify returns.
func verifyError(ctx context.Context, err error) error {
	var tokenErr *TokenError
	switch {
	case errors.As(err, &tokenErr):
		return tokenErr
	case errors.Is(err, ErrKeysUnavailable):
		return fmt.Errorf("verifying bearer token: %w", err)
	case ctx.Err() != nil:
		return fmt.Errorf("verifying bearer token: %w", ctx.Err())
	case errors.Is(err, jws.ParseError()):
		return invalidToken("malformed token", err)
	}
	return invalidToken("invalid signature", err)
}

// provideKey is the jws.KeyProvider for Verify: it picks the key the
// signature's "kid" names, after checking the algorithm, so that jws only
// ever verifies with an accepted algorithm and the key the JWKS binds to it.
func (v *JWTVerifier) provideKey(ctx context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	header := sig.ProtectedHeaders()
	alg, ok := header.Algorithm()
	if !ok || !slices.Contains(v.algorithms, alg.String()) {
		return invalidToken("signing algorithm not accepted", fmt.Errorf("alg %q", alg))
	}
	if err := v.checkType(header); err != nil {
		return err
	}
	kid, ok := header.KeyID()
	if !ok || kid == "" {
		return invalidToken("no key id", errors.New(`the token has no "kid" header`))
	}
	key, err := v.signingKey(ctx, kid, keyTypes[alg.String()])
	if err != nil {
		return err
	}
	if keyAlg, ok := key.Algorithm(); ok && keyAlg.String() != alg.String() {
		return invalidToken("signing algorithm does not match the key",
			fmt.Errorf("alg %q, key %q is for %q", alg, kid, keyAlg))
	}
	if use, ok := key.KeyUsage(); ok && use != "" && use != jwk.ForSignature.String() {
		return invalidToken("key is not for signatures", fmt.Errorf("key %q has use %q", kid, use))
	}
	sink.Key(alg, key)
	return nil
}

// signingKey returns the JWKS key with the given id and type, fetching the
// JWKS again when it has none (as after a key rotation), at most once per
// refresh gap.
func (v *JWTVerifier) signingKey(ctx context.Context, kid string, kty jwa.KeyType) (jwk.Key, error) {
	if key, ok := findKey(v.jwks.Resource(), kid, kty); ok {
		return key, nil
	}
	refreshErr := v.refresh(ctx)
	set := v.jwks.Resource()
	if set == nil {
		if refreshErr != nil {
			return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, refreshErr)
		}
		return nil, ErrKeysUnavailable
	}
	if key, ok := findKey(set, kid, kty); ok {
		return key, nil
	}
	return nil, invalidToken("unknown signing key", errors.Join(fmt.Errorf("no %s key %q in the JWKS", kty, kid), refreshErr))
}

// findKey returns the first key in set with the given id and type.
func findKey(set jwk.Set, kid string, kty jwa.KeyType) (jwk.Key, bool) {
	if set == nil {
		return nil, false
	}
	for i := range set.Len() {
		key, ok := set.Key(i)
		if !ok {
			continue
		}
		if id, _ := key.KeyID(); id == kid && key.KeyType() == kty {
			return key, true
		}
	}
	return nil, false
}

// refresh fetches the JWKS now unless that was done less than the refresh
// gap ago; callers that find a fetch under way wait for it and then use
// its result.
func (v *JWTVerifier) refresh(ctx context.Context) error {
	select {
	case v.refreshing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-v.refreshing }()
	if !v.lastRefresh.IsZero() && time.Since(v.lastRefresh) < v.refreshGap {
		return nil
	}
	v.lastRefresh = time.Now()
	// The fetch the gap is spent on is made whatever becomes of the
	// request that asked for it (a client gone at that moment would
	// leave the gap spent, and keys rotated in unfetched until it ends).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	if _, err := v.cache.Refresh(ctx, v.jwksURL); err != nil {
		return fmt.Errorf("fetching JWKS %s: %w", v.jwksURL, err)
	}
	return nil
}

// DefaultTypes are the token types accepted when JWTConfig.Types is
// empty, besides a token that names none: a JWT ("JWT", what most
// identity providers write) and a JWT access token ("at+jwt", RFC 9068).
// Other JWTs an identity provider signs with the same keys, and may
// address to the gateway, say what they are in "typ" (RFC 8725 §3.11):
// a DPoP proof ("dpop+jwt"), a logout token ("logout+jwt"), a security
// event ("secevent+jwt"), an introspection response
// ("token-introspection+jwt"); none of them is a bearer's credential.
var DefaultTypes = []string{"JWT", "at+jwt"}

// checkType refuses a token whose "typ" header is not an accepted type.
func (v *JWTVerifier) checkType(header jws.Headers) error {
	typ, named := header.Type()
	if named && typ == "" {
		return invalidToken("not an access token", errors.New(`the token's "typ" header is empty`))
	}
	if slices.Contains(v.types, mediaType(typ)) {
		return nil
	}
	if !named {
		return invalidToken("not an access token", errors.New(`the token has no "typ" header, and this gateway accepts only the types it names`))
	}
	return invalidToken("not an access token", fmt.Errorf("the token's type %q is not one this gateway accepts", typ))
}

// mediaType is a "typ" value as RFC 7515 §4.1.9 compares it: media
// types are matched case aside, and a value without a slash stands for
// itself under "application/". An empty value stays empty.
func mediaType(typ string) string {
	typ = strings.ToLower(typ)
	if typ != "" && !strings.Contains(typ, "/") {
		typ = "application/" + typ
	}
	return typ
}

// validMediaType reports whether typ reads as a media type with or
// without its "application/" (RFC 6838 §4.2 names: letters, digits and
// !#$&-^_.+, at most one slash between two names).
func validMediaType(typ string) bool {
	name := func(s string) bool {
		return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&-^_.+") == ""
	}
	major, minor, slashed := strings.Cut(typ, "/")
	if !slashed {
		return name(typ)
	}
	return name(major) && name(minor)
}

// confirmationKey is the claim that binds a token to a key its client
// holds (RFC 7800 "cnf").
const confirmationKey = "cnf"

// checkAudience is the jwt.Validator for "aud".
func (v *JWTVerifier) checkAudience(_ context.Context, token jwt.Token) error {
	audience, _ := token.Audience()
	for _, aud := range audience {
		if slices.Contains(v.audience, aud) {
			return nil
		}
	}
	return errWrongAudience
}

// describeValidation says in safe words why jwt.Validate refused a token.
func describeValidation(err error) phrase {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return "token expired"
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return "token not yet valid"
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return "token issued in the future"
	case errors.Is(err, jwt.InvalidIssuerError()):
		return "wrong issuer"
	case errors.Is(err, errWrongAudience):
		return "wrong audience"
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return "missing expiry"
	}
	return "invalid claims"
}

package caddymodule_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/caddymodule"
	"github.com/mcpgate/mcpgate/caddymodule/identity"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/testwait"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

const (
	testIssuer   = "https://idp.example"
	testAudience = "http://localhost/mcp"
)

// identityProvider signs tokens and serves its keys as a JWKS on loopback.
type identityProvider struct {
	keys map[string]*rsa.PrivateKey
	jwks atomic.Pointer[[]byte]
	url  string
}

func newIdentityProvider(t *testing.T, kids ...string) *identityProvider {
	t.Helper()
	p := &identityProvider{keys: map[string]*rsa.PrivateKey{}}
	for _, kid := range kids {
		p.addKey(t, kid)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*p.jwks.Load())
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// addKey generates a key and publishes it (key rotation).
func (p *identityProvider) addKey(t *testing.T, kid string) {
	t.Helper()
	private, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.keys[kid] = private
	set := jwk.NewSet()
	for kid, private := range p.keys {
		key, err := jwk.Import(private.Public())
		if err != nil {
			t.Fatal(err)
		}
		_ = key.Set(jwk.KeyIDKey, kid)
		_ = key.Set(jwk.AlgorithmKey, jwa.RS256())
		_ = key.Set(jwk.KeyUsageKey, "sig")
		_ = set.AddKey(key)
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	p.jwks.Store(&raw)
}

// token signs claims (over sensible defaults) with the key kid.
func (p *identityProvider) token(t *testing.T, kid string, claims map[string]any) string {
	t.Helper()
	return p.typedToken(t, kid, "", claims)
}

// typedToken is token with the type typ in its "typ" header ("" for none).
func (p *identityProvider) typedToken(t *testing.T, kid, typ string, claims map[string]any) string {
	t.Helper()
	all := map[string]any{
		"iss": testIssuer, "aud": []string{testAudience}, "sub": "alice",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}
	for name, value := range claims {
		if value == nil {
			delete(all, name)
		} else {
			all[name] = value
		}
	}
	token := jwt.New()
	for name, value := range all {
		if err := token.Set(name, value); err != nil {
			t.Fatalf("claim %s: %v", name, err)
		}
	}
	headers := jws.NewHeaders()
	_ = headers.Set(jws.KeyIDKey, kid)
	if typ != "" {
		_ = headers.Set(jws.TypeKey, typ)
	}
	signed, err := jwt.Sign(token, jwt.WithKey(jwa.RS256(), p.keys[kid], jws.WithProtectedHeaders(headers)))
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return string(signed)
}

// identityBlock is the mcp_policy body of a gateway that verifies tokens.
func identityBlock(jwksURL string, extra string) string {
	return fmt.Sprintf(`policy testdata/userpolicy
		server test
		identity jwt {
			jwks_url %s
			issuer %s
			audience %s
		}%s`, jwksURL, testIssuer, testAudience, extra)
}

// bearer is an http.RoundTripper that adds a bearer token.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func connectAs(t *testing.T, url, token string) *mcp.ClientSession {
	t.Helper()
	session, err := tryConnectAs(t, url, token)
	if err != nil {
		t.Fatalf("connecting with a token: %v", err)
	}
	return session
}

// tryConnectAs is connectAs, returning the error.
func tryConnectAs(t *testing.T, url, token string) (*mcp.ClientSession, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: bearer{token}}}, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { session.Close() })
	return session, nil
}

// TestJWTIdentity runs the gateway as an OAuth-protected MCP resource:
// tokens are verified, refused ones get the MCP authorization challenge,
// per-user decisions differ, sessions are bound to their creator, and the
// token is not passed upstream.
func TestJWTIdentity(t *testing.T) {
	idp := newIdentityProvider(t, "k1")
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: identityBlock(idp.url, "")})
	base := strings.TrimSuffix(gateway, "/mcp")
	const wantChallenge = `Bearer resource_metadata="http://localhost/.well-known/oauth-protected-resource/mcp"`

	t.Run("protected resource metadata", func(t *testing.T) {
		resp, err := http.Get(base + "/.well-known/oauth-protected-resource/mcp")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var meta map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil || resp.StatusCode != 200 {
			t.Fatalf("metadata: %d, %v", resp.StatusCode, err)
		}
		if meta["resource"] != testAudience || fmt.Sprint(meta["authorization_servers"]) != "["+testIssuer+"]" ||
			fmt.Sprint(meta["bearer_methods_supported"]) != "[header]" {
			t.Errorf("metadata = %v", meta)
		}
	})

	tampered := func() string {
		parts := strings.Split(idp.token(t, "k1", nil), ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"alice"`, `"admin"`, 1)))
		return strings.Join(parts, ".")
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k1"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"alice","exp":%d}`, testIssuer, testAudience, time.Now().Add(time.Hour).Unix()))) + "."
	refused := []struct {
		name, authorization string
		wantError           bool // an error="invalid_token" in the challenge
	}{
		{"no token", "", false},
		{"expired", "Bearer " + idp.token(t, "k1", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), true},
		{"not yet valid", "Bearer " + idp.token(t, "k1", map[string]any{"nbf": time.Now().Add(time.Hour).Unix()}), true},
		{"wrong issuer", "Bearer " + idp.token(t, "k1", map[string]any{"iss": "https://evil.example"}), true},
		{"wrong audience", "Bearer " + idp.token(t, "k1", map[string]any{"aud": []string{"https://other.example/mcp"}}), true},
		{"unsigned (alg none)", "Bearer " + none, true},
		{"tampered payload", "Bearer " + tampered(), true},
		{"a DPoP proof, not an access token", "Bearer " + idp.typedToken(t, "k1", "dpop+jwt", nil), true},
	}
	for _, tt := range refused {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			before := len(up.Received())
			header := http.Header{}
			if tt.authorization != "" {
				header.Set("Authorization", tt.authorization)
			}
			req, _ := http.NewRequest(http.MethodPost, gateway, strings.NewReader(callEcho))
			req.Header = header
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			challenge := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(challenge, wantChallenge) ||
				strings.Contains(challenge, `error="invalid_token"`) != tt.wantError {
				t.Errorf("status %d, WWW-Authenticate %q; want 401 with %s (error code: %v)", resp.StatusCode, challenge, wantChallenge, tt.wantError)
			}
			if len(up.Received()) != before {
				t.Error("the upstream received a request with a refused token")
			}
		})
	}

	t.Run("per-user decisions", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		admin := connectAs(t, gateway, idp.token(t, "k1", map[string]any{"sub": "alice", "groups": []string{"eng-admins"}}))
		user := connectAs(t, gateway, idp.token(t, "k1", map[string]any{"sub": "bob", "groups": []string{"eng"}}))
		res, err := admin.CallTool(ctx, &mcp.CallToolParams{Name: "delete_issue", Arguments: map[string]any{"text": "1"}})
		if err != nil || res.IsError {
			t.Errorf("alice (eng-admins) deleting: %v %q, want it to run", err, resultText(res))
		}
		res, err = user.CallTool(ctx, &mcp.CallToolParams{Name: "delete_issue", Arguments: map[string]any{"text": "2"}})
		if err != nil || !res.IsError || !strings.Contains(resultText(res), "bob is not in eng-admins") {
			t.Errorf("bob deleting: %v %q, want a refusal naming bob", err, resultText(res))
		}
		for _, r := range up.Received() {
			if r.Header.Get("Authorization") != "" {
				t.Fatal("the token was forwarded upstream without forward_token")
			}
		}

		// Bob presents Alice's session.
		req, _ := http.NewRequest(http.MethodPost, gateway, strings.NewReader(callEcho))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+idp.token(t, "k1", map[string]any{"sub": "bob"}))
		req.Header.Set("Mcp-Session-Id", admin.ID())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("bob using alice's session: status %d, want 403", resp.StatusCode)
		}
	})

	t.Run("key rotation", func(t *testing.T) {
		idp.addKey(t, "k2")
		// Picked up at the first token that names it, unless the JWKS was
		// fetched on demand less than identity.MinRefreshGap ago (as when
		// the first requests beat the first fetch): then within the gap.
		var session *mcp.ClientSession
		testwait.Until(t, identity.MinRefreshGap+5*time.Second, func() string {
			var err error
			if session, err = tryConnectAs(t, gateway, idp.token(t, "k2", map[string]any{"sub": "carol"})); err != nil {
				time.Sleep(250 * time.Millisecond)
				return "a token signed by the rotated-in key is still refused: " + err.Error()
			}
			return ""
		})
		if text, refused := callEchoText(t, session); refused || !strings.Contains(text, "echo:") {
			t.Errorf("echo with a token signed by a rotated-in key: %q (refused %v)", text, refused)
		}
	})
}

// TestJWTTokenTypes checks that token_types is the list of token types
// accepted: a token must then name one.
func TestJWTTokenTypes(t *testing.T) {
	idp := newIdentityProvider(t, "k1")
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: strings.Replace(identityBlock(idp.url, ""),
		"audience", "token_types at+jwt\n\t\t\taudience", 1)})
	for _, tt := range []struct {
		name, typ  string
		wantStatus int
	}{
		{"an RFC 9068 access token", "at+jwt", http.StatusOK},
		{"an untyped token", "", http.StatusUnauthorized},
		{"a JWT typed only as a JWT", "JWT", http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, gateway, strings.NewReader(
				`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer "+idp.typedToken(t, "k1", tt.typ, nil))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			challenge := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != tt.wantStatus || (tt.wantStatus != http.StatusOK && !strings.Contains(challenge, `error_description="not an access token"`)) {
				t.Errorf("status %d, WWW-Authenticate %q; want %d (refused as not an access token)", resp.StatusCode, challenge, tt.wantStatus)
			}
		})
	}
}

// TestForwardToken checks that forward_token passes the caller's token on.
func TestForwardToken(t *testing.T) {
	idp := newIdentityProvider(t, "k1")
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: identityBlock(idp.url, "\n\t\tforward_token")})
	token := idp.token(t, "k1", nil)
	session := connectAs(t, gateway, token)
	if _, refused := callEchoText(t, session); refused {
		t.Fatal("echo refused")
	}
	for _, r := range up.Received() {
		if r.Header.Get("Authorization") != "Bearer "+token {
			t.Fatalf("upstream got Authorization %q, want the caller's token", r.Header.Get("Authorization"))
		}
	}
}

// TestCaddyAuthIdentity composes the gateway with Caddy's basic_auth: the
// user it authenticated is the policy's input.user.
func TestCaddyAuthIdentity(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t, upstreamtest.StatelessJSON) // stateless: one raw POST is a whole exchange
	gateway := startGateway(t, up.URL, gatewayOptions{
		policy: "policy testdata/userpolicy\n\t\tserver test\n\t\tidentity caddy",
		before: fmt.Sprintf("basic_auth {\n\t\talice %s\n\t}", hash),
	})
	req, _ := http.NewRequest(http.MethodPost, gateway, strings.NewReader(callEcho))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.SetBasicAuth("alice", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if resp.StatusCode != 200 || !strings.Contains(body.String(), "echo:a") {
		t.Errorf("alice through basic_auth: %d %s, want echo to run", resp.StatusCode, body.String())
	}
	req.SetBasicAuth("alice", "wrong")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: status %d, want 401 from basic_auth", resp2.StatusCode)
	}
}

// TestLegacySessionBoundToCaller: on the HTTP+SSE transport a session is
// its message endpoint; another user posting to it is refused, and so is
// anyone posting to the upstream's own endpoint of it (which a log could
// show), with or without another query parameter.
func TestLegacySessionBoundToCaller(t *testing.T) {
	idp := newIdentityProvider(t, "k1")
	up := newTransportUpstream(t, legacyHandler)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: identityBlock(idp.url, "")})
	base := strings.TrimSuffix(gateway, "/mcp")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gateway, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+idp.token(t, "k1", map[string]any{"sub": "alice"}))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("opening alice's stream: %v", err)
	}
	defer resp.Body.Close()
	endpoint := ""
	lines := bufio.NewScanner(resp.Body)
	for endpoint == "" && lines.Scan() {
		if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
			endpoint = data
		}
	}
	if !strings.Contains(endpoint, "mcpgate_session=") || strings.Contains(endpoint, "sessionid=") {
		t.Fatalf("endpoint event on alice's stream = %q; want the gateway's endpoint with a sealed session, not the upstream's id", endpoint)
	}
	var postTo func(url, user string) int
	postAs := func(user string) int {
		return postTo(base+endpoint, user)
	}
	postTo = func(url, user string) int {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+idp.token(t, "k1", map[string]any{"sub": user}))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := postAs("bob"); status != http.StatusForbidden {
		t.Errorf("bob posting to alice's HTTP+SSE session: status %d, want 403", status)
	}
	if status := postAs("alice"); status != http.StatusAccepted {
		t.Errorf("alice posting to her own session: status %d, want 202", status)
	}
	raw := upstreamMessageEndpoint(t, up)
	before := len(up.Received())
	_, query, _ := strings.Cut(raw, "?")
	id := strings.TrimPrefix(query, "sessionid=")
	// The upstream (go-sdk's SSE handler) takes a post on any path; others
	// route without regard to case or a trailing slash, or read query
	// names in any case, or take the id in the path.
	for _, url := range []string{base + raw, base + raw + "&x=1", base + "/mcp/?" + query, base + "/other?" + query,
		base + "/mcp?SessionId=" + id, base + "/mcp?a=" + id + "&b=1", base + "/messages/" + id} {
		if status := postTo(url, "bob"); status != http.StatusNotFound {
			t.Errorf("bob posting with the upstream's own id of alice's session (%s): status %d, want 404", url, status)
		}
	}
	if len(up.Received()) != before {
		t.Error("a post carrying the upstream's own session id reached the upstream")
	}
}

// TestLegacySessionIDRefusedWithAnySession: a request carrying an
// upstream's own HTTP+SSE session id is refused even when it carries a
// session of the gateway's too (the caller's own, on Streamable HTTP, of
// an upstream that serves both transports): the upstream would post it
// into the session the id names, not the one the gateway checked.
func TestLegacySessionIDRefusedWithAnySession(t *testing.T) {
	idp := newIdentityProvider(t, "k1")
	up := newTransportUpstream(t, func(server *mcp.Server) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/mcp", streamableHandler(nil)(server))
		mux.Handle("/sse", legacyHandler(server))
		return mux
	})
	gateway := startGateway(t, up.URL, gatewayOptions{policy: identityBlock(idp.url, "")})
	base := strings.TrimSuffix(gateway, "/mcp")
	alice, bob := idp.token(t, "k1", map[string]any{"sub": "alice"}), idp.token(t, "k1", map[string]any{"sub": "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("opening alice's stream: %v", err)
	}
	defer resp.Body.Close()
	endpoint := ""
	for lines := bufio.NewScanner(resp.Body); endpoint == "" && lines.Scan(); {
		if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
			endpoint = data
		}
	}
	if status, _ := post(t, base+endpoint, http.Header{"Authorization": {"Bearer " + alice}}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`); status != http.StatusAccepted {
		t.Fatalf("alice's ping: status %d", status)
	}
	raw := upstreamMessageEndpoint(t, up)
	session := initializeAs(t, gateway, bob)
	if status, body := rawCall(t, base+raw, session, bob, "bob-in-alice"); status != http.StatusNotFound || up.SawBodyContaining("bob-in-alice") {
		t.Errorf("bob, with his own session, posting with alice's upstream session id: %d %s; want 404, nothing forwarded", status, body)
	}
}

// TestCaddyIdentityWithoutAuthentication: with `identity caddy`, a request
// no authentication handler saw has no user and is refused (401), never
// taken as the placeholder's text; a user setting that is not one
// placeholder, or is one of Caddy's global placeholders, does not load.
func TestCaddyIdentityWithoutAuthentication(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: "policy testdata/userpolicy\n\t\tserver test\n\t\tidentity caddy"})
	if status, body := post(t, gateway, nil, callEcho); status != http.StatusUnauthorized {
		t.Errorf("no authentication handler ran: %d %s; want 401", status, body)
	}
	if up.CallCount("echo") != 0 {
		t.Error("the call reached the upstream")
	}
	for setting, want := range map[string]string{
		"{http.auth.user.id}x":     "must be one placeholder",
		"user-{http.auth.user.id}": "must be one placeholder",
		"http.auth.user.id":        "must be one placeholder",
		"{a}{b}":                   "must be one placeholder",
		// Alike for every request: every request would be that user.
		"{env.HOME}":           "global placeholders",
		"{env.UNSET_NOWHERE}":  "global placeholders",
		"{system.hostname}":    "global placeholders",
		"{time.now.unix}":      "global placeholders",
		"{file./etc/hostname}": "global placeholders",
	} {
		t.Setenv("XDG_DATA_HOME", t.TempDir())
		err := loadCaddyfile(t, globalOptions(t)+policySite(freePort(t), "", "policy testdata/userpolicy\n\t\tserver test\n\t\tidentity caddy "+setting, up.URL))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("identity caddy %s: %v; want it refused: %q", setting, err, want)
		}
	}
}

// TestPreflightCarriesNoToken: a CORS preflight passes unidentified, but
// without the caller's token (forward_token off): the gateway never hands
// its tokens on.
func TestPreflightCarriesNoToken(t *testing.T) {
	idp := newIdentityProvider(t, "k1")
	up := newUpstream(t, upstreamtest.StatelessJSON)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: identityBlock(idp.url, "")})
	req, _ := http.NewRequest(http.MethodOptions, gateway, nil)
	req.Header.Set("Authorization", "Bearer "+idp.token(t, "k1", map[string]any{"sub": "alice"}))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	preflights := 0
	for _, r := range up.Received() {
		if r.Method == http.MethodOptions {
			preflights++
			if r.Header.Get("Authorization") != "" {
				t.Error("the preflight reached the upstream with the caller's token")
			}
		}
	}
	if preflights != 1 {
		t.Errorf("the upstream saw %d preflights; want the one passed on", preflights)
	}
}

// upstreamMessageEndpoint is the URL of the last message the upstream
// (go-sdk's HTTP+SSE handler) received at its own message endpoint, which
// holds its id of the session.
func upstreamMessageEndpoint(t *testing.T, up *upstreamtest.Upstream) string {
	t.Helper()
	raw := ""
	for _, r := range up.Received() {
		if r.Method == http.MethodPost && strings.Contains(r.URL, "sessionid=") {
			raw = r.URL
		}
	}
	if raw == "" {
		t.Fatal("the upstream saw no post to its own message endpoint")
	}
	return raw
}

// TestIdentityPlaceholderWarned: identity caddy warns at load when the
// caller is read from what the client itself sent, in any part of the
// request, and not when an authentication handler or a verified client
// certificate set it.
func TestIdentityPlaceholderWarned(t *testing.T) {
	for key, warned := range map[string]bool{
		"http.auth.user.id":                    false,
		"http.request.tls.client.subject":      false,
		"http.vars.user":                       false,
		"http.request.header.Remote-User":      true,
		"http.request.uri.query.user":          true,
		"http.request.cookie.user":             true,
		"http.request.uri":                     true,
		"http.request.host":                    true,
		"http.request.uri.path.0":              true,
		"http.request.header.X-Forwarded-User": true,
	} {
		if got := caddymodule.ClientSet(key); got != warned {
			t.Errorf("{%s}: warned %v, want %v", key, got, warned)
		}
	}
}

// TestCertificateIdentityVerified: identity caddy reading the TLS client
// certificate takes a certificate as the caller only when a trust pool
// verified it, read directly or through another placeholder (a map).
// Under client_auth mode request (or require, or a leaf verifier alone)
// Caddy fills the placeholders from whatever certificate the client made:
// naming alice in one of its own is refused (401).
func TestCertificateIdentityVerified(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	up := newUpstream(t, upstreamtest.StatelessJSON)
	alice, mallory := clientCertificate(t, "alice"), clientCertificate(t, "alice")
	pool := filepath.Join(t.TempDir(), "alice.pem")
	if err := os.WriteFile(pool, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: alice.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	unverified, verified, unverifiedMapped, verifiedMapped := freePort(t), freePort(t), freePort(t), freePort(t)
	site := func(port int, clientAuth, user string) string {
		return fmt.Sprintf(`
https://localhost:%d {
	bind 127.0.0.1
	tls internal {
		client_auth {
			%s
		}
	}
	map {http.request.tls.client.subject} {mcp_user} {
		~^CN=(.+)$ "${1}"
	}
	mcp_policy {
		policy testdata/userpolicy
		server test-%d
		identity caddy %s
	}
	reverse_proxy %s
}
`, port, clientAuth, port, user, strings.TrimPrefix(up.URL, "http://"))
	}
	// The subject read directly, and through another placeholder (the
	// common name, mapped), which the gateway cannot trace to it.
	startCaddy(t, globalOptions(t, "skip_install_trust", "local_certs", "auto_https disable_redirects")+
		site(unverified, "mode request", "{http.request.tls.client.subject}")+site(verified, "trust_pool file "+pool, "{http.request.tls.client.subject}")+
		site(unverifiedMapped, "mode request", "{mcp_user}")+site(verifiedMapped, "trust_pool file "+pool, "{mcp_user}"))
	post := func(port int, cert tls.Certificate, body string) (int, string) {
		t.Helper()
		waitForListener(t, port)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			// The site's certificate is the test's own CA's: what is
			// tested is the client's.
			ServerName: "localhost", InsecureSkipVerify: true, Certificates: []tls.Certificate{cert},
		}}}
		req := clienttest.NewRequest(t, http.MethodPost, fmt.Sprintf("https://127.0.0.1:%d/", port), nil, strings.NewReader(body))
		req.Host = fmt.Sprintf("localhost:%d", port)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		reply, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(reply)
	}
	for _, port := range []int{unverified, verified, unverifiedMapped, verifiedMapped} {
		// Caddy's internal CA issues the sites' certificates once started.
		testwait.Until(t, 10*time.Second, func() string {
			if status, body := post(port, alice, `{"jsonrpc":"2.0","id":1,"method":"ping"}`); status == 0 {
				return body
			}
			return ""
		})
	}
	for _, tt := range []struct {
		name string
		port int
		cert tls.Certificate
		want int
	}{
		{"alice's own certificate, unverified", unverified, alice, http.StatusUnauthorized},
		{"a certificate naming alice made by anyone, unverified", unverified, mallory, http.StatusUnauthorized},
		{"alice's certificate, verified by the trust pool", verified, alice, http.StatusOK},
		{"a certificate naming alice made by anyone, not in the trust pool", verified, mallory, 0},
		{"a certificate naming alice made by anyone, unverified, mapped", unverifiedMapped, mallory, http.StatusUnauthorized},
		{"alice's certificate, verified by the trust pool, mapped", verifiedMapped, alice, http.StatusOK},
	} {
		if status, body := post(tt.port, tt.cert, callEcho); status != tt.want {
			t.Errorf("%s: %d %s; want %d", tt.name, status, body, tt.want)
		}
	}
	if n := up.CallCount("echo"); n != 2 {
		t.Errorf("the upstream ran echo %d times; want twice, for the verified certificate", n)
	}
}

// clientCertificate makes a self-signed TLS client certificate naming cn.
func clientCertificate(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestSettingsFromPlaceholders: an identity's audience and the policy's
// paths may come from placeholders (the environment), replaced once the
// configuration loads; one that names nothing once replaced is refused,
// naming the setting.
func TestSettingsFromPlaceholders(t *testing.T) {
	idp := newIdentityProvider(t, "k1")
	up := newUpstream(t, upstreamtest.StatelessJSON)
	t.Setenv("MCPGATE_TEST_AUDIENCE", testAudience)
	t.Setenv("MCPGATE_TEST_POLICY", "testdata/userpolicy")
	block := strings.Replace(strings.Replace(identityBlock(idp.url, ""), "audience "+testAudience, "audience {env.MCPGATE_TEST_AUDIENCE}", 1),
		"policy testdata/userpolicy", "policy {env.MCPGATE_TEST_POLICY}", 1)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: block})
	if status, body := post(t, gateway, http.Header{"Authorization": {"Bearer " + idp.token(t, "k1", nil)}}, callEcho); status != http.StatusOK || !strings.Contains(string(body), "echo:") {
		t.Errorf("a token for the audience the environment names: %d %s; want it accepted", status, body)
	}
	for placeholder, want := range map[string]string{
		"{env.MCPGATE_TEST_AUDIENCE}": `audience "{env.MCPGATE_TEST_UNSET}" names nothing`,
		"{env.MCPGATE_TEST_POLICY}":   `policy "{env.MCPGATE_TEST_UNSET}" names no path`,
	} {
		t.Setenv("XDG_DATA_HOME", t.TempDir())
		unset := strings.Replace(block, placeholder, "{env.MCPGATE_TEST_UNSET}", 1)
		if err := loadCaddyfile(t, globalOptions(t)+policySite(freePort(t), "", unset, up.URL)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s unset: %v; want it refused: %s", placeholder, err, want)
		}
	}
}

// TestMetadataToAnyOrigin: the protected resource's metadata is public,
// served to a page of any origin (Access-Control-Allow-Origin: *), with
// allowed_origins or without, where the MCP endpoint beside it refuses
// pages of origins it does not allow.
func TestMetadataToAnyOrigin(t *testing.T) {
	jwt := "identity jwt {\n\t\t\tjwks_url http://127.0.0.1:1/jwks\n\t\t\tissuer https://idp.example.com\n\t\t\taudience http://127.0.0.1/mcp\n\t\t}"
	for name, origins := range map[string]string{"without allowed_origins": "", "with allowed_origins": "\n\t\tallowed_origins https://app.example.com"} {
		t.Run(name, func(t *testing.T) {
			up := newUpstream(t, upstreamtest.StatelessJSON)
			gateway := startGateway(t, up.URL, gatewayOptions{policy: "policy testdata/policy\n\t\tserver test\n\t\t" + jwt + origins})
			metadata := strings.TrimSuffix(gateway, "/mcp") + "/.well-known/oauth-protected-resource/mcp"
			for _, origin := range []string{"", "https://client.example", "https://app.example.com"} {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					req, _ := http.NewRequest(method, metadata, nil)
					if origin != "" {
						req.Header.Set("Origin", origin)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Cache-Control") != "max-age=3600" {
						t.Errorf("%s from origin %q: HTTP %d, Access-Control-Allow-Origin %q, Cache-Control %q; want 200, *, max-age=3600",
							method, origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Get("Cache-Control"))
					}
				}
			}
			// The endpoint itself still refuses a page of another origin.
			status, _ := clienttest.Post(t, gateway, http.Header{"Origin": {"https://client.example"}}, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
			if status != http.StatusForbidden {
				t.Errorf("a POST from a page of another origin: HTTP %d; want 403", status)
			}
		})
	}
}

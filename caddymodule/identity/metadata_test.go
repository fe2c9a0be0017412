package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestMetadataPath(t *testing.T) {
	tests := []struct {
		resource  string
		wantPath  string
		wantURL   string
		wantError string
	}{
		{"https://gw.example.com", "/.well-known/oauth-protected-resource", "https://gw.example.com/.well-known/oauth-protected-resource", ""},
		{"https://gw.example.com/", "/.well-known/oauth-protected-resource", "https://gw.example.com/.well-known/oauth-protected-resource", ""},
		{"https://gw.example.com/mcp", "/.well-known/oauth-protected-resource/mcp", "https://gw.example.com/.well-known/oauth-protected-resource/mcp", ""},
		{"https://gw.example.com/mcp/", "/.well-known/oauth-protected-resource/mcp", "https://gw.example.com/.well-known/oauth-protected-resource/mcp", ""},
		{"https://gw.example.com:8443/a/b", "/.well-known/oauth-protected-resource/a/b", "https://gw.example.com:8443/.well-known/oauth-protected-resource/a/b", ""},
		{"https://gw.example.com/a%20b", "/.well-known/oauth-protected-resource/a b", "https://gw.example.com/.well-known/oauth-protected-resource/a%20b", ""},
		{"http://localhost:8080/mcp", "/.well-known/oauth-protected-resource/mcp", "http://localhost:8080/.well-known/oauth-protected-resource/mcp", ""},
		{"http://[::1]/mcp", "/.well-known/oauth-protected-resource/mcp", "http://[::1]/.well-known/oauth-protected-resource/mcp", ""},
		{"http://gw.example.com/mcp", "", "", "must use https"},
		{"ftp://gw.example.com/mcp", "", "", "must use https"},
		{"/mcp", "", "", "must be an absolute URL"},
		{"https://gw.example.com/mcp?tenant=a", "", "", "must have no query"},
		{"https://gw.example.com/mcp#top", "", "", "must have no fragment"},
		{"https://gw.example.com/mcp#", "", "", "must have no fragment"},
		{"https://user@gw.example.com/mcp", "", "", "must have no user information"},
		{"https://gw.example.com/%zz", "", "", "invalid URL escape"},
	}
	for _, tt := range tests {
		t.Run(tt.resource, func(t *testing.T) {
			path, err := MetadataPath(tt.resource)
			checkResult(t, "MetadataPath", path, err, tt.wantPath, tt.wantError)
			url, err := MetadataURL(tt.resource)
			checkResult(t, "MetadataURL", url, err, tt.wantURL, tt.wantError)
		})
	}
}

func checkResult(t *testing.T, what, got string, err error, want, wantError string) {
	t.Helper()
	if wantError == "" {
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", what, got, err, want)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), wantError) {
		t.Errorf("%s = %q, %v; want an error containing %q", what, got, err, wantError)
	}
}

func TestChallenge(t *testing.T) {
	const metadata = "https://gw.example.com/.well-known/oauth-protected-resource/mcp"
	tests := []struct {
		name        string
		metadataURL string
		err         error
		scopes      []string
		want        string
	}{
		{"no token", metadata, ErrNoToken, nil,
			`Bearer resource_metadata="` + metadata + `"`},
		{"no error", metadata, nil, nil,
			`Bearer resource_metadata="` + metadata + `"`},
		{"keys unavailable", metadata, fmt.Errorf("verifying: %w", ErrKeysUnavailable), nil,
			`Bearer resource_metadata="` + metadata + `"`},
		{"scopes", metadata, ErrNoToken, []string{"mcp:read", "mcp:write"},
			`Bearer resource_metadata="` + metadata + `", scope="mcp:read mcp:write"`},
		{"rejected token", metadata, invalidToken("token expired", errors.New("exp")), nil,
			`Bearer resource_metadata="` + metadata + `", error="invalid_token", error_description="token expired"`},
		{"wrapped rejection with scopes", metadata, fmt.Errorf("auth: %w", invalidToken("wrong audience", nil)), []string{"mcp"},
			`Bearer resource_metadata="` + metadata + `", scope="mcp", error="invalid_token", error_description="wrong audience"`},
		{"malformed request", metadata, invalidRequest("several Authorization headers"), nil,
			`Bearer resource_metadata="` + metadata + `", error="invalid_request", error_description="several Authorization headers"`},
		{"no metadata URL", "", ErrNoToken, nil, `Bearer`},
		{"quotes and backslashes escaped", `https://gw.example.com/"x\`, &TokenError{Code: CodeInvalidToken, Description: `say "hi" \o/`}, nil,
			`Bearer resource_metadata="https://gw.example.com/\"x\\", error="invalid_token", error_description="say \"hi\" \\o/"`},
		{"control characters replaced", metadata, &TokenError{Code: CodeInvalidToken, Description: "a\r\nSet-Cookie: x\té"}, nil,
			`Bearer resource_metadata="` + metadata + `", error="invalid_token", error_description="a??Set-Cookie: x???"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Challenge(tt.metadataURL, tt.err, tt.scopes); got != tt.want {
				t.Errorf("Challenge = %s\nwant        %s", got, tt.want)
			}
		})
	}
}

func TestProtectedResourceMetadataJSON(t *testing.T) {
	tests := []struct {
		name string
		meta ProtectedResourceMetadata
		want string
	}{
		{"minimal", ProtectedResourceMetadata{
			Resource:               "https://gw.example.com/mcp",
			AuthorizationServers:   []string{"https://idp.example.com"},
			BearerMethodsSupported: []string{"header"},
		}, `{"resource":"https://gw.example.com/mcp","authorization_servers":["https://idp.example.com"],"bearer_methods_supported":["header"]}`},
		{"full", ProtectedResourceMetadata{
			Resource:               "https://gw.example.com/mcp",
			AuthorizationServers:   []string{"https://idp.example.com"},
			ScopesSupported:        []string{"mcp:read"},
			BearerMethodsSupported: []string{"header"},
			ResourceName:           "MCP gateway",
		}, `{"resource":"https://gw.example.com/mcp","authorization_servers":["https://idp.example.com"],"scopes_supported":["mcp:read"],"bearer_methods_supported":["header"],"resource_name":"MCP gateway"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.meta)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Marshal = %s\nwant      %s", got, tt.want)
			}
		})
	}
}

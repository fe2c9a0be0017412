package identity

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ProtectedResourceMetadata is the OAuth 2.0 Protected Resource Metadata
// document (RFC 9728 §2) the gateway serves, so that MCP clients learn
// which authorization servers issue tokens for it.
type ProtectedResourceMetadata struct {
	// Resource is the resource identifier: the gateway's canonical URI,
	// which is also the audience tokens must carry (RFC 8707).
	Resource string `json:"resource"`
	// AuthorizationServers are the issuer identifiers of the authorization
	// servers that issue tokens for the resource. The MCP specification
	// requires at least one.
	AuthorizationServers []string `json:"authorization_servers"`
	// ScopesSupported are the scopes clients may request for the resource.
	ScopesSupported []string `json:"scopes_supported,omitempty"`
	// BearerMethodsSupported is how the resource accepts tokens: ["header"].
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	// ResourceName is a human-readable name for the resource.
	ResourceName string `json:"resource_name,omitempty"`
}

// wellKnownPath is the well-known URI suffix RFC 9728 §3 registers.
const wellKnownPath = "/.well-known/oauth-protected-resource"

// MetadataPath returns the path at which the metadata for resource is
// served (RFC 9728 §3.1): "/.well-known/oauth-protected-resource" followed
// by the resource's path, if any, without its trailing slash. The path is
// unescaped, as http.Request.URL.Path is.
func MetadataPath(resource string) (string, error) {
	u, err := parseResource(resource)
	if err != nil {
		return "", err
	}
	return u.Path, nil
}

// MetadataURL returns the URL of the metadata for resource (RFC 9728
// §3.1), the value for Challenge's metadataURL.
func MetadataURL(resource string) (string, error) {
	u, err := parseResource(resource)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// parseResource checks resource as a resource identifier and returns the
// URL of its metadata.
func parseResource(resource string) (*url.URL, error) {
	u, err := parseEndpoint(resource)
	if err != nil {
		return nil, fmt.Errorf("resource %q: %w", resource, err)
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, fmt.Errorf("resource %q: must have no query", resource)
	}
	return &url.URL{
		Scheme: u.Scheme,
		Host:   u.Host,
		Path:   wellKnownPath + strings.TrimRight(u.Path, "/"),
	}, nil
}

// parseEndpoint parses raw as an absolute URL the gateway may rely on: https,
// or http to a loopback host for local development, without user
// information or fragment.
func parseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch {
	case u.Host == "":
		return nil, errors.New("must be an absolute URL")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return nil, errors.New("must use https (http is allowed for loopback hosts only)")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, errors.New("must use https")
	case u.User != nil:
		return nil, errors.New("must have no user information")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("must have no fragment")
	}
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Challenge returns the WWW-Authenticate value for a 401 or 400 response:
// `Bearer resource_metadata="<metadataURL>"` (RFC 9728 §5.1), with
// scope="<scopes>" when scopes are given, and, when err is a *TokenError,
// the error code and fixed description Refusal gives for it (RFC 6750 §3),
// never the cause. A missing token (ErrNoToken) gets no error code, as
// RFC 6750 §3.1 asks.
func Challenge(metadataURL string, err error, scopes []string) string {
	var params []string
	if metadataURL != "" {
		params = append(params, "resource_metadata="+quote(metadataURL))
	}
	if len(scopes) > 0 {
		params = append(params, "scope="+quote(strings.Join(scopes, " ")))
	}
	if _, code, description := Refusal(err); code != "" {
		params = append(params,
			"error="+quote(code),
			"error_description="+quote(description))
	}
	if len(params) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(params, ", ")
}

// quote returns s as an HTTP quoted-string (RFC 9110 §5.6.4): quotes and
// backslashes are escaped, and anything that is not printable ASCII, which
// could split or corrupt the header, is replaced by "?".
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

package identity_test

import (
	"errors"
	"fmt"

	"github.com/mcpgate/mcpgate/caddymodule/identity"
)

// A gateway whose MCP endpoint is https://gw.example.com/mcp serves its
// metadata under the well-known path and points clients to it from every
// 401.
func Example() {
	const resource = "https://gw.example.com/mcp"
	path, err := identity.MetadataPath(resource)
	if err != nil {
		panic(err)
	}
	metadataURL, err := identity.MetadataURL(resource)
	if err != nil {
		panic(err)
	}
	fmt.Println(path)
	fmt.Println(identity.Challenge(metadataURL, identity.ErrNoToken, nil))
	// Output:
	// /.well-known/oauth-protected-resource/mcp
	// Bearer resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/mcp"
}

// A handler answers a refused caller with what Refusal allows it to say
// and logs the error itself, which keeps the details: here the key the
// token names is unknown and the JWKS could not be fetched again.
func ExampleRefusal() {
	err := &identity.TokenError{
		Code:        identity.CodeInvalidToken,
		Description: "unknown signing key",
		Err:         errors.New(`no EC key "k7" in the JWKS; fetching JWKS https://idp.internal/jwks: dial tcp 10.0.0.7:443: connect: connection refused`),
	}
	status, code, description := identity.Refusal(err)
	fmt.Println(status, code, description)
	fmt.Println(identity.Challenge("https://gw.example.com/.well-known/oauth-protected-resource/mcp", err, nil))
	// Output:
	// 401 invalid_token unknown signing key
	// Bearer resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/mcp", error="invalid_token", error_description="unknown signing key"
}

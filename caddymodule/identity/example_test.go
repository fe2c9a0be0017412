package identity_test

import (
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

// Package mcpgate registers mcpgate's Caddy modules: the mcp_policy
// gateway handler with the mcp_approvals handler, the mcpgate app and the
// admin API routes; the mcp_stdio handler, which serves a local stdio MCP
// server over Streamable HTTP; and the mcp_demo example server. Import it
// for its side effects, or build Caddy with
// `xcaddy build --with github.com/mcpgate/mcpgate` (see xcaddy.json and
// docs/configuration.md).
package mcpgate

import (
	_ "github.com/mcpgate/mcpgate/caddymodule"
	_ "github.com/mcpgate/mcpgate/caddymodule/demo"
	_ "github.com/mcpgate/mcpgate/caddymodule/stdiomodule"
)

// Command mcpgate is Caddy with its standard modules plus mcpgate's MCP
// policy gateway modules. Use it as you would use caddy:
//
//	mcpgate run                 # serves ./Caddyfile
//	mcpgate run --config my.Caddyfile
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/mcpgate/mcpgate"
)

func main() {
	caddycmd.Main()
}

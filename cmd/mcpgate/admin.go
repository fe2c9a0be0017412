package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// adminAddress resolves the admin API address: the one given, else the
// admin address of the Caddyfile in the current folder (as `mcpgate run`
// would serve it, and said on stderr, since a Caddyfile in the folder
// decides where decisions go). It must be a unix socket: mcpgate answers
// its operator routes only there (or over Caddy's remote admin, with a
// client certificate this tool does not hold), so a TCP address, Caddy's
// default localhost:2019 among them, could only reach whatever else
// listens there.
func adminAddress(address string, stderr io.Writer) (string, error) {
	source := "--address"
	configFile := ""
	if address == "" {
		if _, err := os.Stat("Caddyfile"); err == nil {
			configFile, source = "Caddyfile", "./Caddyfile"
		}
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, configFile, "")
	if err != nil {
		return "", err
	}
	parsed, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return "", fmt.Errorf("admin address %q: %w", addr, err)
	}
	if address == "" {
		if fallback, err := caddycmd.DetermineAdminAPIAddress("", nil, "", ""); err == nil && fallback == addr {
			source = "Caddy's default"
			if configFile != "" {
				source += "; ./Caddyfile names no admin address"
			}
		}
	}
	if parsed.Network != "unix" {
		return "", fmt.Errorf("admin address %s (from %s) is not a unix socket: mcpgate answers its operator routes only on one; give --address unix//path/to/admin.sock, as the Caddyfile's admin option names it", addr, source)
	}
	if configFile != "" {
		fmt.Fprintf(stderr, "admin API: %s (from %s)\n", addr, source)
	}
	return addr, nil
}

// adminJSON calls the admin API at address with body (nil: none) as JSON,
// and decodes the answer into into. A non-2xx answer is an error that
// carries the API's message.
func adminJSON(address, method, uri string, body, into any) error {
	addr, err := adminAddress(address, os.Stderr)
	if err != nil {
		return err
	}
	var header http.Header
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		header, reader = http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(raw)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, header, reader)
	if err != nil {
		return withNoGatewayHint(err, addr)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	return nil
}

// withNoGatewayHint adds to err, a failed admin request, what to do when
// nothing answers on the admin socket (Caddy's request function keeps
// only the text of the dial error, so the socket is dialled again to
// tell).
func withNoGatewayHint(err error, addr string) error {
	parsed, parseErr := caddy.ParseNetworkAddress(addr)
	if parseErr != nil || !parsed.IsUnixNetwork() {
		return err
	}
	conn, dialErr := net.Dial("unix", parsed.Host)
	if dialErr == nil {
		conn.Close()
		return err
	}
	return fmt.Errorf("%w: no gateway answers on the admin socket %s: start it (mcpgate run, with the Caddyfile that names this admin address), or give --address", err, parsed.Host)
}

// parentCommand makes cmd, a command of subcommands, refuse anything but
// one of them: cobra would otherwise print its help and exit 0 on a
// mistyped subcommand (`approvals aprove`), which a script reads as done.
// A mistyped subcommand given flags its parent lacks (`tools lst
// --address ...`) is refused as the unknown command it is; flags alone
// (`tools --address ...`), as the flags they are.
func parentCommand(cmd *cobra.Command) {
	cmd.Args = cobra.NoArgs
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if args := c.Flags().Args(); len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath())
		}
		return err
	})
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// addressFlag gives an operator command its --address (adminAddress).
func addressFlag(cmd *cobra.Command) {
	cmd.Flags().String("address", "", "Admin API address, a unix socket (default: the admin address in ./Caddyfile)")
}

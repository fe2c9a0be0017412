package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/caddymodule/adminapi"
	"github.com/mcpgate/mcpgate/caddymodule/display"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "tools",
		Usage: "list|accept ...",
		Short: "Lists upstream tools and accepts changed tool definitions",
		Long: `
Talks to a running gateway through Caddy's admin API: --address, or the
admin address of ./Caddyfile (said on stderr). mcpgate answers these
routes only over a unix socket (admin unix//run/mcpgate/admin.sock) or
Caddy's remote admin: a TCP port on the host is open to every local
process, the agent whose call is held among them. So this command talks
to a unix socket only.

  mcpgate tools list [--server tracker]
  mcpgate tools show --server tracker --tool create_issue
  mcpgate tools accept --server tracker --tool create_issue --hash <sha256>

A tool whose definition (description, schemas, annotations) changed since an
operator accepted it is blocked and hidden until it is accepted again.
"tools show" prints the definition and its hash; accept takes that hash
(--hash), so that only the definition you reviewed is accepted.
`,
		CobraFunc: func(cmd *cobra.Command) {
			parentCommand(cmd)
			listCmd := &cobra.Command{Use: "list [--server <name>]", Short: "Lists the tools the gateway knows", Args: cobra.NoArgs}
			addressFlag(listCmd)
			listCmd.Flags().String("server", "", "Only this server's tools")
			listCmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				return listToolsCommand(listCmd.OutOrStdout(), fl.String("address"), fl.String("server"))
			})
			acceptCmd := &cobra.Command{Use: "accept --server <name> --tool <name> --hash <sha256>", Short: "Accepts a tool's definition, the one you reviewed", Args: cobra.NoArgs}
			addressFlag(acceptCmd)
			acceptCmd.Flags().String("server", "", "The tool's server (required)")
			acceptCmd.Flags().String("tool", "", "The tool (required)")
			acceptCmd.Flags().String("hash", "", "The hash of the definition you reviewed, as tools show prints it (required)")
			acceptCmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				return acceptToolCommand(acceptCmd.OutOrStdout(), fl.String("address"), adminapi.AcceptRequest{
					Server: fl.String("server"), Tool: fl.String("tool"), Hash: fl.String("hash"),
				})
			})
			showCmd := &cobra.Command{Use: "show --server <name> --tool <name>", Short: "Prints a tool's definition and its hash, to review before accepting", Args: cobra.NoArgs}
			addressFlag(showCmd)
			showCmd.Flags().String("server", "", "The tool's server (required)")
			showCmd.Flags().String("tool", "", "The tool (required)")
			showCmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				return showToolCommand(showCmd.OutOrStdout(), fl.String("address"), fl.String("server"), fl.String("tool"))
			})
			cmd.AddCommand(listCmd, showCmd, acceptCmd)
		},
	})
}

func listToolsCommand(out io.Writer, address, server string) (int, error) {
	uri := "/mcpgate/tools"
	if server != "" {
		uri += "?server=" + url.QueryEscape(server)
	}
	var tools []adminapi.ListedTool
	if err := adminJSON(address, http.MethodGet, uri, nil, &tools); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("listing tools: %w", err)
	}
	if len(tools) == 0 && server != "" {
		fmt.Fprintf(os.Stderr, "the gateway knows no tools of server %q (server names are exact; its tools are learned from its first tools/list)\n", server)
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tTOOL\tCATEGORY\tSTATUS\tHASH")
	for _, t := range tools {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cell(t.Server), cell(t.Name), t.Category, toolStatus(t), t.Hash)
	}
	return caddy.ExitCodeSuccess, tw.Flush()
}

func acceptToolCommand(out io.Writer, address string, req adminapi.AcceptRequest) (int, error) {
	if req.Server == "" || req.Tool == "" || req.Hash == "" {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--server, --tool and --hash are required: review the definition with mcpgate tools show first, and give its hash")
	}
	var answer struct {
		Accepted adminapi.AcceptRequest `json:"accepted"`
	}
	if err := adminJSON(address, http.MethodPost, "/mcpgate/tools/accept", req, &answer); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("accepting %s on %s: %w", req.Tool, req.Server, err)
	}
	fmt.Fprintf(out, "accepted definition %s of %s on %s\n", display.Line(answer.Accepted.Hash), req.Tool, req.Server)
	return caddy.ExitCodeSuccess, nil
}

func showToolCommand(out io.Writer, address, server, tool string) (int, error) {
	if server == "" || tool == "" {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--server and --tool are required")
	}
	var tools []adminapi.ListedTool
	uri := "/mcpgate/tools?server=" + url.QueryEscape(server) + "&tool=" + url.QueryEscape(tool)
	if err := adminJSON(address, http.MethodGet, uri, nil, &tools); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("showing %s on %s: %w", tool, server, err)
	}
	for _, t := range tools {
		var definition bytes.Buffer
		if err := json.Indent(&definition, t.Definition, "", "  "); err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("the definition of %s on %s: %w", tool, server, err)
		}
		// The upstream wrote it: what could drive the terminal or hide
		// text is made visible.
		fmt.Fprintf(out, "server:   %s\ntool:     %s\ncategory: %s\nstatus:   %s\nhash:     %s\n%s\n",
			display.Line(t.Server), display.Line(t.Name), t.Category, toolStatus(t), t.Hash, display.Block(definition.String()))
	}
	return caddy.ExitCodeSuccess, nil
}

// cell is a name the upstream chose, for a column of a table: on one line,
// hidden characters shown, and quoted when it holds a space, which could
// otherwise pass for the gap between columns (a name followed by "
// read_only  accepted" and many spaces reads as a row of its own).
func cell(name string) string {
	shown := display.Line(name)
	if strings.Contains(shown, " ") {
		return strconv.Quote(shown)
	}
	return shown
}

// toolStatus says whether a tool's definition is the accepted one.
func toolStatus(t adminapi.ListedTool) string {
	if t.Changed {
		return "CHANGED (blocked until accepted)"
	}
	return "accepted"
}

package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/caddymodule/adminapi"
	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/display"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "approvals",
		Usage: "list|approve|deny ...",
		Short: "Lists held tool calls and approves or denies them",
		Long: `
Talks to a running gateway through Caddy's admin API: --address, or the
admin address of ./Caddyfile (said on stderr). mcpgate answers these
routes only over a unix socket (admin unix//run/mcpgate/admin.sock) or
Caddy's remote admin: a TCP port on the host is open to every local
process, the agent whose call is held among them. So this command talks
to a unix socket only.

  mcpgate approvals list [--all]
  mcpgate approvals approve <id> [--approver <name>] [--reason <text>]
  mcpgate approvals deny <id> [--approver <name>] [--reason <text>]

A decision taken here is like a signed callback: the first decision on an
approval wins. A denial's reason reaches the client. The approver recorded
is "admin"; --approver (default $USER) is recorded beside it as a claim.
`,
		CobraFunc: func(cmd *cobra.Command) {
			parentCommand(cmd)
			listCmd := &cobra.Command{Use: "list [--all]", Short: "Lists pending approvals", Args: cobra.NoArgs}
			addressFlag(listCmd)
			listCmd.Flags().Bool("all", false, "Also list decided, cancelled and expired approvals the gateway remembers")
			listCmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
				return listApprovalsCommand(listCmd.OutOrStdout(), fl.String("address"), fl.Bool("all"))
			})
			cmd.AddCommand(listCmd)
			for _, decision := range []struct{ verb, short string }{
				{"approve", "Approves a held call: it runs when made again, or at once if still held"},
				{"deny", "Denies a held call"},
			} {
				verb := decision.verb
				decideCmd := &cobra.Command{
					Use:   verb + " <id> [--approver <name>] [--reason <text>]",
					Short: decision.short,
					Args:  cobra.ExactArgs(1),
				}
				addressFlag(decideCmd)
				decideCmd.Flags().String("approver", os.Getenv("USER"), "Who says they decide (recorded and logged beside the approver \"admin\")")
				decideCmd.Flags().String("reason", "", "Why (a denial's reason reaches the client)")
				decideCmd.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
					return decideApprovalCommand(decideCmd.OutOrStdout(), fl.String("address"), fl.Arg(0), verb,
						adminapi.Decision{Approver: fl.String("approver"), Reason: fl.String("reason")})
				})
				cmd.AddCommand(decideCmd)
			}
		},
	})
}

func listApprovalsCommand(out io.Writer, address string, all bool) (int, error) {
	uri := "/mcpgate/approvals"
	if all {
		uri += "?all=1"
	}
	var approvals []approval.Approval
	if err := adminJSON(address, http.MethodGet, uri, nil, &approvals); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("listing approvals: %w", err)
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSERVER\tTOOL\tUSER\tAPPROVERS\tWAITING\tARGUMENTS\tREASON")
	now := time.Now()
	for _, a := range approvals {
		state := string(a.State)
		if a.Approver != "" && a.State != approval.Pending {
			state += " by " + a.Approver
		}
		// What callers, servers and policies wrote, on one line each, with
		// what could drive the terminal or fake a row made visible.
		approvers := "any reviewer"
		if len(a.Approvers) > 0 {
			approvers = strings.Join(a.Approvers, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, display.Line(state), display.Line(a.Server), display.Line(a.Tool), display.Line(a.User),
			display.Line(approvers), a.Waited(now).Round(time.Second), display.Line(string(a.Arguments)), display.Line(a.Reason))
	}
	return caddy.ExitCodeSuccess, tw.Flush()
}

func decideApprovalCommand(out io.Writer, address, id, verb string, decision adminapi.Decision) (int, error) {
	if strings.TrimSpace(id) == "" {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("%s: give the approval's id (mcpgate approvals list)", verb)
	}
	var decided approval.Approval
	if err := adminJSON(address, http.MethodPost, "/mcpgate/approvals/"+url.PathEscape(id)+"/"+verb, decision, &decided); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("%s %s: %w", verb, id, err)
	}
	// The answer must be the decision asked for, on the approval named.
	want := approval.Approved
	if verb == "deny" {
		want = approval.Denied
	}
	if decided.ID != id || decided.State != want {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("%s %s: the gateway answered approval %s %s, not %s %s",
			verb, id, display.Line(decided.ID), display.Line(string(decided.State)), id, want)
	}
	fmt.Fprintf(out, "%s is %s (%s on %s, waited %s)\n", decided.ID, decided.State, display.Line(decided.Tool), display.Line(decided.Server),
		decided.Waited(time.Now()).Round(time.Second))
	return caddy.ExitCodeSuccess, nil
}

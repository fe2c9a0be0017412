package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mcpgate/mcpgate/caddymodule/adminapi"
	"github.com/mcpgate/mcpgate/caddymodule/approval"
)

// TestAdminAddress: the operator commands talk to a unix socket only, the
// one given or the one ./Caddyfile names (said on stderr); a TCP address,
// Caddy's default among them, is refused before anything is sent, since
// mcpgate never answers its operator routes there and whatever listens
// there is not the gateway.
func TestAdminAddress(t *testing.T) {
	tests := []struct {
		name, address, caddyfile string
		want, wantErr, wantNote  string
	}{
		{name: "a socket given", address: "unix//run/mcpgate/admin.sock", want: "unix//run/mcpgate/admin.sock"},
		{name: "TCP given", address: "localhost:2019", wantErr: "admin address localhost:2019 (from --address) is not a unix socket"},
		{name: "nothing: Caddy's default", wantErr: "(from Caddy's default) is not a unix socket"},
		{name: "the Caddyfile's socket", caddyfile: "{\n\tadmin unix//run/mcpgate/admin.sock\n}\n", want: "unix//run/mcpgate/admin.sock", wantNote: "admin API: unix//run/mcpgate/admin.sock (from ./Caddyfile)"},
		{name: "the Caddyfile's TCP port", caddyfile: "{\n\tadmin 127.0.0.1:2999\n}\n", wantErr: "(from ./Caddyfile) is not a unix socket"},
		{name: "a Caddyfile naming none", caddyfile: ":8080 {\n\trespond ok\n}\n", wantErr: "(from Caddy's default; ./Caddyfile names no admin address) is not a unix socket"},
		{name: "a datagram socket", address: "unixgram//run/mcpgate/admin.sock", wantErr: "is not a unix socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.caddyfile != "" {
				if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(tt.caddyfile), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Chdir(dir)
			var stderr bytes.Buffer
			got, err := adminAddress(tt.address, &stderr)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			case tt.wantErr == "" && (err != nil || got != tt.want):
				t.Errorf("address %q, error %v; want %q", got, err, tt.want)
			}
			if !strings.Contains(stderr.String(), tt.wantNote) {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.wantNote)
			}
		})
	}
}

// TestNoGatewayOnTheSocket: an operator command with no gateway on its
// admin socket (none there, or one left by a gateway that stopped) says
// so, and what to do.
func TestNoGatewayOnTheSocket(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	listener, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	listener.(*net.UnixListener).SetUnlinkOnClose(false)
	listener.Close()
	for _, socket := range []string{filepath.Join(dir, "none.sock"), stale} {
		var answer []approval.Approval
		err := adminJSON("unix/"+socket, http.MethodGet, "/mcpgate/approvals", nil, &answer)
		if err == nil || !strings.Contains(err.Error(), "no gateway answers on the admin socket "+socket+": start it") {
			t.Errorf("%s: %v; want it said that no gateway answers there", socket, err)
		}
	}
}

// TestDecisionAnswerChecked: approve and deny check that the answer is the
// decision asked for, on the approval named, and refuse an empty id
// before anything is sent.
func TestDecisionAnswerChecked(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "admin.sock")
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An answer about another approval than the one asked about.
		_ = json.NewEncoder(w).Encode(approval.Approval{ID: "apr_other", State: approval.Approved, Tool: "t", Server: "s"})
	})}
	go func() { _ = srv.Serve(listener) }()
	t.Cleanup(func() { _ = srv.Close() })
	address := "unix/" + socket
	for _, tt := range []struct{ name, id, verb, wantErr string }{
		{"another approval answered", "apr_asked", "approve", "the gateway answered approval apr_other approved, not apr_asked approved"},
		{"another decision answered", "apr_other", "deny", "the gateway answered approval apr_other approved, not apr_other denied"},
		{"an empty id", " ", "approve", "give the approval's id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := decideApprovalCommand(&out, address, tt.id, tt.verb, adminapi.Decision{Approver: "ops"})
			checkError(t, err, tt.wantErr)
		})
	}
}

// TestUnknownSubcommands: a mistyped subcommand, or arguments a command
// takes none of, fail rather than print the help and exit 0.
func TestUnknownSubcommands(t *testing.T) {
	for _, tt := range []struct {
		command string
		args    []string
		wantErr string
	}{
		{"approvals", []string{"aprove", "apr_x"}, `unknown command "aprove" for "mcpgate approvals"`},
		{"approvals", []string{"list", "extra"}, `unknown command "extra" for "mcpgate approvals list"`},
		{"approvals", []string{"lst"}, `unknown command "lst" for "mcpgate approvals"`},
		{"tools", []string{"acept"}, `unknown command "acept" for "mcpgate tools"`},
		{"tools", []string{"list", "extra"}, `unknown command "extra" for "mcpgate tools list"`},
		{"tools", []string{"lst", "--address", "unix//x.sock"}, `unknown command "lst" for "mcpgate tools"`},
		{"tools", []string{"list", "--bogus"}, `unknown flag: --bogus`},
		{"policy", []string{"evaluate"}, `unknown command "evaluate" for "mcpgate policy"`},
		{"policy", []string{"evl"}, `unknown command "evl" for "mcpgate policy"`},
		{"policy", []string{"eval", "--input", "x.json", "--query", ""}, "--query is empty"},
		{"tools", []string{"--address", "unix//x.sock"}, `unknown flag: --address`},
		{"approvals", []string{"--address", "unix//x.sock"}, `unknown flag: --address`},
		{"policy", []string{"--input", "x.json"}, `unknown flag: --input`},
		{"approvals", nil, ""},
		{"policy", nil, ""},
	} {
		t.Run(tt.command+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			// A subcommand of a root, as mcpgate runs it: cobra refuses
			// a root's unknown subcommands on its own, not another's.
			root := &cobra.Command{Use: "mcpgate"}
			cmd := &cobra.Command{Use: tt.command}
			caddycmd.Commands()[tt.command].CobraFunc(cmd)
			root.AddCommand(cmd)
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append([]string{tt.command}, tt.args...))
			checkError(t, root.Execute(), tt.wantErr)
		})
	}
}

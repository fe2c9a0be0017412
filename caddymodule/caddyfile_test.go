package caddymodule_test

import (
	"maps"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mcpgate/mcpgate/caddymodule"
	"github.com/mcpgate/mcpgate/caddymodule/tooloverride"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// TestCaddyfileSettings checks how decision_cache (a size or off),
// max_depth, max_values, server and upstream read, with clear errors for anything
// out of range or empty.
func TestCaddyfileSettings(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    int // -1: not set
		wantErr string
	}{
		{"", -1, ""},
		{"decision_cache 500", 500, ""},
		{"decision_cache off", 0, ""},
		{"decision_cache 16777216", 16777216, ""},
		{"decision_cache 0", 0, "want a number of decisions from 1 to 16777216, or off"},
		{"decision_cache -3", 0, "want a number of decisions from 1 to 16777216, or off"},
		{"decision_cache lots", 0, "want a number of decisions from 1 to 16777216, or off"},
		{"decision_cache 16777217", 0, "want a number of decisions from 1 to 16777216, or off"},
		{"decision_cache 9223372036854775807", 0, "want a number of decisions from 1 to 16777216, or off"},
		{"max_depth 1000", -1, ""},
		{"max_depth 1001", 0, "max_depth: want a depth from 1 to 1000"},
		{"max_depth 0", 0, "max_depth: want a depth from 1 to 1000"},
		{"max_values 10000000", -1, ""},
		{"max_values 10000001", 0, "max_values: want a number from 1 to 10000000"},
		{"max_values 0", 0, "max_values: want a number from 1 to 10000000"},
		{"max_values many", 0, "max_values: want a number from 1 to 10000000"},
		{`server ""`, 0, "server: the name must not be empty"},
		{`upstream " "`, 0, "upstream: the name must not be empty"},
		{"decision_cache", 0, "wrong argument count"},
		{"decision_cache 5 6", 0, "wrong argument count"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			var h caddymodule.Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_policy {\n\tpolicy p\n\t" + tc.line + "\n}"))
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			got := -1
			if h.DecisionCache != nil {
				got = *h.DecisionCache
			}
			if got != tc.want {
				t.Errorf("DecisionCache = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestValidateSizes checks that a decision_cache, max_depth, max_values or
// max_body out of range, or a blank server name, in JSON config is refused.
func TestValidateSizes(t *testing.T) {
	for _, tc := range []struct {
		cache, depth, values int
		maxBody              int64
		server               string
		wantErr              string
	}{
		{-1, 0, 0, 0, "", "decision_cache must be from 0 (off) to 16777216, got -1"},
		{1 << 30, 0, 0, 0, "", "decision_cache must be from 0 (off) to 16777216, got 1073741824"},
		{0, 1 << 20, 0, 0, "", "max_depth must be at most 1000"},
		{0, 0, -1, 0, "", "max_values must be from 1 to 10000000 (0 is the default), got -1"},
		{0, 0, 10_000_001, 0, "", "max_values must be from 1 to 10000000 (0 is the default), got 10000001"},
		{0, 0, 0, 1<<40 + 1, "", "max_body must be at most 1099511627776 bytes"},
		{0, 0, 0, 0, " ", "server must not be blank"},
		{16777216, 1000, 10_000_000, 1 << 40, "tracker", ""},
	} {
		h := caddymodule.Handler{Policies: []string{"p"}, DecisionCache: &tc.cache, MaxDepth: tc.depth, MaxValues: tc.values, MaxBody: tc.maxBody, Server: tc.server}
		checkError(t, h.Validate(), tc.wantErr)
	}
}

// TestValidateDurations: durations past what any setup needs (an
// evaluation bound under a millisecond, which times every evaluation out;
// a keepalive under 100 ms, which floods a held client with progress) are
// refused, naming the setting and its range.
func TestValidateDurations(t *testing.T) {
	approval := func(timeout, keepalive, hold time.Duration) *caddymodule.ApprovalConfig {
		return &caddymodule.ApprovalConfig{
			Webhooks: []caddymodule.Webhook{{URL: "https://hooks.example/x"}}, WebhookSecrets: []string{"a"}, DecisionSecrets: []string{"b"},
			CallbackURL: "https://gw.example/approvals", Timeout: caddy.Duration(timeout), Keepalive: caddy.Duration(keepalive), Hold: caddy.Duration(hold),
		}
	}
	for _, tc := range []struct {
		name     string
		eval     time.Duration
		approval *caddymodule.ApprovalConfig
		wantErr  string
	}{
		{"eval_timeout of a nanosecond", time.Nanosecond, nil, "eval_timeout must be from 1ms to 1m0s, got 1ns"},
		{"eval_timeout of a day", 24 * time.Hour, nil, "eval_timeout must be from 1ms to 1m0s, got 24h0m0s"},
		{"keepalive of a nanosecond", 0, approval(0, time.Nanosecond, 0), "keepalive must be from 100ms to 10m0s, got 1ns"},
		{"hold of two hours", 0, approval(0, 0, 2*time.Hour), "hold must be from 1ns to 1h0m0s, got 2h0m0s"},
		{"timeout of a year", 0, approval(365*24*time.Hour, 0, 0), "timeout must be from 1ns to 168h0m0s"},
		{"a negative hold", 0, approval(0, 0, -time.Second), "hold must be from 1ns to 1h0m0s, got -1s"},
		{"the bounds", time.Minute, approval(7*24*time.Hour, 100*time.Millisecond, time.Hour), ""},
		{"the defaults", 0, approval(0, 0, 0), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := caddymodule.Handler{Policies: []string{"p"}, EvalTimeout: caddy.Duration(tc.eval), Approval: tc.approval}
			checkError(t, h.Validate(), tc.wantErr)
		})
	}
}

// TestCaddyfileEvalTimeout checks how eval_timeout reads: a positive
// duration, and a clear error for anything else.
func TestCaddyfileEvalTimeout(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    time.Duration
		wantErr string
	}{
		{"eval_timeout 250ms", 250 * time.Millisecond, ""},
		{"eval_timeout 0s", 0, `eval_timeout: invalid duration "0s"`},
		{"eval_timeout soon", 0, `eval_timeout: invalid duration "soon"`},
		{"eval_timeout", 0, "wrong argument count"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			var h caddymodule.Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_policy {\n\tpolicy p\n\t" + tc.line + "\n}"))
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case time.Duration(h.EvalTimeout) != tc.want:
				t.Errorf("EvalTimeout = %v, want %v", time.Duration(h.EvalTimeout), tc.want)
			}
		})
	}
}

// TestCaddyfilePermissions checks how a permissions block reads: each
// line once, known actions and approvers, and clear errors otherwise.
func TestCaddyfilePermissions(t *testing.T) {
	for _, tc := range []struct {
		name, block, wantErr string
	}{
		{"categories and tools", "read_only allow\n\twrite needs_approval caller group:leads\n\ttool rm block", ""},
		{"a category twice", "destructive block\n\tdestructive allow", "permissions: destructive given twice"},
		{"a tool twice", "tool rm block\n\ttool rm allow", "permissions: tool rm given twice"},
		{"an unknown action", "write maybe", `action "maybe" is not one of`},
		{"approvers on allow", "tool rm allow caller", "approvers go with needs_approval only"},
		{"an unknown approver", "write needs_approval root", `unknown approver "root"`},
		{"an unknown line", "delete block", `unrecognized line "delete"`},
		{"a tool without an action", "tool rm", "tool takes a name and an action"},
		{"resources and prompts", "read_only allow\n\tresources block\n\tprompts allow", ""},
		{"resources twice", "resources block\n\tresources allow", "permissions: resources given twice"},
		{"resources needing approval", "resources needs_approval", "resources: want allow or block (only tool calls are held for approval), got needs_approval"},
		{"prompts with an approver", "prompts allow caller", "prompts takes one action, allow or block"},
		{"resources empty", `resources ""`, "permissions: resources: an empty argument"},
		{"a category empty", `read_only ""`, "permissions: read_only: an empty argument"},
		{"an empty approver", `write needs_approval ""`, "permissions: write: an empty argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h caddymodule.Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_policy {\n\tpermissions {\n\t" + tc.block + "\n\t}\n}"))
			checkError(t, err, tc.wantErr)
		})
	}
}

// TestCaddyfileInbox reads the inbox block of mcp_approvals: its groups
// and the caller ids of its accounts, each given once.
func TestCaddyfileInbox(t *testing.T) {
	for _, tc := range []struct {
		name, block, wantErr string
		wantCallerIDs        map[string][]string
	}{
		{name: "groups and caller ids", block: "group leads alice\n\tcaller_ids alice alice@example.com a.smith",
			wantCallerIDs: map[string][]string{"alice": {"alice@example.com", "a.smith"}}},
		{name: "caller ids without ids", block: "caller_ids alice", wantErr: "caller_ids takes an account and the caller ids"},
		{name: "caller ids twice", block: "caller_ids alice a\n\tcaller_ids alice b", wantErr: "caller_ids of alice given twice"},
		{name: "a group twice", block: "group leads alice\n\tgroup leads bob", wantErr: "group leads given twice"},
		{name: "basic_auth twice", block: "basic_auth {\n\t\tbob $2a$14$y\n\t}", wantErr: "basic_auth given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h caddymodule.ApprovalsHandler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_approvals {\n\tinbox {\n\tbasic_auth {\n\t\talice $2a$14$x\n\t}\n\t" + tc.block + "\n\t}\n}"))
			if checkError(t, err, tc.wantErr) && tc.wantErr == "" && !reflect.DeepEqual(h.Inbox.CallerIDs, tc.wantCallerIDs) {
				t.Errorf("caller ids %v, want %v", h.Inbox.CallerIDs, tc.wantCallerIDs)
			}
		})
	}
}

// TestOriginsAndPinsRefused: allowed origins that are empty, "null"
// (which any page can send), or no origin a browser sends (no scheme, a
// path: no request would match them), and a pins file that names nothing
// once its placeholders are replaced, do not load.
func TestOriginsAndPinsRefused(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	for _, tc := range []struct{ name, lines, wantErr string }{
		{"null", "allowed_origins null", `allowed_origins "null"`},
		{"an unset placeholder", "allowed_origins {env.MCPGATE_TEST_UNSET_ORIGIN}", "is empty once its placeholders are replaced"},
		{"a host without a scheme", "allowed_origins app.example.com", `allowed_origins "app.example.com" is not an origin`},
		{"a URL with a path", "allowed_origins https://app.example.com https://b.example.com/mcp", `allowed_origins "https://b.example.com/mcp" is not an origin`},
		{"a URL with a query", "allowed_origins https://b.example.com?x", `allowed_origins "https://b.example.com?x" is not an origin`},
		{"an empty port", "allowed_origins https://b.example.com:", `is not an origin`},
		{"a pins file from an unset placeholder", "pins_file {env.MCPGATE_TEST_UNSET_PINS}", "names no file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			err := loadCaddyfile(t, globalOptions(t)+policySite(freePort(t), "", "policy testdata/policy\n\t\t"+tc.lines, up.URL))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v; want it refused with %q", err, tc.wantErr)
			}
		})
	}
}

// TestCaddyfileOnceEach: a subdirective that takes one value, given twice
// in a block, is refused rather than silently replaced by the second.
func TestCaddyfileOnceEach(t *testing.T) {
	for _, tc := range []struct{ name, block, wantErr string }{
		{"server", "server a\n\tserver b", "server given twice"},
		{"pins_file", "pins_file a.json\n\tpins_file b.json", "pins_file given twice"},
		{"an approval's callback_url", "approval {\n\t\tcallback_url https://a/approvals\n\t\tcallback_url https://b/approvals\n\t}", "callback_url given twice"},
		{"an approval's instance", "approval {\n\t\tinstance a\n\t\tinstance b\n\t}", "instance given twice"},
		{"permissions", "permissions {\n\t\tread_only allow\n\t}\n\tpermissions {\n\t\twrite block\n\t}", "permissions given twice"},
		{"identity", "identity caddy\n\tidentity caddy", "identity given twice"},
		{"a negative polling delay", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tpolling -5s -1s\n\t}", "durations must be positive"},
		{"a zero polling delay", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tpolling 0s 0s\n\t}", "durations must be positive"},
		{"a negative min polling delay", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tpolling -1h 1s\n\t}", "durations must be positive"},
		{"a realm", "identity caddy {\n\t\trealm a\n\t\trealm b\n\t}", "realm given twice"},
		{"a realm without a name", "identity caddy {\n\t\trealm\n\t}", "realm needs a name"},
		{"a realm of two names", "identity caddy {\n\t\trealm a b\n\t}", "wrong argument count"},
		{"an unknown identity caddy subdirective", "identity caddy {\n\t\tuser x\n\t}", `unrecognized subdirective "user"`},
		{"a realm for a JWT", "identity jwt {\n\t\trealm a\n\t}", `unrecognized subdirective "realm"`},
		{"identity caddy with a realm", "identity caddy {http.auth.user.id} {\n\t\trealm staff\n\t}", ""},
		{"audit", "audit\n\taudit", "audit given twice"},
		{"approval", "approval\n\tapproval", "approval given twice"},
		{"a JWT's jwks_url", "identity jwt {\n\t\tjwks_url https://a/jwks\n\t\tjwks_url https://b/jwks\n\t}", "jwks_url given twice"},
		{"a JWT's issuer", "identity jwt {\n\t\tissuer https://a\n\t\tissuer https://b\n\t}", "issuer given twice"},
		{"a JWT's resource", "identity jwt {\n\t\tresource https://a/mcp\n\t\tresource https://b/mcp\n\t}", "resource given twice"},
		{"a bundle's token", "bundle https://b.example bundles/mcp.tar.gz {\n\t\ttoken a\n\t\ttoken b\n\t}", "token given twice"},
		{"a bundle's polling", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tpolling 10s 20s\n\t\tpolling 1s 2s\n\t}", "polling given twice"},
		{"a bundle's verify", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tverify a a.pem\n\t\tverify b b.pem\n\t}", "verify given twice"},
		{"a bundle's download_timeout", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tdownload_timeout 1m\n\t\tdownload_timeout 2m\n\t}", "download_timeout given twice"},
		{"a zero download_timeout", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tdownload_timeout 0s\n\t}", "a positive duration"},
		{"a bundle's max_size", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tmax_size 1MiB\n\t\tmax_size 2MiB\n\t}", "max_size given twice"},
		{"a zero max_size", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tmax_size 0\n\t}", "invalid size"},
		{"a max_size past int64", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tmax_size 16EiB\n\t}", "invalid size"},
		{"a bundle's download_timeout and max_size", "bundle https://b.example bundles/mcp.tar.gz {\n\t\tdownload_timeout 1m\n\t\tmax_size 4MiB\n\t}", ""},
		{"a webhook's template", "approval {\n\t\twebhook https://hooks.example/a {\n\t\t\ttemplate a.tmpl\n\t\t\ttemplate b.tmpl\n\t\t}\n\t}", "template given twice"},
		{"a webhook's content_type", "approval {\n\t\twebhook https://hooks.example/a {\n\t\t\tcontent_type text/plain\n\t\t\tcontent_type application/json\n\t\t}\n\t}", "content_type given twice"},
		{"audit's arguments", "audit {\n\t\targuments\n\t\targuments\n\t}", "arguments given twice"},
		{"JWT audiences and audit claims add up", "identity jwt {\n\t\tjwks_url https://a/jwks\n\t\taudience a\n\t\taudience b\n\t}\n\taudit {\n\t\tclaims sub\n\t\tclaims email\n\t}", ""},
		{"policies and session keys add up", "policy a\n\tpolicy b\n\tsession_keys k1\n\tsession_keys k2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h caddymodule.Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_policy {\n\t" + tc.block + "\n}"))
			checkError(t, err, tc.wantErr)
		})
	}
	// mcp_approvals, the other directive with such subdirectives.
	for _, tc := range []struct{ name, block, wantErr string }{
		{"instance", "instance a\n\tinstance b", "instance given twice"},
		{"inbox", "inbox {\n\t\tbasic_auth {\n\t\t\talice $2a$14$x\n\t\t}\n\t}\n\tinbox {\n\t\tbasic_auth {\n\t\t\tbob $2a$14$y\n\t\t}\n\t}", "inbox given twice"},
	} {
		t.Run("mcp_approvals "+tc.name, func(t *testing.T) {
			var h caddymodule.ApprovalsHandler
			checkError(t, h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_approvals {\n\t"+tc.block+"\n}")), tc.wantErr)
		})
	}
}

// TestCaddyfileBundleVerify: `verify <key_id> <key_file> [<algorithm>]`
// in a bundle block gives its verification; anything else is refused.
func TestCaddyfileBundleVerify(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    caddymodule.BundleVerificationSource
		wantErr string
	}{
		{"verify release /etc/mcpgate/bundle.pem", caddymodule.BundleVerificationSource{KeyID: "release", KeyFile: "/etc/mcpgate/bundle.pem"}, ""},
		{"verify release {env.KEY_FILE} ES256", caddymodule.BundleVerificationSource{KeyID: "release", KeyFile: "{env.KEY_FILE}", Algorithm: "ES256"}, ""},
		{"verify release", caddymodule.BundleVerificationSource{}, "want `verify <key_id> <key_file> [<algorithm>]`"},
		{"verify release a.pem ES256 extra", caddymodule.BundleVerificationSource{}, "want `verify <key_id> <key_file> [<algorithm>]`"},
	} {
		var h caddymodule.Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_policy {\n\tbundle https://b.example bundles/mcp.tar.gz {\n\t\t" + tc.line + "\n\t}\n}"))
		if !checkError(t, err, tc.wantErr) || tc.wantErr != "" {
			continue
		}
		if h.Bundle == nil || h.Bundle.Verification == nil || *h.Bundle.Verification != tc.want {
			t.Errorf("%s: bundle %+v, want verification %+v", tc.line, h.Bundle, tc.want)
		}
	}
	// A key file that cannot be read refuses the configuration, before
	// any bundle is fetched.
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	missing := filepath.Join(t.TempDir(), "missing.pem")
	err := loadCaddyfile(t, globalOptions(t)+policySite(freePort(t), "", "bundle http://127.0.0.1:9 bundles/mcp.tar.gz {\n\t\t\tverify release "+missing+"\n\t\t}", "http://127.0.0.1:9"))
	checkError(t, err, "bundle verification key")
}

// checkError reports err unless it is as wantErr says (none when wantErr
// is empty, else one containing it), and tells whether it was.
func checkError(t *testing.T, err error, wantErr string) bool {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("error %v, want none", err)
		return false
	case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
		t.Errorf("error %v, want one containing %q", err, wantErr)
		return false
	}
	return true
}

// TestCaddyfileBlockSecrets: block_secrets, without arguments, turns the
// guard on; it is off by default.
func TestCaddyfileBlockSecrets(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    bool
		wantErr string
	}{
		{"", false, ""},
		{"block_secrets", true, ""},
		{"block_secrets yes", false, "wrong argument count"},
	} {
		var h caddymodule.Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_policy {\n\tpolicy p\n\t" + tc.line + "\n}"))
		checkError(t, err, tc.wantErr)
		if err == nil && h.BlockSecrets != tc.want {
			t.Errorf("%q: BlockSecrets = %v; want %v", tc.line, h.BlockSecrets, tc.want)
		}
	}
}

// TestCaddyfileToolOverride: tool_override names a tool by the server's
// name and gives it a new name (on its line or in its block), a
// description, or both; a tool overridden twice, a name given twice, or
// an override that changes nothing is refused.
func TestCaddyfileToolOverride(t *testing.T) {
	for _, tc := range []struct {
		lines   string
		want    map[string]tooloverride.Override
		wantErr string
	}{
		{"tool_override search_v2 search", map[string]tooloverride.Override{"search_v2": {Name: "search"}}, ""},
		{"tool_override search_v2 {\n\t\tname search\n\t\tdescription \"Search the open issues.\"\n\t\ttitle \"Search issues\"\n\t}",
			map[string]tooloverride.Override{"search_v2": {Name: "search", Description: "Search the open issues.", Title: "Search issues"}}, ""},
		{"tool_override read {\n\t\tdescription \"Read a file.\"\n\t}\n\ttool_override a b",
			map[string]tooloverride.Override{"read": {Description: "Read a file."}, "a": {Name: "b"}}, ""},
		{"tool_override", nil, "wrong argument count"},
		{"tool_override a b c", nil, "wrong argument count"},
		{"tool_override a b\n\ttool_override a c", nil, `tool "a" is overridden twice`},
		{"tool_override a b {\n\t\tname c\n\t}", nil, "on its line and in its block"},
		{"tool_override a {\n\t\tname b\n\t\tname c\n\t}", nil, "name given twice"},
		{"tool_override a {\n\t\tcolor red\n\t}", nil, `unrecognized tool_override subdirective "color"`},
	} {
		var h caddymodule.Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_policy {\n\tpolicy p\n\t" + tc.lines + "\n}"))
		if !checkError(t, err, tc.wantErr) || err != nil {
			continue
		}
		if !maps.Equal(h.ToolOverrides, tc.want) {
			t.Errorf("%q: ToolOverrides = %v; want %v", tc.lines, h.ToolOverrides, tc.want)
		}
	}
	var h caddymodule.Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_policy {\n\tpolicy p\n\ttool_override a {\n\t}\n}")); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), `tool "a" changes neither its name, its description nor its title`) {
		t.Errorf("an override that changes nothing: Validate() = %v", err)
	}
}

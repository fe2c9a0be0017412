package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/mcpgate/mcpgate/caddymodule/subdirective"
	"github.com/mcpgate/mcpgate/caddymodule/tooloverride"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mcp_policy", parseCaddyfile)
	// Decide before forwarding, without a global `order` in every
	// Caddyfile.
	httpcaddyfile.RegisterDirectiveOrder("mcp_policy", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	mcp_policy {
//		policy <paths...>
//		decision <ref>
//		server <name>
//		upstream <name>
//		session_keys <base64 key>...
//		max_body <size>
//		max_depth <n>
//		max_values <n>
//		allowed_origins <origins...>
//		eval_timeout <duration>
//		decision_cache <size>|off
//		permissions {
//			read_only|write|destructive <action>
//			tool <name> <action>
//		}
//		bundle <service_url> <resource> {
//			polling <min_delay> <max_delay>
//			token <bearer_token>
//			verify <key_id> <key_file> [<algorithm>]
//		}
//		disable_watch
//		log_arguments
//		pins_file <path>
//		approval {
//			webhook <url>...
//			webhook_secret <whsec_...>...
//			decision_secret <whsec_...>...
//			callback_url <url>
//			timeout|keepalive|hold <duration>
//			store memory|redis <address>
//			instance <name>
//		}
//		identity jwt {
//			jwks_url <url>
//			issuer <iss>
//			audience <aud>...
//			token_types <type>...
//			resource <canonical URI>
//			authorization_servers <issuer>...
//			scopes <scope>...
//		}
//		identity caddy [<user placeholder>] {
//			realm <name>
//		}
//		forward_token
//		rate_limit <key> <rate> [burst <n>] {
//			methods <method>...
//			actions allow|needs_approval...
//		}
//		audit {
//			arguments
//			claims <name>...
//		}
//		tool_override <tool> [<new name>] {
//			name <new name>
//			description <text>
//			title <text>
//		}
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	given := subdirective.Once{}
	for d.NextBlock(0) {
		if err := given.Check(d, "decision", "server", "upstream", "max_body", "max_depth", "max_values", "eval_timeout",
			"decision_cache", "bundle", "disable_watch", "log_arguments", "forward_token", "pins_file",
			"permissions", "identity", "audit", "approval"); err != nil {
			return err
		}
		switch d.Val() {
		case "policy":
			paths := d.RemainingArgs()
			if len(paths) == 0 {
				return d.ArgErr()
			}
			h.Policies = append(h.Policies, paths...)
		case "decision":
			if !d.AllArgs(&h.Decision) {
				return d.ArgErr()
			}
		case "server":
			if !d.AllArgs(&h.Server) {
				return d.ArgErr()
			}
			if strings.TrimSpace(h.Server) == "" {
				return d.Err("server: the name must not be empty")
			}
		case "upstream":
			if !d.AllArgs(&h.Upstream) {
				return d.ArgErr()
			}
			if strings.TrimSpace(h.Upstream) == "" {
				return d.Err("upstream: the name must not be empty")
			}
		case "session_keys":
			keys := d.RemainingArgs()
			if len(keys) == 0 {
				return d.ArgErr()
			}
			h.SessionKeys = append(h.SessionKeys, keys...)
		case "max_body":
			var size string
			if !d.AllArgs(&size) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(size)
			if err != nil || n == 0 || n > maxMaxBody {
				return d.Errf("max_body: invalid size %q", size)
			}
			h.MaxBody = int64(n)
		case "max_depth":
			n, err := positiveArg(d, "a depth", maxMaxDepth)
			if err != nil {
				return err
			}
			h.MaxDepth = n
		case "max_values":
			n, err := positiveArg(d, "a number", maxMaxValues)
			if err != nil {
				return err
			}
			h.MaxValues = n
		case "allowed_origins":
			origins := d.RemainingArgs()
			if len(origins) == 0 {
				return d.ArgErr()
			}
			h.AllowedOrigins = append(h.AllowedOrigins, origins...)
		case "eval_timeout":
			if err := positiveDuration(d, &h.EvalTimeout); err != nil {
				return err
			}
		case "decision_cache":
			var value string
			if !d.AllArgs(&value) {
				return d.ArgErr()
			}
			size := 0
			if value != "off" {
				n, err := strconv.Atoi(value)
				if err != nil || n <= 0 || n > maxDecisionCache {
					return d.Errf("decision_cache: want a number of decisions from 1 to %d, or off, got %q", maxDecisionCache, value)
				}
				size = n
			}
			h.DecisionCache = &size
		case "permissions":
			permissions, err := unmarshalPermissions(d)
			if err != nil {
				return err
			}
			h.Permissions = permissions
		case "bundle":
			bundle, err := unmarshalBundle(d)
			if err != nil {
				return err
			}
			h.Bundle = bundle
		case "disable_watch":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.DisableWatch = true
		case "log_arguments":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.LogArguments = true
		case "block_secrets":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.BlockSecrets = true
		case "identity":
			identityConfig, err := unmarshalIdentity(d)
			if err != nil {
				return err
			}
			h.Identity = identityConfig
		case "forward_token":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.ForwardToken = true
		case "pins_file":
			if !d.AllArgs(&h.PinsFile) {
				return d.ArgErr()
			}
		case "rate_limit":
			limit, err := unmarshalRateLimit(d)
			if err != nil {
				return err
			}
			h.RateLimits = append(h.RateLimits, limit)
		case "audit":
			audit, err := unmarshalAudit(d)
			if err != nil {
				return err
			}
			h.Audit = audit
		case "approval":
			approvalConfig, err := unmarshalApproval(d)
			if err != nil {
				return err
			}
			h.Approval = approvalConfig
		case "tool_override":
			if err := h.unmarshalToolOverride(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized mcp_policy subdirective %q", d.Val())
		}
	}
	return nil
}

// unmarshalToolOverride reads one tool_override subdirective: the
// server's name of a tool, its new name on the line or in the block, and
// its description and title in the block.
func (h *Handler) unmarshalToolOverride(d *caddyfile.Dispenser) error {
	var tool, name string
	switch args := d.RemainingArgs(); len(args) {
	case 1:
		tool = args[0]
	case 2:
		tool, name = args[0], args[1]
	default:
		return d.ArgErr()
	}
	if _, given := h.ToolOverrides[tool]; given {
		return d.Errf("tool_override: tool %q is overridden twice", tool)
	}
	override := tooloverride.Override{Name: name}
	given := subdirective.Once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := given.Check(d, "name", "description", "title"); err != nil {
			return err
		}
		switch d.Val() {
		case "name":
			if name != "" {
				return d.Errf("tool_override: tool %q is given its new name on its line and in its block", tool)
			}
			if !d.AllArgs(&override.Name) {
				return d.ArgErr()
			}
		case "description":
			if !d.AllArgs(&override.Description) {
				return d.ArgErr()
			}
		case "title":
			if !d.AllArgs(&override.Title) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized tool_override subdirective %q", d.Val())
		}
	}
	if h.ToolOverrides == nil {
		h.ToolOverrides = make(map[string]tooloverride.Override)
	}
	h.ToolOverrides[tool] = override
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)

// positiveArg reads the subdirective's one argument, a whole number from
// 1 to most (what it is: "a depth"), refusing anything else by name.
func positiveArg(d *caddyfile.Dispenser, what string, most int) (int, error) {
	name := d.Val()
	var arg string
	if !d.AllArgs(&arg) {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(arg)
	if err != nil || n <= 0 || n > most {
		return 0, d.Errf("%s: want %s from 1 to %d, got %q", name, what, most, arg)
	}
	return n, nil
}

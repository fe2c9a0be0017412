package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/subdirective"
)

// BundleSource names an OPA bundle to load the policy from.
type BundleSource struct {
	// ServiceURL is the bundle server's base URL.
	ServiceURL string `json:"service_url"`
	// Resource is the bundle's path on the server, e.g.
	// bundles/mcp.tar.gz.
	Resource string `json:"resource"`
	// MinDelay and MaxDelay bound the polling interval. Defaults: OPA's.
	MinDelay caddy.Duration `json:"min_delay,omitempty"`
	MaxDelay caddy.Duration `json:"max_delay,omitempty"`
	// Token is a bearer token sent to the bundle server.
	Token string `json:"token,omitempty"`
}

func (b *BundleSource) config(repl *caddy.Replacer) *policy.BundleConfig {
	return &policy.BundleConfig{
		URL:      repl.ReplaceKnown(b.ServiceURL, ""),
		Resource: repl.ReplaceKnown(b.Resource, ""),
		MinDelay: time.Duration(b.MinDelay),
		MaxDelay: time.Duration(b.MaxDelay),
		Token:    repl.ReplaceKnown(b.Token, ""),
	}
}

// unmarshalBundle parses `bundle <service_url> <resource> { polling <min>
// <max>; token <token> }`.
func unmarshalBundle(d *caddyfile.Dispenser) (*BundleSource, error) {
	b := new(BundleSource)
	if !d.Args(&b.ServiceURL, &b.Resource) {
		return nil, d.ArgErr()
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	given := subdirective.Once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := given.Check(d, "polling", "token"); err != nil {
			return nil, err
		}
		switch d.Val() {
		case "polling":
			var minDelay, maxDelay string
			if !d.AllArgs(&minDelay, &maxDelay) {
				return nil, d.ArgErr()
			}
			lo, err := caddy.ParseDuration(minDelay)
			if err != nil {
				return nil, d.Errf("bundle polling: %v", err)
			}
			hi, err := caddy.ParseDuration(maxDelay)
			if err != nil || hi < lo {
				return nil, d.Errf("bundle polling: invalid max delay %q", maxDelay)
			}
			b.MinDelay, b.MaxDelay = caddy.Duration(lo), caddy.Duration(hi)
		case "token":
			if !d.AllArgs(&b.Token) {
				return nil, d.ArgErr()
			}
		default:
			return nil, d.Errf("unrecognized bundle subdirective %q", d.Val())
		}
	}
	return b, nil
}

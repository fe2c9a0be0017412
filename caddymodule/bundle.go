package caddymodule

import (
	"fmt"
	"math"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

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
	// MinDelay is the shortest wait between two polls of the bundle
	// server. Default: 10s (policy.DefaultBundleMinDelay).
	MinDelay caddy.Duration `json:"min_delay,omitempty"`
	// MaxDelay is the longest wait between two polls. Default: 20s
	// (policy.DefaultBundleMaxDelay).
	MaxDelay caddy.Duration `json:"max_delay,omitempty"`
	// Token is a bearer token sent to the bundle server.
	Token string `json:"token,omitempty"`
	// DownloadTimeout bounds one download, the bundle's last byte
	// included: a server that stalls fails the download, and the polling
	// goes on. Default: 30s (policy.DefaultBundleDownloadTimeout).
	DownloadTimeout caddy.Duration `json:"download_timeout,omitempty"`
	// MaxSize bounds the bundle in bytes, compressed and once
	// decompressed: a larger one is refused before OPA reads it. Default:
	// 16 MiB (policy.DefaultBundleMaxSize).
	MaxSize int64 `json:"max_size,omitempty"`
	// Verification, when set, activates only bundles signed with its key
	// (see policy.BundleVerification).
	Verification *BundleVerificationSource `json:"verification,omitempty"`
}

// BundleVerificationSource is the key a bundle's signature must verify
// with.
type BundleVerificationSource struct {
	// KeyID names the key; the signature is checked with it whatever
	// key id the bundle names.
	KeyID string `json:"key_id"`
	// KeyFile is the file holding the public key in PEM (or, for the HS
	// algorithms, the shared secret); placeholders replaced.
	KeyFile string `json:"key_file"`
	// Algorithm is the signature's algorithm. Default: RS256.
	Algorithm string `json:"algorithm,omitempty"`
	// Scope, when set, is the scope the signature must carry.
	Scope string `json:"scope,omitempty"`
}

func (b *BundleSource) config(repl *caddy.Replacer) (*policy.BundleConfig, error) {
	cfg := &policy.BundleConfig{
		URL:      repl.ReplaceKnown(b.ServiceURL, ""),
		Resource: repl.ReplaceKnown(b.Resource, ""),
		MinDelay: time.Duration(b.MinDelay),
		MaxDelay: time.Duration(b.MaxDelay),
		Token:    repl.ReplaceKnown(b.Token, ""),

		DownloadTimeout: time.Duration(b.DownloadTimeout),
		MaxSize:         b.MaxSize,
	}
	if v := b.Verification; v != nil {
		file := repl.ReplaceKnown(v.KeyFile, "")
		key, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("bundle verification key: %w", err)
		}
		cfg.Verification = &policy.BundleVerification{KeyID: v.KeyID, Key: string(key), Algorithm: v.Algorithm, Scope: v.Scope}
	}
	return cfg, nil
}

// unmarshalBundle parses `bundle <service_url> <resource> { polling <min>
// <max>; token <token>; verify <key_id> <key_file> [<algorithm>];
// download_timeout <duration>; max_size <size> }`.
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
		if err := given.Check(d, "polling", "token", "verify", "download_timeout", "max_size"); err != nil {
			return nil, err
		}
		switch d.Val() {
		case "polling":
			var minDelay, maxDelay string
			if !d.AllArgs(&minDelay, &maxDelay) {
				return nil, d.ArgErr()
			}
			lo, err := caddy.ParseDuration(minDelay)
			if err != nil || lo <= 0 {
				return nil, d.Errf("bundle polling: invalid min delay %q: durations must be positive", minDelay)
			}
			hi, err := caddy.ParseDuration(maxDelay)
			if err != nil || hi < lo {
				return nil, d.Errf("bundle polling: invalid max delay %q: a duration at least the min delay", maxDelay)
			}
			b.MinDelay, b.MaxDelay = caddy.Duration(lo), caddy.Duration(hi)
		case "token":
			if !d.AllArgs(&b.Token) {
				return nil, d.ArgErr()
			}
		case "download_timeout":
			var timeout string
			if !d.AllArgs(&timeout) {
				return nil, d.ArgErr()
			}
			t, err := caddy.ParseDuration(timeout)
			if err != nil || t <= 0 {
				return nil, d.Errf("bundle download_timeout: invalid duration %q: a positive duration", timeout)
			}
			b.DownloadTimeout = caddy.Duration(t)
		case "max_size":
			var size string
			if !d.AllArgs(&size) {
				return nil, d.ArgErr()
			}
			n, err := humanize.ParseBytes(size)
			if err != nil || n == 0 || n > math.MaxInt64 {
				return nil, d.Errf("bundle max_size: invalid size %q", size)
			}
			b.MaxSize = int64(n)
		case "verify":
			args := d.RemainingArgs()
			if len(args) < 2 || len(args) > 3 {
				return nil, d.Err("bundle verify: want `verify <key_id> <key_file> [<algorithm>]`")
			}
			b.Verification = &BundleVerificationSource{KeyID: args[0], KeyFile: args[1]}
			if len(args) == 3 {
				b.Verification.Algorithm = args[2]
			}
		default:
			return nil, d.Errf("unrecognized bundle subdirective %q", d.Val())
		}
	}
	return b, nil
}

// Package subdirective holds what the Caddyfile parsers of mcpgate's
// modules share.
package subdirective

import (
	"slices"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Once refuses a subdirective that takes one value when it is given twice
// in a block: the second would silently replace the first. Make one per
// block.
type Once map[string]bool

// Check records d's current subdirective if it is one of single, and
// refuses it when it was given before in the block.
func (given Once) Check(d *caddyfile.Dispenser, single ...string) error {
	name := d.Val()
	if !slices.Contains(single, name) {
		return nil
	}
	if given[name] {
		return d.Errf("%s given twice", name)
	}
	given[name] = true
	return nil
}

package stdiomodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"

	"github.com/mcpgate/mcpgate/caddymodule/subdirective"
)

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	mcp_stdio {
//		command <command> [<args...>]
//		env <name> <value>
//		dir <path>
//		max_sessions <n>
//		max_sessions_per_caller <n>
//		idle_timeout <duration>
//		init_timeout <duration>
//		stop_grace <duration>
//		stateless_pool <n>
//		max_message_size <size>
//	}
//
// The command is required. It has no short form on the directive's line,
// where Caddy would read an absolute path (/usr/bin/node) as a path
// matcher. env may be given once per variable.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Err("the command goes in the block: mcp_stdio { command <command> [<args...>] }")
	}
	var err error
	given := subdirective.Once{}
	for d.NextBlock(0) {
		if err := given.Check(d, "command", "dir", "max_sessions", "max_sessions_per_caller", "stateless_pool", "idle_timeout", "init_timeout", "stop_grace", "max_message_size"); err != nil {
			return err
		}
		switch d.Val() {
		case "command":
			command := d.RemainingArgs()
			if len(command) == 0 {
				return d.ArgErr()
			}
			h.Command, h.Args = command[0], command[1:]
		case "env":
			var name, value string
			if !d.AllArgs(&name, &value) {
				return d.ArgErr()
			}
			if _, ok := h.Env[name]; ok {
				return d.Errf("env %s is given twice", name)
			}
			if h.Env == nil {
				h.Env = make(map[string]string)
			}
			h.Env[name] = value
		case "dir":
			if !d.AllArgs(&h.Dir) {
				return d.ArgErr()
			}
		case "max_sessions":
			if h.MaxSessions, err = intArg(d, 1); err != nil {
				return err
			}
		case "max_sessions_per_caller":
			if h.MaxSessionsPerCaller, err = intArg(d, 1); err != nil {
				return err
			}
		case "stateless_pool":
			if h.StatelessPool, err = intArg(d, 0); err != nil {
				return err
			}
		case "idle_timeout":
			if h.IdleTimeout, err = durationArg(d); err != nil {
				return err
			}
		case "init_timeout":
			if h.InitTimeout, err = durationArg(d); err != nil {
				return err
			}
		case "stop_grace":
			if h.StopGrace, err = durationArg(d); err != nil {
				return err
			}
		case "max_message_size":
			var value string
			if !d.AllArgs(&value) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(value)
			if err != nil || n == 0 || n > 1<<30 {
				return d.Errf("max_message_size: invalid size %q (want up to 1GiB, such as 16MiB)", value)
			}
			h.MaxMessageSize = int(n)
		default:
			return d.Errf("unrecognized mcp_stdio subdirective %q", d.Val())
		}
	}
	if h.Command == "" {
		return d.Err("mcp_stdio needs a command: mcp_stdio { command <command> [<args...>] }")
	}
	return nil
}

// durationArg reads the positive duration of the current subdirective.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	var value string
	if !d.AllArgs(&value) {
		return 0, d.ArgErr()
	}
	parsed, err := caddy.ParseDuration(value)
	if err != nil || parsed <= 0 {
		return 0, d.Errf("%s: want a positive duration, such as 30s, got %q", name, value)
	}
	return caddy.Duration(parsed), nil
}

// intArg reads the number, at least least, of the current subdirective.
func intArg(d *caddyfile.Dispenser, least int) (int, error) {
	name := d.Val()
	var value string
	if !d.AllArgs(&value) {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < least {
		return 0, d.Errf("%s: want a whole number of at least %d, got %q", name, least, value)
	}
	return n, nil
}

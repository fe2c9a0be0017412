package gateway

import (
	"bytes"
	"encoding/json"
	"slices"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// renameCalls is the stage that turns the names clients call tools by
// into the server's, where the configuration renames tools
// (Config.ToolOverrides): a tools/call of a tool's new name is re-encoded
// with the server's name before any later stage reads it, so that the
// policy, the permissions table, approvals, logs, metrics and the server
// see the server's own name, as the lists the gateway filters do. A call
// of a renamed tool's old name (which the client was never offered) is
// marked unoffered, and refused when decided, as a call of a tool the
// server does not offer.
func (x *exchange) renameCalls() error {
	overrides := x.g.cfg.ToolOverrides
	if overrides == nil {
		return nil
	}
	for i := range x.body.Messages {
		m := &x.body.Messages[i]
		if m.Tool == nil {
			continue
		}
		upstream, offered := overrides.Upstream(m.Tool.Name)
		switch {
		case !offered:
			if x.unoffered == nil {
				x.unoffered = make(map[*mcpmsg.Message]bool)
			}
			x.unoffered[m] = true
		case upstream != m.Tool.Name:
			if err := x.rewriteParams(m, func(params map[string]any) error {
				params["name"] = upstream
				return nil
			}); err != nil {
				return err
			}
			m.Tool.Name = upstream
		}
	}
	return nil
}

// exposeTools returns the tools of a list (the server's definitions,
// names[i] the name of tools[i] as the server lists it, after the policy
// hid what it hides) as clients are to see them, renamed and described
// as the configuration overrides them (tooloverride.Set.Expose); renamed
// reports whether any was changed. A tool that keeps a name another tool
// is renamed to is left out, and logged once: calls of that name reach
// the other.
func (g *Gateway) exposeTools(tools []json.RawMessage, names []string) (exposed []json.RawMessage, renamed bool, err error) {
	overrides := g.cfg.ToolOverrides
	if overrides == nil {
		return tools, false, nil
	}
	exposed = make([]json.RawMessage, 0, len(tools))
	for i, tool := range tools {
		out, hidden, err := overrides.Expose(tool, names[i])
		if err != nil {
			return nil, false, err
		}
		if hidden {
			if _, warned := g.shadowedWarned.LoadOrStore(names[i], true); !warned {
				g.logger.Warn("the upstream lists a tool under a name another tool is renamed to: it is hidden, and calls of that name reach the renamed tool",
					zap.String("server", g.cfg.Server), zap.String("tool", names[i]))
			}
			renamed = true
			continue
		}
		renamed = renamed || !bytes.Equal(out, tool)
		exposed = append(exposed, out)
	}
	return exposed, renamed, nil
}

// warnTableNamesRenamed logs each tool the permissions table names by a
// name a tool is renamed to, which is not the server's: the table, as
// the policy, names tools as the server does.
func (g *Gateway) warnTableNamesRenamed() {
	overridden := g.cfg.ToolOverrides.Tools()
	for _, name := range g.cfg.Engine.TableTools(g.cfg.Server) {
		if slices.Contains(overridden, name) {
			// The server's name of a tool overridden (of a swap too).
			continue
		}
		if upstream, offered := g.cfg.ToolOverrides.Upstream(name); offered && upstream != name {
			g.logger.Warn("the permissions table names a tool by the name it is renamed to: the table names tools as the server does",
				zap.String("server", g.cfg.Server), zap.String("tool", name), zap.String("server_name", upstream))
		}
	}
}

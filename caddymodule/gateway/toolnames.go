package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/tooloverride"
)

// renameCalls turns the names clients call tools by into the server's,
// where the configuration renames tools (Config.ToolOverrides), once the
// standard headers are checked against the names the client sent
// (checkTransport): a tools/call of a tool's new name has its params'
// name replaced by the server's (the rest of the message as it came, and
// its Mcp-Name header, when given, made the server's too) before any
// later stage reads it, so that the policy, the permissions table,
// approvals, logs, metrics and the server see the server's own name, as
// the lists the gateway filters do. A call of a renamed tool's old name
// (which the client was never offered) is marked unoffered, and refused
// when decided, as a call of a tool the server does not offer.
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
			if err := x.renameCall(m, upstream); err != nil {
				return err
			}
		}
	}
	return nil
}

// renameCall replaces the name of the tool call m by upstream, in its
// params and its bytes (every other member's value as it came: members
// the gateway does not know, numbers as written; the message is written
// anew around them, without white space), and in the request's Mcp-Name
// header (taken out of a batch's request).
func (x *exchange) renameCall(m *mcpmsg.Message, upstream string) error {
	name, err := json.Marshal(upstream)
	if err != nil {
		return fmt.Errorf("renaming the call of tool %q: %w", m.Tool.Name, err)
	}
	rawParams, err := memberValue(m.Raw, "params")
	if err == nil {
		rawParams, err = replaceMember(rawParams, "name", name)
	}
	var raw []byte
	if err == nil {
		raw, err = replaceMember(m.Raw, "params", rawParams)
	}
	if err != nil {
		return fmt.Errorf("renaming the call of tool %q: %w", m.Tool.Name, err)
	}
	params := maps.Clone(m.Params)
	params["name"] = upstream
	if x.calledAs == nil {
		x.calledAs = make(map[*mcpmsg.Message]string)
	}
	x.calledAs[m] = m.Tool.Name
	x.replaceMessage(m, params, raw)
	m.Tool.Name = upstream
	switch {
	case x.body.Batch:
		// One header for messages that may name other things (a batch,
		// 2025-03-26, where it is optional): gone, rather than one
		// message's.
		x.r.Header.Del(mcphttp.HeaderName)
	case x.r.Header.Get(mcphttp.HeaderName) != "":
		x.r.Header.Set(mcphttp.HeaderName, mcphttp.HeaderText(upstream))
	}
	return nil
}

// exposeTools returns the tools of a list (the server's definitions,
// names[i] the name of tools[i] as the server lists it, after the policy
// hid what it hides) as clients are to see them, renamed, described and
// titled as the configuration overrides them (tooloverride.Set.Expose;
// see listOverrides); renamed reports whether any was changed. A tool
// Expose hides (one that keeps a name another tool is renamed to) is
// left out, and logged once: calls of that name reach the other.
func (g *Gateway) exposeTools(tools []json.RawMessage, names []string) (exposed []json.RawMessage, renamed bool, err error) {
	overrides, agreed := g.listOverrides()
	if !agreed {
		g.logger.Warn("the gateways serving this server now rename its tools in different ways: a list relayed on a stream opened before the reload is shown empty",
			zap.String("server", g.cfg.Server))
		return []json.RawMessage{}, len(tools) > 0, nil
	}
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
				g.logger.Warn("the upstream lists a tool under a name another tool is renamed to, or that differs only by case from such a name or a renamed tool's old name: it is hidden, and calls of that name reach the renamed tool or are refused",
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

// checkTableNames refuses a permissions table that names a tool by the
// name a tool is renamed to, which is not the server's: the table, as
// the policy, names tools as the server does, and such an entry would
// decide nothing (a "tool say block" beside a rename of echo to say
// would leave say, the server's echo, as the categories decide it).
func (g *Gateway) checkTableNames() error {
	overridden := g.cfg.ToolOverrides.Tools()
	var problems []error
	for _, name := range g.cfg.Engine.TableTools(g.cfg.Server) {
		if slices.Contains(overridden, name) {
			// The server's name of a tool overridden (of a swap too).
			continue
		}
		if upstream, offered := g.cfg.ToolOverrides.Upstream(name); offered && upstream != name {
			problems = append(problems, fmt.Errorf("the permissions table names tool %q, the name tool %q is renamed to: the table names tools as the server does (write %q)", name, upstream, upstream))
		}
	}
	return errors.Join(problems...)
}

// listOverrides returns the overrides the tools lists this gateway
// relays are renamed by: its own, or, once a reload retired it, those of
// the gateways serving its server now (see judges), as calls are then
// renamed by theirs; agreed is false when those differ, or there are
// none, and a list's tools are then all hidden.
func (g *Gateway) listOverrides() (overrides *tooloverride.Set, agreed bool) {
	if !g.retired.Load() {
		return g.cfg.ToolOverrides, true
	}
	judges := g.judges()
	if len(judges) == 0 {
		return nil, false
	}
	overrides = judges[0].cfg.ToolOverrides
	for _, h := range judges[1:] {
		if !h.cfg.ToolOverrides.Equal(overrides) {
			return nil, false
		}
	}
	return overrides, true
}

package gateway

import (
	"strings"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// Facts are what the gateway learned of one message, or of a POST's
// messages, for its host to show the rest of the route (in Caddy:
// placeholders and variables such as {mcp.tool.name}).
type Facts struct {
	// Method is the JSON-RPC method; empty for responses.
	Method string
	// ToolName and ToolCategory are a tools/call's tool and its category.
	ToolName, ToolCategory string
	// Server is the upstream's name (input.server); Session the
	// upstream's session id; UserID the identified caller, and UserRealm
	// where its id comes from (the JWT issuer, or the realm of Caddy's
	// authentication): callers of one id from two realms are two callers.
	Server, Session, UserID, UserRealm string
	// ProtocolVersion is the MCP revision the message was sent under.
	ProtocolVersion string
	// Action and Reason are what the gateway does with the message
	// ("allow", "needs_approval", "block") and why; Action is "reject"
	// for a request refused before it was understood.
	Action, Reason string
}

// factsOf are the facts of one verdict.
func (x *exchange) factsOf(v verdict) Facts {
	f := Facts{
		Method:          v.message.Method,
		Server:          x.g.cfg.Server,
		Session:         x.session.shown(),
		UserID:          x.session.caller,
		UserRealm:       x.callerRealm(),
		ProtocolVersion: x.version,
		Action:          string(v.decision.Action),
		Reason:          v.decision.Reason,
	}
	if v.text != "" {
		f.Reason = v.text
	}
	if v.input != nil && v.input.Tool != nil {
		f.ToolName, f.ToolCategory = v.input.Tool.Name, v.input.Tool.Category
	}
	return f
}

// annotate tells the host what the gateway learned of the POST, before
// the rest of the route sees it. Of a batch (2025-03-26), each fact holds
// the values of its messages in order, joined by ",": {mcp.method} is
// "tools/call,tools/list", {mcp.decision.action} "allow,block".
func (x *exchange) annotate() {
	if x.g.host.Annotate == nil || len(x.verdicts) == 0 {
		return
	}
	if len(x.verdicts) == 1 {
		x.g.host.Annotate(x.r, x.factsOf(x.verdicts[0]))
		return
	}
	var joined Facts
	parts := func(get func(Facts) string) string {
		values := make([]string, len(x.verdicts))
		for i, v := range x.verdicts {
			values[i] = get(x.factsOf(v))
		}
		return strings.Join(values, ",")
	}
	first := x.factsOf(x.verdicts[0])
	joined.Server, joined.Session, joined.UserID, joined.UserRealm, joined.ProtocolVersion = first.Server, first.Session, first.UserID, first.UserRealm, first.ProtocolVersion
	joined.Method = parts(func(f Facts) string { return f.Method })
	joined.ToolName = parts(func(f Facts) string { return f.ToolName })
	joined.ToolCategory = parts(func(f Facts) string { return f.ToolCategory })
	joined.Action = parts(func(f Facts) string { return f.Action })
	joined.Reason = parts(func(f Facts) string { return f.Reason })
	x.g.host.Annotate(x.r, joined)
}

// annotateRejection tells the host of a request refused before it was
// understood.
func (x *exchange) annotateRejection(e *refusal) {
	if x.g.host.Annotate == nil {
		return
	}
	facts := Facts{
		Server: x.g.cfg.Server, Session: x.session.shown(), UserID: x.session.caller, UserRealm: x.callerRealm(),
		ProtocolVersion: x.version, Action: actionReject, Reason: e.message,
	}
	// What was read of the messages, joined as a batch's facts are.
	if x.body != nil && len(x.body.Messages) > 0 {
		methods, tools := make([]string, len(x.body.Messages)), make([]string, len(x.body.Messages))
		for i, m := range x.body.Messages {
			methods[i] = m.Method
			if m.Tool != nil {
				tools[i] = m.Tool.Name
			}
		}
		facts.Method, facts.ToolName = strings.Join(methods, ","), strings.Join(tools, ",")
	}
	x.g.host.Annotate(x.r, facts)
}

// annotateBodyless tells the host what the gateway knows of a request
// that carries no message (GET, DELETE, HEAD, OPTIONS): its server,
// session, caller and revision. The facts of a message are empty, so the
// rest of the route reads them as "" rather than finding no placeholder
// (a header of {mcp.tool.name} sent as written).
func (x *exchange) annotateBodyless() {
	version := x.r.Header.Get(mcphttp.HeaderProtocolVersion)
	if mcphttp.CheckVersion(version) != nil {
		version = ""
	}
	x.annotateUndecided(version)
}

// annotateUndecided tells the host what the gateway knows of a request
// that it answered, or passes, with nothing decided (one without a
// message; a client's answer to the gateway's own question; the public
// metadata or a preflight, answered before the session is known): its
// server, session, caller and revision as far as known, the facts of a
// message empty.
func (x *exchange) annotateUndecided(version string) {
	if x.g.host.Annotate == nil {
		return
	}
	x.g.host.Annotate(x.r, Facts{Server: x.g.cfg.Server, Session: x.session.shown(), UserID: x.session.caller, UserRealm: x.callerRealm(),
		ProtocolVersion: version})
}

// callerRealm is the realm of the identified caller; "" for an anonymous
// one.
func (x *exchange) callerRealm() string {
	if x.session.caller == "" {
		return ""
	}
	return x.session.realm
}

// actionReject is the action of a request refused before policy.
const actionReject = "reject"

// blocked reports whether the verdict refuses its message.
func (v verdict) blocked() bool {
	return v.decision.Action == policy.ActionBlock
}

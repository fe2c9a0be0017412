package gateway

import (
	"fmt"
	"slices"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// capabilities are the client features a client declared (MCP
// basic/lifecycle, "Capability Negotiation"): what a server may ask of
// it. The gateway refuses a server's request for a feature the client did
// not declare, whatever the policy says; SDK servers check this
// themselves, other servers may not. As flags, they travel in the sealed
// session id.
type capabilities byte

// The client features servers ask for.
const (
	capSampling capabilities = 1 << iota
	capElicitationForm
	capElicitationURL
	capRoots
	// capSamplingTools and capSamplingContext are sampling's
	// sub-capabilities (2025-11-25): a sampling request may carry tools
	// and toolChoice only to a client that declared sampling.tools (a
	// MUST). An includeContext other than "none" without sampling.context
	// is only discouraged (a SHOULD NOT; before 2025-11-25 no client
	// could declare it, and SDK servers send it), so it is shown to
	// policies, not refused.
	capSamplingTools
	capSamplingContext
	// capTasks is a client's tasks capability (2025-11-25): a server may
	// ask it about its tasks (tasks/*) or make a request of it a task
	// (params.task) only if it declared tasks.
	capTasks
)

// metaClientCapabilities is the _meta key that carries the client's
// capabilities in every 2026-07-28 request.
const metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"

// metaClientInfo is the _meta key that carries the client's name and
// version on every request from 2026-07-28.
const metaClientInfo = "io.modelcontextprotocol/clientInfo"

// parseCapabilities reads a ClientCapabilities object: a feature is
// declared by its member, whatever it holds. An elicitation member that
// names no mode declares form mode (the only one before 2025-11-25).
func parseCapabilities(object map[string]any) capabilities {
	var c capabilities
	if sampling, ok := object["sampling"].(map[string]any); ok {
		c |= capSampling
		if _, ok := sampling["tools"].(map[string]any); ok {
			c |= capSamplingTools
		}
		if _, ok := sampling["context"].(map[string]any); ok {
			c |= capSamplingContext
		}
	}
	if _, ok := object["tasks"].(map[string]any); ok {
		c |= capTasks
	}
	if _, ok := object["roots"].(map[string]any); ok {
		c |= capRoots
	}
	if elicitation, ok := object["elicitation"].(map[string]any); ok {
		_, form := elicitation["form"].(map[string]any)
		_, url := elicitation["url"].(map[string]any)
		if form || !url {
			c |= capElicitationForm
		}
		if url {
			c |= capElicitationURL
		}
	}
	return c
}

// declaredCapabilities returns the capabilities a message declares: those
// of an initialize, or those a 2026-07-28 request repeats in _meta; ok is
// false when it declares none.
func declaredCapabilities(m *mcpmsg.Message) (c capabilities, ok bool) {
	if m.Kind != mcpmsg.KindRequest {
		return 0, false
	}
	if m.Method == "initialize" {
		object, _ := m.Params["capabilities"].(map[string]any)
		return parseCapabilities(object), true
	}
	meta, _ := m.Params["_meta"].(map[string]any)
	if object, present := meta[metaClientCapabilities].(map[string]any); present {
		return parseCapabilities(object), true
	}
	return 0, false
}

// required returns what a server's request needs the client to have
// declared, and its name; zero for requests that need nothing declared
// (ping). A request made a task (params.task) needs tasks, beside what
// its method needs (see undeclared).
func required(method string, params map[string]any) (capabilities, string) {
	switch method {
	case "sampling/createMessage":
		// (A member set to null is absent, as the SDKs read it.)
		if params["tools"] != nil || params["toolChoice"] != nil {
			return capSampling | capSamplingTools, "sampling (with tools)"
		}
		return capSampling, "sampling"
	case "tasks/get", "tasks/result", "tasks/list", "tasks/cancel":
		return capTasks, "tasks"
	case "roots/list":
		return capRoots, "roots"
	case "elicitation/create":
		if mode, _ := params["mode"].(string); mode == "url" {
			return capElicitationURL, "elicitation (url mode)"
		}
		return capElicitationForm, "elicitation (form mode)"
	}
	return 0, ""
}

// undeclared returns why a server's request is refused for lack of a
// declared capability, "" when the client declared what it needs.
func (c capabilities) undeclared(method string, params map[string]any) string {
	need, name := required(method, params)
	if _, task := params["task"]; task && need != 0 {
		need, name = need|capTasks, name+" as a task"
	}
	if need == 0 || c&need == need {
		return ""
	}
	return fmt.Sprintf("the client did not declare the %s capability, so the server may not ask it for %s", name, method)
}

// input is the capabilities as policies see them (input.client).
func (c capabilities) input() *policy.Client {
	return &policy.Client{Capabilities: policy.ClientCapabilities{
		Sampling:        c&capSampling != 0,
		SamplingTools:   c&capSamplingTools != 0,
		SamplingContext: c&capSamplingContext != 0,
		Tasks:           c&capTasks != 0,
		Roots:           c&capRoots != 0,
		Elicitation: policy.ElicitationCapability{
			Form: c&capElicitationForm != 0,
			URL:  c&capElicitationURL != 0,
		},
	}}
}

// capabilities returns what the exchange's client declared, and whether
// that is known: on an HTTP+SSE session, what its stream was told at
// initialize; else what the request or its session says.
func (x *exchange) capabilities() (capabilities, bool) {
	if x.legacy != nil {
		return x.legacy.stream.capabilities()
	}
	return x.client, x.clientKnown
}

// learnCapabilities takes what the parsed body declares: an initialize's
// capabilities (which the session's sealed id will carry, and an
// HTTP+SSE session's stream remembers), or those a 2026-07-28 request
// repeats; of a request in no session yet, those too are what the
// session its reply opens is sealed with (a server may open one on a
// server/discover, before initialize), so that an initialize declaring
// the same keeps the session's token as it was: the Go SDK's client
// refuses a session whose id changes.
func (x *exchange) learnCapabilities() {
	// (A batch holding an initialize seals what the initialize declares,
	// whatever its other messages repeat.)
	initializes := slices.ContainsFunc(x.body.Messages, func(m mcpmsg.Message) bool {
		return m.Kind == mcpmsg.KindRequest && m.Method == "initialize"
	})
	for i := range x.body.Messages {
		m := &x.body.Messages[i]
		if c, ok := declaredCapabilities(m); ok {
			x.client, x.clientKnown = c, true
			if m.Method == "initialize" || !initializes && x.opensSession() {
				x.sessionClient = c
			}
			if x.legacy != nil {
				x.legacy.stream.declare(c)
			}
		}
	}
}

// opensSession reports whether the exchange's reply may open a Streamable
// HTTP session: its request is in none yet.
func (x *exchange) opensSession() bool {
	return x.session.id == "" && x.legacy == nil
}

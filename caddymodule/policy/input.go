package policy

// Input is the document a policy sees as `input` for one MCP message. It is
// built by the gateway in one place and converted to the JSON shape
// documented in README.md by Document.
type Input struct {
	// Kind is "request", "notification" or "response".
	Kind string
	// Method is the JSON-RPC method ("tools/call", "initialize", ...);
	// empty for responses.
	Method string
	// Params is the message's params object, decoded; nil when absent.
	Params map[string]any
	// Direction is "client_to_server" for messages a client posts.
	Direction string
	// Tool is set for tools/call only.
	Tool *Tool
	// Server is the upstream's logical name.
	Server string
	// Session is the Mcp-Session-Id the client sent, if any.
	Session string
	// ProtocolVersion is the MCP revision the message was sent under.
	ProtocolVersion string
	// User is who is calling; nil when the gateway knows nobody.
	User *User
	// Request describes the HTTP request that carried the message.
	Request Request
}

// Tool is the tool a tools/call names, with what the gateway has learnt
// about it from the upstream's tools/list.
type Tool struct {
	Name      string
	Arguments map[string]any
	// Annotations are the tool's MCP annotations (readOnlyHint,
	// destructiveHint, ...); nil when the gateway has not seen the tool
	// listed, which policies see as {}.
	Annotations map[string]any
	// Category is "read_only", "write" or "destructive", from the
	// annotations (destructive when they are unknown).
	Category string
	// Changed reports that the tool's definition differs from the one the
	// gateway first saw, a sign the upstream may have swapped it.
	Changed bool
}

// User is the caller the gateway identified.
type User struct {
	// ID is the caller's stable identifier, such as a token's subject.
	ID string
	// Claims are the caller's verified claims; nil is seen as {}.
	Claims map[string]any
}

// Request describes the HTTP request that carried a message.
type Request struct {
	RemoteIP string
	Host     string
	Path     string
	// Headers holds lower-case header names and their values joined by
	// ", ". Credentials (Authorization, Cookie, Proxy-Authorization) are
	// never included, so neither a policy nor a decision log can leak them.
	Headers map[string]string
}

// Direction values for Input.Direction.
const (
	DirectionClientToServer = "client_to_server"
)

// Document returns the input as the plain JSON-shaped map OPA evaluates,
// the one place that defines what policies see:
//
//	{
//	  "kind": "request", "method": "tools/call", "direction": "client_to_server",
//	  "params": {...},                 // only when the message has params
//	  "tool": {                        // only for tools/call
//	    "name": "...", "arguments": {...}, "annotations": {...},
//	    "category": "read_only" | "write" | "destructive", "changed": false
//	  },
//	  "server": "...", "session": "...", "protocol_version": "...",
//	  "user": {"id": "...", "claims": {...}},   // only when a user is known
//	  "request": {"remote_ip": "...", "host": "...", "path": "...", "headers": {...}}
//	}
//
// Objects a policy may index (arguments, annotations, claims, headers) are
// always objects, never null. A map rather than a tagged struct spares OPA
// a JSON round trip per call.
func (in *Input) Document() map[string]any {
	headers := make(map[string]any, len(in.Request.Headers))
	for name, value := range in.Request.Headers {
		headers[name] = value
	}
	doc := make(map[string]any, 10)
	doc["kind"] = in.Kind
	doc["method"] = in.Method
	doc["direction"] = in.Direction
	doc["server"] = in.Server
	doc["session"] = in.Session
	doc["protocol_version"] = in.ProtocolVersion
	doc["request"] = map[string]any{
		"remote_ip": in.Request.RemoteIP,
		"host":      in.Request.Host,
		"path":      in.Request.Path,
		"headers":   headers,
	}
	if in.Params != nil {
		doc["params"] = in.Params
	}
	if in.Tool != nil {
		doc["tool"] = map[string]any{
			"name":        in.Tool.Name,
			"arguments":   objectOrEmpty(in.Tool.Arguments),
			"annotations": objectOrEmpty(in.Tool.Annotations),
			"category":    in.Tool.Category,
			"changed":     in.Tool.Changed,
		}
	}
	if in.User != nil {
		doc["user"] = map[string]any{"id": in.User.ID, "claims": objectOrEmpty(in.User.Claims)}
	}
	return doc
}

// objectOrEmpty returns m, or an empty object when m is nil, so that a
// policy reading a member of it gets undefined rather than an error.
func objectOrEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

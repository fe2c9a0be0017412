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
	// Request describes the HTTP request that carried the message.
	Request Request
}

// Tool is the tool a tools/call names.
type Tool struct {
	Name      string
	Arguments map[string]any
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

// Document returns the input as the plain JSON-shaped map OPA evaluates.
// A map rather than a tagged struct spares OPA a JSON round trip per call.
func (in *Input) Document() map[string]any {
	headers := make(map[string]any, len(in.Request.Headers))
	for name, value := range in.Request.Headers {
		headers[name] = value
	}
	doc := map[string]any{
		"kind":             in.Kind,
		"method":           in.Method,
		"direction":        in.Direction,
		"server":           in.Server,
		"session":          in.Session,
		"protocol_version": in.ProtocolVersion,
		"request": map[string]any{
			"remote_ip": in.Request.RemoteIP,
			"host":      in.Request.Host,
			"path":      in.Request.Path,
			"headers":   headers,
		},
	}
	if in.Params != nil {
		doc["params"] = in.Params
	}
	if in.Tool != nil {
		arguments := in.Tool.Arguments
		if arguments == nil {
			arguments = map[string]any{}
		}
		doc["tool"] = map[string]any{"name": in.Tool.Name, "arguments": arguments}
	}
	return doc
}

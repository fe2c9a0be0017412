package policy

import (
	"fmt"
	"reflect"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Input is the document a policy sees as `input` for one MCP message. It is
// built by the gateway in one place and converted to the JSON shape
// documented in README.md by Value.
type Input struct {
	// Kind is "request", "notification" or "response".
	Kind string
	// Method is the JSON-RPC method ("tools/call", "initialize", ...);
	// empty for responses.
	Method string
	// Params is the message's params object, decoded; nil when absent.
	Params map[string]any
	// Direction is "client_to_server" for messages a client posts, and
	// "server_to_client" for requests the upstream sends the client
	// (sampling/createMessage, elicitation/create, roots/list, ...).
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
	DirectionServerToClient = "server_to_client"
)

// Value returns the input as the document OPA evaluates, the one place
// that defines what policies see:
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
// always objects, never null. The document is built as OPA's own value
// rather than a map that OPA would copy and convert on every evaluation,
// and the arguments, which a tools/call carries twice (in params and in
// tool), are converted once.
func (in *Input) Value() (ast.Value, error) {
	headers := ast.NewObject()
	for name, value := range in.Request.Headers {
		headers.Insert(ast.StringTerm(name), ast.StringTerm(value))
	}
	doc := ast.NewObject(
		ast.Item(ast.StringTerm("kind"), ast.StringTerm(in.Kind)),
		ast.Item(ast.StringTerm("method"), ast.StringTerm(in.Method)),
		ast.Item(ast.StringTerm("direction"), ast.StringTerm(in.Direction)),
		ast.Item(ast.StringTerm("server"), ast.StringTerm(in.Server)),
		ast.Item(ast.StringTerm("session"), ast.StringTerm(in.Session)),
		ast.Item(ast.StringTerm("protocol_version"), ast.StringTerm(in.ProtocolVersion)),
		ast.Item(ast.StringTerm("request"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("remote_ip"), ast.StringTerm(in.Request.RemoteIP)),
			ast.Item(ast.StringTerm("host"), ast.StringTerm(in.Request.Host)),
			ast.Item(ast.StringTerm("path"), ast.StringTerm(in.Request.Path)),
			ast.Item(ast.StringTerm("headers"), ast.NewTerm(headers)),
		)),
	)
	var params ast.Object
	if in.Params != nil {
		value, err := objectValue(in.Params)
		if err != nil {
			return nil, fmt.Errorf("converting params: %w", err)
		}
		params = value
		doc.Insert(ast.StringTerm("params"), ast.NewTerm(params))
	}
	if in.Tool != nil {
		arguments, err := in.argumentsValue(params)
		if err != nil {
			return nil, err
		}
		annotations, err := objectValue(in.Tool.Annotations)
		if err != nil {
			return nil, fmt.Errorf("converting annotations: %w", err)
		}
		doc.Insert(ast.StringTerm("tool"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("name"), ast.StringTerm(in.Tool.Name)),
			ast.Item(ast.StringTerm("arguments"), ast.NewTerm(arguments)),
			ast.Item(ast.StringTerm("annotations"), ast.NewTerm(annotations)),
			ast.Item(ast.StringTerm("category"), ast.StringTerm(in.Tool.Category)),
			ast.Item(ast.StringTerm("changed"), ast.BooleanTerm(in.Tool.Changed)),
		))
	}
	if in.User != nil {
		claims, err := objectValue(in.User.Claims)
		if err != nil {
			return nil, fmt.Errorf("converting claims: %w", err)
		}
		doc.Insert(ast.StringTerm("user"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("id"), ast.StringTerm(in.User.ID)),
			ast.Item(ast.StringTerm("claims"), ast.NewTerm(claims)),
		))
	}
	return doc, nil
}

// argumentsValue converts the tool's arguments, reusing the converted
// params.arguments when it is the same map (as it is for a tools/call).
func (in *Input) argumentsValue(params ast.Object) (ast.Object, error) {
	if params != nil {
		if fromParams, ok := in.Params["arguments"].(map[string]any); ok && sameMap(fromParams, in.Tool.Arguments) {
			if term := params.Get(ast.StringTerm("arguments")); term != nil {
				if obj, ok := term.Value.(ast.Object); ok {
					return obj, nil
				}
			}
		}
	}
	arguments, err := objectValue(in.Tool.Arguments)
	if err != nil {
		return nil, fmt.Errorf("converting arguments: %w", err)
	}
	return arguments, nil
}

// sameMap reports whether a and b are the same map (not merely equal).
func sameMap(a, b map[string]any) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// objectValue converts a decoded JSON object; nil becomes {}, so that a
// policy reading a member of it gets undefined rather than an error.
func objectValue(m map[string]any) (ast.Object, error) {
	if m == nil {
		return ast.NewObject(), nil
	}
	value, err := ast.InterfaceToValue(m)
	if err != nil {
		return nil, err
	}
	obj, ok := value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("want an object, got %T", value)
	}
	return obj, nil
}

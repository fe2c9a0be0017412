package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/secrets"
)

// Input is the document a policy sees as `input` for one MCP message. It is
// built by the gateway in one place and converted to the JSON shape
// documented in docs/policy.md by Value.
type Input struct {
	// Kind is "request", "notification" or "response".
	Kind string `json:"kind"`
	// Method is the JSON-RPC method ("tools/call", "initialize", ...);
	// empty for responses.
	Method string `json:"method"`
	// Params is the message's params object, decoded; nil when absent.
	Params map[string]any `json:"params"`
	// Direction is "client_to_server" for messages a client posts, and
	// "server_to_client" for requests the upstream sends the client
	// (sampling/createMessage, elicitation/create, roots/list, ...).
	Direction string `json:"direction"`
	// Tool is set for tools/call only.
	Tool *Tool `json:"tool"`
	// Server is the upstream's logical name.
	Server string `json:"server"`
	// Session is the upstream's own session id (the Mcp-Session-Id the
	// gateway passes on, not the sealed token the client holds), if any.
	Session string `json:"session"`
	// ProtocolVersion is the MCP revision the message was sent under.
	ProtocolVersion string `json:"protocol_version"`
	// User is who is calling; nil when the gateway knows nobody.
	User *User `json:"user"`
	// Client is what the client declared of itself; nil when the
	// gateway knows nothing of it.
	Client *Client `json:"client,omitempty"`
	// Request describes the HTTP request that carried the message.
	Request Request `json:"request"`
}

// Tool is the tool a tools/call names, with what the gateway has learnt
// about it from the upstream's tools/list.
type Tool struct {
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
	// ArgumentNames maps each argument's name, folded as upstreams may
	// match names (mcpmsg.FoldName: case, Unicode compatibility forms,
	// surrounding space), to the name as sent, so that a policy can find
	// an argument however it is spelled (the library's
	// argument(name)). The gateway refuses calls in which two names
	// fold alike, so each folded name stands for one argument. Nil:
	// derived from Arguments when a policy reads it.
	ArgumentNames map[string]string `json:"argument_names,omitempty"`
	// Annotations are the tool's MCP annotations (readOnlyHint,
	// destructiveHint, ...); nil when the gateway has not seen the tool
	// listed, which policies see as {}.
	Annotations map[string]any `json:"annotations"`
	// Category is "read_only", "write" or "destructive", from the
	// annotations (destructive when they are unknown).
	Category string `json:"category"`
	// Changed reports that the tool's definition differs from the one the
	// gateway first saw, a sign the upstream may have swapped it.
	Changed bool `json:"changed"`
	// Secrets are the well-known credentials (access keys, tokens,
	// private keys) the arguments hold, in their strings and member
	// names at any depth, as secrets.Find finds them: what kind, and
	// where ("body", "files[1].content"). Nil: derived from Arguments
	// when a policy reads it (the scan costs only then).
	Secrets []secrets.Finding `json:"secrets,omitempty"`
}

// User is the caller the gateway identified.
type User struct {
	// ID is the caller's stable identifier, such as a token's subject.
	ID string `json:"id"`
	// Claims are the caller's verified claims; nil is seen as {}.
	Claims map[string]any `json:"claims"`
}

// Client is what a client declared of itself: the client features it
// offers servers (MCP basic/lifecycle, "Capability Negotiation"), as it
// declared them at initialize or, under 2026-07-28, in the request's
// _meta. The gateway refuses a server's request for a feature the client
// did not declare.
type Client struct {
	Capabilities ClientCapabilities `json:"capabilities"`
}

// ClientCapabilities say which client features a client declared.
type ClientCapabilities struct {
	Sampling bool `json:"sampling"`
	// SamplingTools and SamplingContext are sampling's sub-capabilities
	// (2025-11-25): tools and toolChoice in a sampling request, and an
	// includeContext other than "none".
	SamplingTools   bool                  `json:"sampling_tools"`
	SamplingContext bool                  `json:"sampling_context"`
	Roots           bool                  `json:"roots"`
	Elicitation     ElicitationCapability `json:"elicitation"`
	// Tasks is set when the client declared tasks (2025-11-25): a server
	// may ask it about its tasks, or make a request a task.
	Tasks bool `json:"tasks"`
}

// ElicitationCapability says which modes of elicitation a client
// declared: form (also declared by an elicitation member naming no mode)
// and url (2025-11-25).
type ElicitationCapability struct {
	Form bool `json:"form"`
	URL  bool `json:"url"`
}

// Request describes the HTTP request that carried a message.
type Request struct {
	RemoteIP string `json:"remote_ip"`
	Host     string `json:"host"`
	Path     string `json:"path"`
	// Headers holds lower-case header names and their values.
	// Credentials (Authorization, Cookie, Proxy-Authorization) are never
	// included, so neither a policy nor a decision log can leak them.
	// Nil: made from Header, when a policy reads them.
	Headers map[string]string `json:"headers"`
	// Header is the request's header as received, from which Headers is
	// made when it is nil: only for the policies that read headers, which
	// are few, since making them costs more than many a policy's
	// evaluation.
	Header http.Header `json:"-"`
}

// credentialHeaders are left out of Headers.
var credentialHeaders = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
}

// headers returns Headers, or makes those of them that use reads from
// Header. A header that use reads and the request gives more than once
// (in one case or in several) is an error: joined, "a" and "b" given
// apart would read as "a, b" given once, and an upstream reads one of
// them (Go's Header.Get the first), which the policy cannot know, so
// that a rule on one value would miss the value the tool acts on.
func (r *Request) headers(use *inputUse) (map[string]string, error) {
	if r.Headers != nil || r.Header == nil {
		return r.Headers, nil
	}
	headers := make(map[string]string, len(r.Header))
	for name, values := range r.Header {
		lower := strings.ToLower(name)
		if credentialHeaders[lower] || use.member(lower) == nil || len(values) == 0 {
			continue
		}
		if _, twice := headers[lower]; twice || len(values) > 1 {
			return nil, fmt.Errorf("the request gives its %s header more than once, and the policy reads it: "+
				"which of them the upstream reads is not known (send it once)", lower)
		}
		headers[lower] = values[0]
	}
	return headers, nil
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
//	    "name": "...", "arguments": {...}, "argument_names": {...}, "annotations": {...},
//	    "category": "read_only" | "write" | "destructive", "changed": false,
//	    "secrets": [{"kind": "...", "path": "..."}]
//	  },
//	  "server": "...", "session": "...", "protocol_version": "...",
//	  "user": {"id": "...", "claims": {...}},   // only when a user is known
//	  "client": {"capabilities": {"sampling": true, "roots": false,
//	             "elicitation": {"form": true, "url": false}}},  // when known
//	  "request": {"remote_ip": "...", "host": "...", "path": "...", "headers": {...}}
//	}
//
// Objects a policy may index (arguments, annotations, claims, headers) are
// always objects, never null. The document is built as OPA's own value
// rather than a map that OPA would copy and convert on every evaluation,
// and the arguments, which a tools/call carries twice (in params and in
// tool), are converted once.
func (in *Input) Value() (ast.Value, error) {
	return in.value(wholeInput)
}

// value builds the part of the input document that use reads (see
// inputUse): members no policy rule reads are left out.
func (in *Input) value(use *inputUse) (ast.Value, error) {
	doc := ast.NewObjectWithCapacity(11)
	insertString(doc, use, keyKind, in.Kind, true)
	insertString(doc, use, keyMethod, in.Method, true)
	insertString(doc, use, keyDirection, in.Direction, true)
	insertString(doc, use, keyServer, in.Server, false)
	insertString(doc, use, keySession, in.Session, false)
	insertString(doc, use, keyProtocolVersion, in.ProtocolVersion, true)
	if requestUse := use.member("request"); requestUse != nil {
		request := ast.NewObjectWithCapacity(4)
		insertString(request, requestUse, keyRemoteIP, in.Request.RemoteIP, false)
		insertString(request, requestUse, keyHost, in.Request.Host, false)
		insertString(request, requestUse, keyPath, in.Request.Path, false)
		if headersUse := requestUse.member("headers"); headersUse != nil {
			all, err := in.Request.headers(headersUse)
			if err != nil {
				return nil, err
			}
			headers := ast.NewObjectWithCapacity(len(all))
			for name, value := range all {
				if headersUse.member(name) != nil {
					headers.Insert(ast.InternedTerm(name), ast.StringTerm(value))
				}
			}
			request.Insert(keyHeaders, ast.NewTerm(headers))
		}
		doc.Insert(keyRequest, ast.NewTerm(request))
	}
	paramsUse := use.member("params")
	var params ast.Object
	if in.Params != nil && paramsUse != nil {
		value, err := objectValue(in.Params, paramsUse)
		if err != nil {
			return nil, fmt.Errorf("converting params: %w", err)
		}
		params = value
		doc.Insert(keyParams, ast.NewTerm(params))
	}
	if toolUse := use.member("tool"); in.Tool != nil && toolUse != nil {
		tool := ast.NewObjectWithCapacity(5)
		insertString(tool, toolUse, keyName, in.Tool.Name, false)
		if argumentsUse := toolUse.member("arguments"); argumentsUse != nil {
			arguments, err := in.argumentsValue(params, paramsUse, argumentsUse)
			if err != nil {
				return nil, err
			}
			tool.Insert(keyArguments, ast.NewTerm(arguments))
		}
		if namesUse := toolUse.member("argument_names"); namesUse != nil {
			tool.Insert(keyArgumentNames, ast.NewTerm(in.Tool.argumentNamesValue(namesUse)))
		}
		if annotationsUse := toolUse.member("annotations"); annotationsUse != nil {
			annotations, err := objectValue(in.Tool.Annotations, annotationsUse)
			if err != nil {
				return nil, fmt.Errorf("converting annotations: %w", err)
			}
			tool.Insert(keyAnnotations, ast.NewTerm(annotations))
		}
		if toolUse.member("secrets") != nil {
			tool.Insert(keySecrets, ast.NewTerm(in.Tool.secretsValue()))
		}
		insertString(tool, toolUse, keyCategory, in.Tool.Category, true)
		if toolUse.member("changed") != nil {
			tool.Insert(keyChanged, ast.InternedTerm(in.Tool.Changed))
		}
		doc.Insert(keyTool, ast.NewTerm(tool))
	}
	if clientUse := use.member("client"); in.Client != nil && clientUse != nil {
		doc.Insert(keyClient, ast.NewTerm(in.Client.value()))
	}
	if userUse := use.member("user"); in.User != nil && userUse != nil {
		user := ast.NewObjectWithCapacity(2)
		insertString(user, userUse, keyID, in.User.ID, false)
		if claimsUse := userUse.member("claims"); claimsUse != nil {
			claims, err := objectValue(in.User.Claims, claimsUse)
			if err != nil {
				return nil, fmt.Errorf("converting claims: %w", err)
			}
			user.Insert(keyClaims, ast.NewTerm(claims))
		}
		doc.Insert(keyUser, ast.NewTerm(user))
	}
	return doc, nil
}

// insertString sets obj's member key to value when use reads it; intern
// takes the value from OPA's interned strings where it is one of them
// (method names, kinds, versions).
func insertString(obj ast.Object, use *inputUse, key *ast.Term, value string, intern bool) {
	if use.member(string(key.Value.(ast.String))) == nil {
		return
	}
	if intern {
		obj.Insert(key, ast.InternedTerm(value))
	} else {
		obj.Insert(key, ast.StringTerm(value))
	}
}

// The input document's member names, made once: OPA treats terms as
// immutable, so one copy serves every evaluation.
var (
	keyKind            = ast.StringTerm("kind")
	keyMethod          = ast.StringTerm("method")
	keyDirection       = ast.StringTerm("direction")
	keyServer          = ast.StringTerm("server")
	keySession         = ast.StringTerm("session")
	keyProtocolVersion = ast.StringTerm("protocol_version")
	keyRequest         = ast.StringTerm("request")
	keyRemoteIP        = ast.StringTerm("remote_ip")
	keyHost            = ast.StringTerm("host")
	keyPath            = ast.StringTerm("path")
	keyHeaders         = ast.StringTerm("headers")
	keyParams          = ast.StringTerm("params")
	keyTool            = ast.StringTerm("tool")
	keyName            = ast.StringTerm("name")
	keyArguments       = ast.StringTerm("arguments")
	keyArgumentNames   = ast.StringTerm("argument_names")
	keyAnnotations     = ast.StringTerm("annotations")
	keyCategory        = ast.StringTerm("category")
	keyChanged         = ast.StringTerm("changed")
	keySecrets         = ast.StringTerm("secrets")
	keyUser            = ast.StringTerm("user")
	keyClient          = ast.StringTerm("client")
	keyID              = ast.StringTerm("id")
	keyClaims          = ast.StringTerm("claims")
)

// argumentsValue converts the tool's arguments, reusing the converted
// params.arguments when it is the same map converted whole (as it is for a
// tools/call whose policy reads both whole).
func (in *Input) argumentsValue(params ast.Object, paramsUse, use *inputUse) (ast.Object, error) {
	if params != nil && use.whole && paramsUse.member("arguments").isWhole() {
		if fromParams, ok := in.Params["arguments"].(map[string]any); ok && sameMap(fromParams, in.Tool.Arguments) {
			if term := params.Get(keyArguments); term != nil {
				if obj, ok := term.Value.(ast.Object); ok {
					return obj, nil
				}
			}
		}
	}
	arguments, err := objectValue(in.Tool.Arguments, use)
	if err != nil {
		return nil, fmt.Errorf("converting arguments: %w", err)
	}
	return arguments, nil
}

// value is the client as policies see it. It is small enough to build
// whole.
func (c *Client) value() ast.Object {
	flag := func(b bool) *ast.Term { return ast.InternedTerm(b) }
	return ast.NewObject(
		ast.Item(ast.StringTerm("capabilities"), ast.NewTerm(ast.NewObject(
			ast.Item(ast.StringTerm("sampling"), flag(c.Capabilities.Sampling)),
			ast.Item(ast.StringTerm("sampling_tools"), flag(c.Capabilities.SamplingTools)),
			ast.Item(ast.StringTerm("sampling_context"), flag(c.Capabilities.SamplingContext)),
			ast.Item(ast.StringTerm("tasks"), flag(c.Capabilities.Tasks)),
			ast.Item(ast.StringTerm("roots"), flag(c.Capabilities.Roots)),
			ast.Item(ast.StringTerm("elicitation"), ast.NewTerm(ast.NewObject(
				ast.Item(ast.StringTerm("form"), flag(c.Capabilities.Elicitation.Form)),
				ast.Item(ast.StringTerm("url"), flag(c.Capabilities.Elicitation.URL)),
			))),
		))),
	)
}

// argumentNamesValue is the tool's argument_names, the part use reads.
func (t *Tool) argumentNamesValue(use *inputUse) ast.Object {
	names := t.ArgumentNames
	if names == nil {
		names = make(map[string]string, len(t.Arguments))
		for name := range t.Arguments {
			names[mcpmsg.FoldName(name)] = name
		}
	}
	obj := ast.NewObjectWithCapacity(len(names))
	for folded, name := range names {
		if use.member(folded) != nil {
			obj.Insert(ast.StringTerm(folded), ast.StringTerm(name))
		}
	}
	return obj
}

// secretsValue is the tool's secrets, found in its arguments unless
// given: an array of {"kind": ..., "path": ...}, empty when there are none.
func (t *Tool) secretsValue() *ast.Array {
	found := t.Secrets
	if found == nil {
		found = secrets.Find(t.Arguments)
	}
	terms := make([]*ast.Term, len(found))
	for i, f := range found {
		terms[i] = ast.NewTerm(ast.NewObject(
			ast.Item(ast.StringTerm("kind"), ast.StringTerm(f.Kind)),
			ast.Item(ast.StringTerm("path"), ast.StringTerm(f.Path)),
		))
	}
	return ast.NewArray(terms...)
}

// sameMap reports whether a and b are the same map (not merely equal).
func sameMap(a, b map[string]any) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// objectValue converts the part of a decoded JSON object that use reads;
// nil becomes {}, so that a policy reading a member of it gets undefined
// rather than an error.
func objectValue(m map[string]any, use *inputUse) (ast.Object, error) {
	if m == nil {
		return ast.NewObject(), nil
	}
	if !use.whole {
		obj := ast.NewObjectWithCapacity(len(use.members))
		for name, memberUse := range use.members {
			member, ok := m[name]
			if !ok {
				continue
			}
			var value ast.Value
			var err error
			if nested, isObject := member.(map[string]any); isObject && !memberUse.whole {
				value, err = objectValue(nested, memberUse)
			} else {
				value, err = ast.InterfaceToValue(member)
			}
			if err != nil {
				return nil, err
			}
			obj.Insert(ast.StringTerm(name), ast.NewTerm(value))
		}
		return obj, nil
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

// ParseInput reads an input document in the shape Value produces (the
// shape docs/policy.md documents), as `mcpgate policy eval` takes it. What
// the gateway never builds is an error, since a decision on it would
// mislead: a member it never sets, one given twice or in another case, a
// kind or direction it does not know, header names that are not lower
// case or that name credentials (the gateway leaves those out), a tool on
// anything but a tools/call or none on one, a tool that is not the one
// params names, a category other than its annotations give. A missing
// direction is client_to_server, and a tool without annotations keeps the
// category given, so that hand-written inputs stay short. Numbers stay
// exact (json.Number).
func ParseInput(raw []byte) (*Input, error) {
	// One strict reading (member names exact, each once, none unknown).
	// Free-form values (params, arguments, claims) are read as JSON, their
	// duplicate names refused, and kept with exact numbers (json.Number),
	// which may be too large for a float, as the gateway's inputs allow.
	exactNumbers := jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, v *any) error {
		value, err := dec.ReadValue()
		if err != nil {
			return err
		}
		values := json.NewDecoder(bytes.NewReader(value))
		values.UseNumber()
		return values.Decode(v)
	})
	var in Input
	if err := jsonv2.Unmarshal(raw, &in, jsonv2.RejectUnknownMembers(true), jsonv2.WithUnmarshalers(exactNumbers)); err != nil {
		return nil, err
	}
	if err := in.checkBuildable(); err != nil {
		return nil, err
	}
	return &in, nil
}

// checkBuildable refuses what the gateway never builds (see ParseInput),
// and fills in a missing direction.
func (in *Input) checkBuildable() error {
	switch in.Kind {
	case "request", "notification":
	case "response":
		if in.Method != "" {
			return errors.New(`a response has no method (method "")`)
		}
	default:
		return fmt.Errorf(`kind %q: want "request", "notification" or "response"`, in.Kind)
	}
	switch in.Direction {
	case "":
		in.Direction = DirectionClientToServer
	case DirectionClientToServer, DirectionServerToClient:
	default:
		return fmt.Errorf("direction %q: want %q or %q", in.Direction, DirectionClientToServer, DirectionServerToClient)
	}
	for name := range in.Request.Headers {
		if name != strings.ToLower(name) {
			return fmt.Errorf("request header %q: the gateway writes header names in lower case", name)
		}
		if credentialHeaders[name] {
			return fmt.Errorf("request header %q: the gateway never shows a policy credentials", name)
		}
	}
	// The gateway sets a tool on every tools/call a client sends, a
	// notification's too.
	toolCall := in.Kind != "response" && in.Method == "tools/call" && in.Direction == DirectionClientToServer
	switch {
	case in.Tool != nil && !toolCall:
		return errors.New("tool is set on a client's tools/call only")
	case in.Tool == nil && toolCall:
		return errors.New("a tools/call has a tool (name, arguments, category)")
	case in.Tool == nil:
		return nil
	}
	if name, given := in.Params["name"]; given && name != in.Tool.Name {
		return fmt.Errorf("tool.name %q is not params.name %v", in.Tool.Name, name)
	}
	if arguments, given := in.Params["arguments"]; given && (arguments != nil || in.Tool.Arguments != nil) && !reflect.DeepEqual(arguments, map[string]any(in.Tool.Arguments)) {
		return errors.New("tool.arguments differ from params.arguments")
	}
	// The gateway refuses a call whose argument names fold alike (an
	// upstream may read them as one), and makes argument_names itself.
	folded := make(map[string]string, len(in.Tool.Arguments))
	for _, name := range slices.Sorted(maps.Keys(in.Tool.Arguments)) {
		key := mcpmsg.FoldName(name)
		if other, taken := folded[key]; taken {
			return fmt.Errorf("tool.arguments %q and %q are one name once folded: the gateway refuses such a call", other, name)
		}
		folded[key] = name
	}
	if in.Tool.ArgumentNames != nil && !maps.Equal(in.Tool.ArgumentNames, folded) {
		return errors.New("tool.argument_names is not what the gateway makes of tool.arguments (each name folded, mapped to the name as given): leave it out")
	}
	if in.Tool.Secrets != nil && !slices.Equal(in.Tool.Secrets, secrets.Find(in.Tool.Arguments)) {
		return errors.New("tool.secrets is not what the gateway finds in tool.arguments: leave it out")
	}
	category := catalog.Category(in.Tool.Category)
	if !slices.Contains([]catalog.Category{catalog.ReadOnly, catalog.Write, catalog.Destructive}, category) {
		return fmt.Errorf(`tool.category %q: want "read_only", "write" or "destructive"`, in.Tool.Category)
	}
	if in.Tool.Annotations != nil {
		if from := catalog.CategoryOf(in.Tool.Annotations); from != category {
			return fmt.Errorf("tool.category %q: its annotations make it %q", category, from)
		}
	}
	return nil
}

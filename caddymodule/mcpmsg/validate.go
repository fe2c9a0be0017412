package mcpmsg

import (
	"encoding/json"
	"fmt"
	"iter"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/caddymodule/display"
)

// messageMembers are the members of a JSON-RPC message (JSON-RPC 2.0
// sections 4 and 5).
var messageMembers = []string{"jsonrpc", "id", "method", "params", "result", "error"}

// paramsMembers are the params members of MCP requests and notifications
// that the gateway or an upstream server acts on (MCP specification,
// schema.ts: CallToolRequest, PaginatedRequest, ReadResourceRequest,
// InitializeRequest, CancelledNotification, ProgressNotification,
// RequestParams._meta, the mode of a server's ElicitRequest, which decides
// the capability the client must have declared, and 2026-07-28's retried
// requests: inputResponses and requestState; what a completion completes,
// ref; and the notifications a 2026-07-28 subscriptions/listen asks for,
// which the permissions table reads).
var paramsMembers = []string{
	"name", "arguments", "_meta", "cursor", "uri", "protocolVersion",
	"capabilities", "clientInfo", "requestId", "reason", "progressToken",
	"mode", "inputResponses", "requestState", "ref", "notifications",
}

// nestedParamsMembers are, per method, the members of an object in params
// that the policy library reads (a completion's ref; the resources a
// subscription names), held to their names' case as params' are.
var nestedParamsMembers = map[string]struct {
	member string
	known  []string
}{
	"completion/complete":  {"ref", []string{"type", "name", "uri"}},
	"subscriptions/listen": {"notifications", []string{"toolsListChanged", "promptsListChanged", "resourcesListChanged", "resourceSubscriptions"}},
}

// metaMembers are the members of params._meta that the gateway acts on
// (2026-07-28 requests carry the client's revision, info and capabilities
// there).
var metaMembers = []string{
	"progressToken", "io.modelcontextprotocol/protocolVersion",
	"io.modelcontextprotocol/clientInfo", "io.modelcontextprotocol/clientCapabilities",
}

// validate checks e against the JSON-RPC and MCP rules and fills m from it.
func (e element) validate(m *Message) *Error {
	if e.members == nil {
		return invalidRequest("message must be a JSON object, not %s", e.notObject)
	}
	if err := checkCase(e.members, messageMembers, ""); err != nil {
		return err
	}
	switch v, ok := e.members["jsonrpc"]; {
	case !ok:
		return invalidRequest(`missing "jsonrpc" member`)
	case v != "2.0":
		return invalidRequest(`"jsonrpc" must be the string "2.0"`)
	}
	if err := e.validateKind(m); err != nil {
		return err
	}
	m.Raw = e.raw
	if err := validateParams(e.members, m); err != nil {
		return err
	}
	if err := validateIDParam(m); err != nil {
		return err
	}
	if err := validateNames(m); err != nil {
		return err
	}
	if m.Method == "tools/call" {
		return validateToolCall(m)
	}
	return nil
}

// namingMembers are, per method, the members of params that name the
// prompt or resource a request reaches (what the policy library's
// mcp.prompt_name and mcp.resource_uris read), by their path below
// params; namedLists, those that name a list of them.
var (
	namingMembers = map[string][][]string{
		"prompts/get":           {{"name"}},
		"resources/read":        {{"uri"}},
		"resources/subscribe":   {{"uri"}},
		"resources/unsubscribe": {{"uri"}},
		"completion/complete":   {{"ref", "type"}, {"ref", "name"}, {"ref", "uri"}},
	}
	namedLists = map[string][]string{
		"subscriptions/listen": {"notifications", "resourceSubscriptions"},
	}
)

// validateNames checks that what m's params name a prompt or resource by
// is a string (a list of strings for a list), as MCP gives it, when
// present: a rule comparing names never matches a name of another type,
// which a server may still read as one of its own (or turn down).
func validateNames(m *Message) *Error {
	for _, path := range namingMembers[m.Method] {
		if v, ok := paramsMember(m.Params, path); ok {
			if _, isString := v.(string); !isString {
				return invalidRequest(`%s "params.%s" must be a string, not %s`, m.Method, strings.Join(path, "."), TypeName(v))
			}
		}
	}
	path, ok := namedLists[m.Method]
	if !ok {
		return nil
	}
	v, ok := paramsMember(m.Params, path)
	if !ok || v == nil {
		return nil
	}
	list, isList := v.([]any)
	if !isList {
		return invalidRequest(`%s "params.%s" must be an array of strings, not %s`, m.Method, strings.Join(path, "."), TypeName(v))
	}
	for i, item := range list {
		if _, isString := item.(string); !isString {
			return invalidRequest(`%s "params.%s[%d]" must be a string, not %s`, m.Method, strings.Join(path, "."), i, TypeName(item))
		}
	}
	return nil
}

// UnresolvedResourceURI says why a URI the message names a resource by
// (what the policy library's mcp.resource_uris reads) is refused, as
// servers resolve it in different ways (see resourceURIProblem); "" when
// it names none such. The gateway refuses such a message as it refuses a
// blocked one, with the request's id, so that a client's session goes on.
func (m *Message) UnresolvedResourceURI() string {
	for _, path := range namingMembers[m.Method] {
		if path[len(path)-1] != "uri" {
			continue
		}
		if uri, ok := paramsMember(m.Params, path); ok {
			if reason := unresolvedURI(m.Method, strings.Join(path, "."), uri); reason != "" {
				return reason
			}
		}
	}
	path, ok := namedLists[m.Method]
	if !ok {
		return ""
	}
	list, _ := paramsMember(m.Params, path)
	items, _ := list.([]any)
	for i, item := range items {
		if reason := unresolvedURI(m.Method, fmt.Sprintf("%s[%d]", strings.Join(path, "."), i), item); reason != "" {
			return reason
		}
	}
	return ""
}

// unresolvedURI says why the resource URI at member is refused, or
// returns "" (for a URI that is not a string too: validateNames refuses
// those).
func unresolvedURI(method, member string, value any) string {
	uri, _ := value.(string)
	problem := resourceURIProblem(uri)
	if problem == "" {
		return ""
	}
	return fmt.Sprintf(`%s "params.%s" %q holds %s, which servers resolve in different ways; send the URI resolved`,
		method, member, shownURI(uri), problem)
}

// shownURI is a URI as a refusal quotes it: its first 200 bytes, and an
// ellipsis when there is more.
func shownURI(uri string) string {
	shown, cut := display.Prefix(uri, 200)
	if cut {
		shown += "…"
	}
	return shown
}

// resourceURIProblem names what in a resource's URI servers resolve in
// different ways, or returns "" when it holds nothing of the kind. A
// policy reads the URI as sent (mcp.resource_uris), and an allow-list of
// prefixes is the advised rule; but the TypeScript SDK's server looks a
// resource up by new URL(uri), and the Python SDK's reads it as a
// pydantic AnyUrl: both WHATWG parsers, which resolve dot segments (also
// percent-encoded, "%2e%2e"), read a backslash as a slash, and strip
// tabs, newlines and the spaces and controls at either end, so that
// file:///public/../secret, which such a prefix lets pass, is the server's
// file:///secret. A template's variable may take in the query and the
// fragment too (the TypeScript SDK's {+path} matches "a?/../../secret",
// which its handler joins to a path), so dot segments are refused
// wherever they stand; and a variable may be decoded before a handler
// reads it (Python's servers, handlers of every SDK), so an encoded slash
// or backslash is refused where it decodes to a dot segment or to an
// empty one ("..%2fsecret", "%2fetc%2fpasswd", an absolute path to a
// handler that joins it), and let pass otherwise ("notes://folder%2Fnote",
// which a server that matches a variable without slashes needs).
// Refused rather than resolved: the gateway forwards the bytes it decided
// on, and clients send none of these, as servers list their resources by
// URIs already resolved. What WHATWG parsers change otherwise (a scheme's
// case, file://localhost/) does not take a URI out from under a prefix;
// rules naming single URIs to block are not sound for it, as policy.md
// says.
func resourceURIProblem(uri string) string {
	// Written here rather than with net/url, which resolves nothing and
	// is not what these servers parse with; WHATWG parsers in Go are not
	// among the modules this build may take.
	if problem := strippedOrSlashed(uri); problem != "" {
		return problem
	}
	rest := strings.ToLower(uri)
	if i := strings.IndexByte(rest, ':'); i >= 0 && !strings.ContainsAny(rest[:i], "/?#") {
		// The scheme ("file:..", without slashes, is file:/// to them).
		rest = rest[i+1:]
	}
	for segment := range strings.SplitSeq(rest, "/") {
		// A path's last segment ends where its query or fragment starts
		// ("/..?x"); the query's and the fragment's own segments are
		// read whole.
		inPath, _, _ := strings.Cut(segment, "?")
		inPath, _, _ = strings.Cut(inPath, "#")
		if isDotSegment(segment) || isDotSegment(inPath) {
			return "a dot segment"
		}
		if !strings.Contains(segment, "%") {
			continue
		}
		decoded := encodedSlashes.Replace(segment)
		if decoded == segment {
			continue
		}
		for part := range strings.SplitSeq(decoded, "/") {
			if part == "" || isDotSegment(part) {
				return "an encoded slash or backslash that decodes to a dot segment or an empty one"
			}
		}
	}
	return ""
}

// strippedOrSlashed names what in a URI WHATWG parsers strip or read as
// a slash (a control character, a space at either end, a backslash), or
// returns "".
func strippedOrSlashed(uri string) string {
	if i := strings.IndexFunc(uri, func(c rune) bool { return c < 0x20 || c == 0x7f }); i >= 0 {
		return fmt.Sprintf("a control character (0x%02x)", uri[i])
	}
	if strings.Trim(uri, " ") != uri {
		return "a space at its start or end"
	}
	if strings.ContainsRune(uri, '\\') {
		return "a backslash"
	}
	return ""
}

// encodedSlashes decodes a lower-cased segment's encoded slashes and
// backslashes, to slashes.
var encodedSlashes = strings.NewReplacer("%2f", "/", "%5c", "/")

// isDotSegment reports whether a path segment, in lower case, is "." or
// "..", its dots perhaps percent-encoded.
func isDotSegment(segment string) bool {
	switch strings.ReplaceAll(segment, "%2e", ".") {
	case ".", "..":
		return true
	}
	return false
}

// paramsMember returns the member of params at path, if every object on
// the way holds it.
func paramsMember(params map[string]any, path []string) (any, bool) {
	var v any = params
	for _, name := range path {
		object, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = object[name]; !ok {
			return nil, false
		}
	}
	return v, true
}

// validateKind classifies the message as a request, notification or
// response (JSON-RPC 2.0 sections 4, 4.1 and 5) and sets m.Kind, m.ID,
// m.Method and m.IsError.
func (e element) validateKind(m *Message) *Error {
	method, hasMethod := e.members["method"]
	id, hasID := e.members["id"]
	_, hasResult := e.members["result"]
	errorValue, hasError := e.members["error"]
	switch {
	case hasMethod:
		name, ok := method.(string)
		if !ok {
			return invalidRequest(`"method" must be a string, not %s`, TypeName(method))
		}
		if hasResult || hasError {
			return invalidRequest(`message has both "method" and "result" or "error"`)
		}
		m.Method = name
		m.Kind = KindNotification
		if hasID {
			if err := checkID(`request "id"`, id); err != nil {
				return err
			}
			m.Kind = KindRequest
			m.ID = e.id
		}
	case !hasID:
		return invalidRequest(`message has neither "method" nor "id"`)
	case hasResult && hasError:
		return invalidRequest(`response has both "result" and "error"`)
	case !hasResult && !hasError:
		return invalidRequest(`response has neither "result" nor "error"`)
	case id == nil && !hasError:
		return invalidRequest(`response "id" may be null only in an error response`)
	default:
		if id != nil {
			if err := checkID(`response "id"`, id); err != nil {
				return err
			}
		}
		if hasError {
			if _, ok := errorValue.(map[string]any); !ok {
				return invalidRequest(`"error" must be an object, not %s`, TypeName(errorValue))
			}
		}
		m.Kind = KindResponse
		m.ID = e.id
		m.IsError = hasError
	}
	return nil
}

// validateParams checks the params member, when present, and sets m.Params
// and m.ProgressToken.
func validateParams(members map[string]any, m *Message) *Error {
	// JSON-RPC also allows params to be an array, but every MCP method takes
	// an object.
	params, err := objectMember(members, "params", "params", paramsMembers)
	if params == nil {
		return err
	}
	m.Params = params
	if nested, ok := nestedParamsMembers[m.Method]; ok {
		if _, err := objectMember(params, nested.member, "params."+nested.member, nested.known); err != nil {
			return err
		}
	}
	meta, err := objectMember(params, "_meta", "params._meta", metaMembers)
	if meta == nil {
		return err
	}
	if token, ok := meta["progressToken"]; ok {
		if err := checkID(`"params._meta.progressToken"`, token); err != nil {
			return err
		}
		m.ProgressToken = token
	}
	return nil
}

// idParams names, for the MCP notifications that carry the id of another
// message in their params, the member that carries it (MCP specification,
// schema.ts: CancelledNotification and ProgressNotification). The gateway
// matches a cancellation to the call it holds, and the upstream to the
// request it serves, so both must read the id alike.
var idParams = map[string]string{
	"notifications/cancelled": "requestId",
	"notifications/progress":  "progressToken",
}

// validateIDParam checks the id that the params of m carry, when its method
// is one of idParams and the id is present. (Revision 2025-11-25 made
// requestId optional, for cancelling tasks, which have no request id.)
func validateIDParam(m *Message) *Error {
	member, ok := idParams[m.Method]
	if !ok {
		return nil
	}
	if id, ok := m.Params[member]; ok {
		return checkID(`"params.`+member+`"`, id)
	}
	return nil
}

// objectMember returns the member key of obj, which must be an object none of
// whose member names differ from one of known only by case; nil when the
// member is absent or invalid. path names the member in error messages.
func objectMember(obj map[string]any, key, path string, known []string) (map[string]any, *Error) {
	v, ok := obj[key]
	if !ok {
		return nil, nil
	}
	member, ok := v.(map[string]any)
	if !ok {
		return nil, invalidRequest(`%q must be an object, not %s`, path, TypeName(v))
	}
	if err := checkCase(member, known, path+" "); err != nil {
		return nil, err
	}
	return member, nil
}

// MaxToolNameLength is the longest tool name a tools/call may give, in
// bytes. MCP asks for names of 1 to 128 characters (2025-11-25,
// server/tools, "Tool Names"); this leaves room for servers that ignore
// that, while a name, which the gateway quotes in its reasons and logs,
// cannot carry a body's worth into each (a 1 MiB name wrote 2 MiB of log
// per call).
const MaxToolNameLength = 1024

// validateToolCall checks the params of a tools/call request (MCP
// specification, server/tools, "Calling Tools") and sets m.Tool.
func validateToolCall(m *Message) *Error {
	if m.Params == nil {
		return invalidRequest(`tools/call requires "params"`)
	}
	name, _ := m.Params["name"].(string)
	if name == "" {
		return invalidRequest(`tools/call "params.name" must be a non-empty string`)
	}
	if len(name) > MaxToolNameLength {
		return invalidRequest(`tools/call "params.name" is %d bytes; tool names of at most %d bytes are accepted`, len(name), MaxToolNameLength)
	}
	tool := &ToolCall{Name: name}
	// Arguments given as null are none: Go clients send a nil map so
	// (go-sdk's CallToolParams.Arguments is an interface, which a typed
	// nil map fills), and servers read it as none (go-sdk's, Python's) or
	// refuse the call (the TypeScript SDK's); refused here, the Go SDK's
	// client took the 400 for the session's end.
	if v, ok := m.Params["arguments"]; ok && v != nil {
		args, ok := v.(map[string]any)
		if !ok {
			return invalidRequest(`tools/call "params.arguments" must be an object, not %s`, TypeName(v))
		}
		if err := checkNestedNames(args); err != nil {
			return err
		}
		tool.Arguments = args
	}
	m.Tool = tool
	return nil
}

// checkCase rejects a member of obj whose name equals one of known under
// case folding without being identical to it (see CaseVariant). where
// prefixes the error message.
func checkCase(obj map[string]any, known []string, where string) *Error {
	if bad, of, found := CaseVariant(obj, known...); found {
		return invalidRequest("%smember %q differs from %q only by case", where, bad, of)
	}
	return nil
}

// CaseVariant finds a member of members whose name equals one of known
// under case folding without being identical to it, and returns that name
// and the known one it folds to. encoding/json, and so many upstream
// servers and clients, match member names to struct fields
// case-insensitively, so such a member could be read as the known one on
// the other side while the gateway, reading names exactly, ignores it.
// strings.EqualFold folds exactly as encoding/json does (simple Unicode
// folding, so "ſ" matches "s" and the Kelvin sign matches "k"). Of several
// such members it returns the smallest name, so that what is reported does
// not depend on map iteration order.
func CaseVariant[V any](members map[string]V, known ...string) (name, of string, found bool) {
	for member := range members {
		for _, k := range known {
			if member != k && strings.EqualFold(member, k) && (!found || member < name) {
				name, of, found = member, k, true
			}
		}
	}
	return name, of, found
}

// caseIndex finds what CaseVariant finds among many known names in time
// linear in the members, where CaseVariant compares each member with
// each known name (a schema's fifty keywords, for each of an object's
// thousands of members). It holds the known names by their simple fold
// key: strings.EqualFold(a, b) exactly when their keys are equal.
type caseIndex map[string][]string

// newCaseIndex returns the caseIndex of the known names.
func newCaseIndex(known iter.Seq[string]) caseIndex {
	index := caseIndex{}
	for name := range known {
		key := simpleFoldKey(name)
		index[key] = append(index[key], name)
	}
	return index
}

// variant is CaseVariant(members, known...) for the index's known names.
func (index caseIndex) variant(members map[string]any) (name, of string, found bool) {
	for member := range members {
		if found && member >= name {
			continue
		}
		for _, k := range index[simpleFoldKey(member)] {
			if member != k {
				name, of, found = member, k, true
				break
			}
		}
	}
	return name, of, found
}

// simpleFoldKey maps each rune of s to the least rune of its simple
// folding orbit (unicode.SimpleFold: "k", "K" and the Kelvin sign to "K"),
// which is what strings.EqualFold compares rune by rune. Written here:
// the standard library folds two strings against each other, never one
// to a key, and golang.org/x/text/cases folds fully (ß to ss), which
// encoding/json does not.
func simpleFoldKey(s string) string {
	ascii := true
	for i := range len(s) {
		if c := s[i]; c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s) // the least of each ASCII letter's orbit
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// TypeName names the JSON type of a decoded value (as encoding/json
// decodes it, numbers as json.Number), for error messages.
func TypeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

package mcpmsg

import (
	"encoding"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// elicitationURLProblem names what in a URL elicitation's URL the
// client's browser, or the page it opens, resolves otherwise than a
// policy reads it, or returns "" when it holds nothing of the kind. A
// policy reads the URL as sent, and an allow-list of prefixes
// ("https://auth.example/oauth/") is the natural rule; but a browser's
// URL parser (WHATWG's) resolves dot segments in the path, also
// percent-encoded, reads a backslash as a slash and strips tabs, newlines
// and the controls and spaces at either end, so that
// https://auth.example/oauth/../admin, which the prefix lets pass, opens
// https://auth.example/admin. The path is held to a resource URI's rules
// (resourceURIProblem); the query and the fragment, which browsers do not
// resolve, only to holding no ".." (also encoded) between the characters
// that delimit what pages read as paths ("?next=../admin"): encoded
// slashes there are what OAuth's redirect_uri is made of
// ("redirect_uri=https%3A%2F%2Fapp.example%2Fcallback").
func elicitationURLProblem(address string) string {
	if problem := strippedOrSlashed(address); problem != "" {
		return problem
	}
	path, rest := address, ""
	if i := strings.IndexAny(address, "?#"); i >= 0 {
		path, rest = address[:i], address[i:]
	}
	if problem := resourceURIProblem(path); problem != "" {
		return problem
	}
	parts := strings.FieldsFuncSeq(encodedSlashes.Replace(strings.ToLower(rest)), func(c rune) bool { return strings.ContainsRune("/&=?#;", c) })
	for part := range parts {
		if isQueryDotDot(part) {
			return "a dot segment"
		}
	}
	return ""
}

// isQueryDotDot reports whether part, a lower-cased piece of a URL's
// query or fragment between the characters that delimit paths, is ".."
// to a page that decodes it ("+" a space, escapes their bytes) and hands
// it to a WHATWG parser, which strips tabs and newlines anywhere and
// controls and spaces at either end ("%20..", "..%09", ".%0a.").
func isQueryDotDot(part string) bool {
	decoded, err := url.QueryUnescape(part)
	if err != nil {
		decoded = strings.ReplaceAll(part, "%2e", ".")
	}
	decoded = strings.Map(func(c rune) rune {
		if c == '\t' || c == '\n' || c == '\r' {
			return -1
		}
		return c
	}, decoded)
	// Its dots perhaps encoded again ("%252e%252e"), for a page that
	// hands its parameter, decoded once, to the parser.
	decoded = strings.TrimFunc(decoded, func(c rune) bool { return c <= ' ' })
	return strings.ReplaceAll(strings.ToLower(decoded), "%2e", ".") == ".."
}

// inputRequestParams are the Go types the MCP Go SDK reads the params of
// a request embedded in a result's "inputRequests" into, by method (its
// InputRequestMap.UnmarshalJSON). It reads them with encoding/json, which
// matches member names to fields case-insensitively, unlike its own
// decoder, which reads every message sent on its own; the SDK's types
// follow the MCP schema, so they name the members such a client reads.
var inputRequestParams = map[string]reflect.Type{
	"elicitation/create": reflect.TypeFor[mcp.ElicitParams](),
	//lint:ignore SA1019 sampling is deprecated (SEP-2577) but servers still ask for it, and clients still answer
	"sampling/createMessage": reflect.TypeFor[mcp.CreateMessageWithToolsParams](),
	//lint:ignore SA1019 roots are deprecated (SEP-2577) but servers still ask for them, and clients still answer
	"roots/list": reflect.TypeFor[mcp.ListRootsParams](),
}

// CheckInputRequest checks the params of a request that a result embeds
// in "inputRequests" (from 2026-07-28; basic/patterns/mrtr) for the
// client to fulfil. They are held to what a request the server sends on
// its own is held to (the case of the members the gateway acts on, such
// as an elicitation's mode, and what CheckParams refuses), and, since
// clients read these entries with looser decoders (the Go SDK matches
// their member names case-insensitively, at every depth its types
// reach), to a member's name that such a client would read as one the
// schema names: a "Mode" or "IncludeContext" a policy reading "mode" or
// "includeContext" does not see is refused.
func CheckInputRequest(method string, params map[string]any) *Error {
	if params == nil {
		return nil
	}
	m := &Message{Kind: KindRequest, Method: method}
	if err := validateParams(map[string]any{"params": params}, m); err != nil {
		return err
	}
	return CheckServerRequest(method, params)
}

// CheckServerRequest checks the params of a request a server sends the
// client, sent on its own or embedded in a result, for what a client
// would read otherwise than the policy: what CheckParams refuses; a
// member whose name differs only by case from one of the request's
// (its type in the Go SDK: "Message" for "message"), which clients that
// decode with encoding/json read as it while the policy reads no
// message; and in an elicitation's requestedSchema a member whose name
// the Go SDK's client reads as a JSON Schema keyword it is not spelt as
// ("Properties", "Default"): it reads the schema with jsonschema-go,
// case-insensitively, and fills the user's answer with the defaults it
// finds, which the person never saw. A URL elicitation's URL holding
// what browsers resolve (see elicitationURLProblem) is refused.
func CheckServerRequest(method string, params map[string]any) *Error {
	if err := CheckParams(method, params); err != nil {
		return err
	}
	if address, ok := params["url"].(string); ok && method == "elicitation/create" {
		if problem := elicitationURLProblem(address); problem != "" {
			return invalidRequest(`elicitation/create "params.url" %q holds %s, which browsers resolve; send the URL resolved`, shownURI(address), problem)
		}
	}
	if t, ok := inputRequestParams[method]; ok {
		if err := checkLooseNames(params, t, &path{base: "/params"}); err != nil {
			return err
		}
	}
	if schema, ok := params["requestedSchema"]; ok && method == "elicitation/create" {
		return checkSchemaNames(schema, &path{base: "/params/requestedSchema"})
	}
	return nil
}

// inputResponseKinds are, in the order the Go SDK looks for them (its
// unmarshalInputResponse, case-insensitively), the members that tell the
// kind of an answer in a retried request's inputResponses, and the type
// it then reads the answer into.
var inputResponseKinds = []struct {
	member string
	t      reflect.Type
}{
	//lint:ignore SA1019 roots are deprecated (SEP-2577) but clients still answer them
	{"roots", reflect.TypeFor[mcp.ListRootsResult]()},
	{"action", reflect.TypeFor[mcp.ElicitResult]()},
	//lint:ignore SA1019 sampling is deprecated (SEP-2577) but clients still answer it
	{"role", reflect.TypeFor[mcp.CreateMessageWithToolsResult]()},
}

// CheckInputResponse checks one answer of a retried request's
// "inputResponses" (from 2026-07-28; basic/patterns/mrtr), under key,
// for what a server reads otherwise than the policy: the Go SDK tells
// an answer's kind by an "action", "role" or "roots" member found in any
// case, then matches its members to fields case-insensitively. An
// answer that is not an object, names its kind but for case or names
// more than one kind, or holds a member a server reads as another
// ("Action":"decline" read as action), is refused.
func CheckInputResponse(key string, answer any) *Error {
	at := &path{base: "/params/inputResponses", tokens: []string{key}}
	obj, ok := answer.(map[string]any)
	if !ok {
		return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("%s must be an object, not %s", at.pointer(), TypeName(answer))}
	}
	var t reflect.Type
	var kinds []string
	for _, kind := range inputResponseKinds {
		if bad, of, found := CaseVariant(obj, kind.member); found {
			return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("member %q in %s differs from %q only by case: servers read answers case-insensitively", bad, at.pointer(), of)}
		}
		if _, ok := obj[kind.member]; ok {
			kinds = append(kinds, kind.member)
			if t == nil {
				t = kind.t
			}
		}
	}
	switch {
	case len(kinds) > 1:
		return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("%s names more than one kind of answer (%s): servers would read it as one the policy may not", at.pointer(), strings.Join(kinds, ", "))}
	case t == nil:
		return nil // no kind: a server refuses it
	}
	if err := checkLooseNames(obj, t, at); err != nil {
		err.Code = CodeInvalidParams
		return err
	}
	return nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkLooseNames refuses a member of v, at any depth, whose name
// encoding/json would match to a field of t (or of the types t's fields
// lead to) case-insensitively without being that field's name. A type
// that decodes itself is not followed: the SDK's do so with its own,
// case-sensitive decoder. Written here since no library reports which
// member encoding/json matched to which field.
func checkLooseNames(v any, t reflect.Type, at *path) *Error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == schemaType {
		return checkSchemaNames(v, at) // it decodes itself, loosely
	}
	if pt := reflect.PointerTo(t); pt.Implements(jsonUnmarshaler) || pt.Implements(textUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		fields := structFields(t)
		if bad, of, found := fields.names.variant(obj); found {
			return invalidRequest("member %q in %s differs from %q only by case: clients may read a server's requests case-insensitively", bad, at.pointer(), of)
		}
		return checkMembers(obj, at, func(name string) (reflect.Type, bool) {
			ft, ok := fields.types[name]
			return ft, ok
		})
	case reflect.Slice, reflect.Array:
		elems, _ := v.([]any)
		for i, elem := range elems {
			at.push(strconv.Itoa(i))
			if err := checkLooseNames(elem, t.Elem(), at); err != nil {
				return err
			}
			at.pop()
		}
	case reflect.Map:
		obj, _ := v.(map[string]any)
		return checkMembers(obj, at, func(string) (reflect.Type, bool) { return t.Elem(), true })
	}
	return nil
}

// checkMembers runs checkLooseNames on each member of obj that typeOf
// gives a type, in the order of their names.
func checkMembers(obj map[string]any, at *path, typeOf func(name string) (reflect.Type, bool)) *Error {
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		if t, ok := typeOf(name); ok {
			at.push(name)
			if err := checkLooseNames(obj[name], t, at); err != nil {
				return err
			}
			at.pop()
		}
	}
	return nil
}

// fieldSet is what encoding/json decodes into a struct type: its members'
// types by name (jsonFields), and those names to find case variants of.
type fieldSet struct {
	types map[string]reflect.Type
	names caseIndex
}

// newFieldSet returns the fieldSet of the members types names.
func newFieldSet(types map[string]reflect.Type) *fieldSet {
	return &fieldSet{types: types, names: newCaseIndex(maps.Keys(types))}
}

// structFieldSets holds the fieldSet of each struct type met, made once:
// a server's request may hold thousands of objects of one type.
var structFieldSets sync.Map // reflect.Type → *fieldSet

// structFields returns the fieldSet of the struct type t.
func structFields(t reflect.Type) *fieldSet {
	if fields, ok := structFieldSets.Load(t); ok {
		return fields.(*fieldSet)
	}
	fields, _ := structFieldSets.LoadOrStore(t, newFieldSet(jsonFields(t)))
	return fields.(*fieldSet)
}

// jsonFields returns the members encoding/json decodes into t's fields,
// by name, with the fields' types: a field's tag name, or its Go name
// without one; the fields of an embedded struct without a tag name as
// if they were t's, where t has none of their names.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type)
	var promoted []map[string]reflect.Type
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			promoted = append(promoted, jsonFields(ft))
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	for _, inner := range promoted {
		for name, ft := range inner {
			if _, ok := fields[name]; !ok {
				fields[name] = ft
			}
		}
	}
	return fields
}

// schemaType is jsonschema-go's Schema, which reads a schema with
// encoding/json: member names match its keywords case-insensitively.
var schemaType = reflect.TypeFor[jsonschema.Schema]()

// schemaKeywords are the members Schema.UnmarshalJSON reads, with the
// types it reads them into: its fields' tags, and the keywords it reads
// apart ("type", "items", "const", "dependencies" and the integers),
// which it also matches case-insensitively.
var schemaKeywords = sync.OnceValue(func() *fieldSet {
	keywords := jsonFields(schemaType)
	keywords["type"] = reflect.TypeFor[any]()
	keywords["const"] = reflect.TypeFor[any]()
	keywords["items"] = schemaType // a schema, or an array of them
	keywords["dependencies"] = reflect.TypeFor[map[string]jsonschema.Schema]()
	for _, name := range []string{"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains", "maxContains"} {
		keywords[name] = reflect.TypeFor[int]()
	}
	return newFieldSet(keywords)
})

// checkSchemaNames refuses, in a JSON Schema (or an array of them, as
// "items" may hold), a member whose name Schema.UnmarshalJSON reads as a
// keyword it is not spelt as, at any depth a schema leads to: the
// schemas of "properties", "items", "anyOf" and the like; a property's
// name is its own.
func checkSchemaNames(v any, at *path) *Error {
	switch v := v.(type) {
	case []any:
		for i, elem := range v {
			at.push(strconv.Itoa(i))
			if err := checkSchemaNames(elem, at); err != nil {
				return err
			}
			at.pop()
		}
	case map[string]any:
		keywords := schemaKeywords()
		if bad, of, found := keywords.names.variant(v); found {
			return invalidRequest("member %q in %s differs from %q only by case: clients read a requested schema's keywords case-insensitively", bad, at.pointer(), of)
		}
		return checkMembers(v, at, func(name string) (reflect.Type, bool) {
			t, ok := keywords.types[name]
			return t, ok
		})
	}
	return nil
}

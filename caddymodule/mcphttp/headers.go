package mcphttp

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

// CodeHeaderMismatch is the JSON-RPC error code for request headers that
// are missing or disagree with the body (2026-07-28,
// basic/transports/streamable-http, "Standard Headers"); it goes with
// HTTP 400.
const CodeHeaderMismatch = -32020

// BodyFacts are the values from one JSON-RPC message that the standard
// headers must mirror.
type BodyFacts struct {
	// IsRequest is true for requests (messages with an id and a method).
	IsRequest bool
	// Method is the JSON-RPC method.
	Method string
	// Params is the decoded params object, or nil.
	Params map[string]any
	// ProtocolVersion is the value of _meta's protocol version key, if any.
	ProtocolVersion string
}

// CheckHeaders verifies that the Mcp-Method, Mcp-Name and
// Mcp-Protocol-Version headers agree with the message. Under 2026-07-28
// they are required on requests; under earlier revisions they are optional,
// but where present they must still agree, so that the gateway (which
// decides on the body) and an upstream that routes or decides on headers
// never read one request two ways.
func CheckHeaders(header http.Header, version string, body BodyFacts) error {
	required := body.IsRequest && StandardHeadersRequired(version)

	if body.ProtocolVersion != "" {
		if got := header.Get(HeaderProtocolVersion); got != "" && got != body.ProtocolVersion {
			return fmt.Errorf("%s header %q does not match the body's %q", HeaderProtocolVersion, got, body.ProtocolVersion)
		}
	}

	method, present, err := headerValue(header, HeaderMethod)
	if err != nil {
		return err
	}
	switch {
	case present && method != body.Method:
		return fmt.Errorf("%s header %q does not match the body's method %q", HeaderMethod, method, body.Method)
	case !present && required:
		return fmt.Errorf("missing required %s header", HeaderMethod)
	}

	name, present, err := headerValue(header, HeaderName)
	if err != nil {
		return err
	}
	bodyName, named := nameInBody(body.Method, body.Params)
	switch {
	case present && !named:
		return fmt.Errorf("%s header %q given for method %q, which names nothing", HeaderName, name, body.Method)
	case present && name != bodyName:
		return fmt.Errorf("%s header %q does not match the body's %q", HeaderName, name, bodyName)
	case !present && named && required:
		return fmt.Errorf("missing required %s header for method %q", HeaderName, body.Method)
	}
	return nil
}

// nameInBody returns what Mcp-Name mirrors for the method: the tool or
// prompt name, or the resource URI.
func nameInBody(method string, params map[string]any) (string, bool) {
	var key string
	switch method {
	case "tools/call", "prompts/get":
		key = "name"
	case "resources/read":
		key = "uri"
	default:
		return "", false
	}
	value, _ := params[key].(string)
	return value, true
}

// HeaderText returns value as a standard header (Mcp-Name) carries it:
// as it is when it is printable ASCII without a space at either end, and
// otherwise in the "=?base64?...?=" form the specification gives for
// other values (2026-07-28, basic/transports, "Standard Headers").
func HeaderText(value string) string {
	plain := value != "" && strings.Trim(value, " ") == value && !strings.HasPrefix(value, "=?base64?") &&
		strings.IndexFunc(value, func(c rune) bool { return c < 0x20 || c > 0x7e }) < 0
	if plain {
		return value
	}
	return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(value)) + "?="
}

// headerValue returns a header's single value, decoding the
// "=?base64?...?=" form the spec uses for values that are not plain ASCII.
// A header given more than once is an error: which copy an upstream reads
// is not something to guess.
func headerValue(header http.Header, name string) (value string, present bool, err error) {
	values := header.Values(name)
	switch len(values) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", true, fmt.Errorf("%s header given %d times", name, len(values))
	}
	value = values[0]
	if encoded, ok := strings.CutPrefix(value, "=?base64?"); ok {
		encoded, ok = strings.CutSuffix(encoded, "?=")
		if !ok {
			return "", true, fmt.Errorf("%s header has a malformed base64 value", name)
		}
		decoded, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			return "", true, fmt.Errorf("%s header has a malformed base64 value: %w", name, err)
		}
		value = string(decoded)
	}
	return value, true, nil
}

// ContentCoding returns the first content coding other than identity that
// h's Content-Encoding headers name, and whether there is one: a body so
// encoded is one the gateway does not read (it decodes none), while a
// client or server could decode it and read what the gateway did not.
func ContentCoding(h http.Header) (string, bool) {
	for _, header := range h.Values("Content-Encoding") {
		for _, coding := range strings.Split(header, ",") {
			if coding = strings.TrimSpace(coding); coding != "" && !strings.EqualFold(coding, "identity") {
				return coding, true
			}
		}
	}
	return "", false
}

// Package mcpmsg parses and encodes the JSON-RPC 2.0 messages that MCP
// clients and servers exchange over the Streamable HTTP transport.
//
// The gateway evaluates policy on what Parse returns and then forwards the
// original bytes to the upstream server, so the two must never read the same
// bytes differently. Parse therefore rejects, rather than interprets, every
// construct on which JSON decoders are known to disagree: duplicate member
// names, invalid UTF-8 and lone surrogates, member names that differ from a
// protocol member only by case (Go's encoding/json matches names
// case-insensitively), numeric ids that are not integers every reader reads
// alike (1.0, 9007199254740993), data after the message, and excessive
// nesting. What a policy decides on, Body.CheckParams then holds to the
// same rule: params with two names that an upstream may read as one (see
// FoldName), or numbers that float readers read as another value.
package mcpmsg

import "fmt"

// DefaultMaxDepth is the nesting limit Parse applies when Limits.MaxDepth is
// zero.
const DefaultMaxDepth = 64

// DefaultMaxValues is the most JSON values Parse decodes in one body when
// Limits.MaxValues is zero. Decoded, a value costs some 70 bytes of
// memory (a 4 MiB body of zeros in an array became 134 MiB): the count,
// not the body's size, bounds what a parse holds. It leaves room for
// ordinary large calls (a hundred embeddings of 1,536 numbers are
// 153,600 values).
const DefaultMaxValues = 250_000

// The largest limits a configuration may set.
const (
	MaxDepthLimit  = 1000
	MaxValuesLimit = 10_000_000
)

// MaxLimits are the largest limits a configuration may set: what a reader
// behind one that applies the configured limits (mcp_stdio behind
// mcp_policy) accepts, so that it never refuses what was let through.
var MaxLimits = Limits{MaxDepth: MaxDepthLimit, MaxValues: MaxValuesLimit}

// Limits bounds what Parse accepts.
type Limits struct {
	// MaxDepth is the maximum nesting of objects and arrays, counting the
	// message object itself (and the batch array around it) as one level
	// each. Zero or less means DefaultMaxDepth.
	MaxDepth int
	// MaxValues is the most values (objects, arrays, strings, numbers,
	// booleans and nulls, at any depth, the messages themselves
	// included) a body may hold. Zero or less means DefaultMaxValues.
	MaxValues int
}

// EffectiveMaxDepth returns the nesting limit Parse applies.
func (l Limits) EffectiveMaxDepth() int {
	if l.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return l.MaxDepth
}

// EffectiveMaxValues returns the limit on a body's values that Parse
// applies.
func (l Limits) EffectiveMaxValues() int {
	if l.MaxValues <= 0 {
		return DefaultMaxValues
	}
	return l.MaxValues
}

// Kind is the kind of a JSON-RPC message.
type Kind int

// The kinds of JSON-RPC message (JSON-RPC 2.0 sections 4, 4.1 and 5).
const (
	// KindRequest is a message with a method and an id; it expects a response.
	KindRequest Kind = iota + 1
	// KindNotification is a message with a method and no id.
	KindNotification
	// KindResponse is a message with no method, an id, and exactly one of
	// result and error.
	KindResponse
)

// String returns the lowercase name of k: "request", "notification" or
// "response".
func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindNotification:
		return "notification"
	case KindResponse:
		return "response"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// ToolCall is the tool named by a tools/call request.
type ToolCall struct {
	// Name is the decoded tool name (so "delete\u005fissue" is "delete_issue").
	Name string
	// Arguments are the decoded tool arguments; nil when absent.
	Arguments map[string]any
}

// Message is one JSON-RPC message.
//
// Decoded values (in Params, Tool.Arguments and ProgressToken) are
// map[string]any for objects, []any for arrays, string, json.Number (from
// encoding/json) for numbers, bool, and nil for null.
type Message struct {
	// Raw is the exact bytes of this message as received; for a batch
	// element, its own slice. It aliases the data passed to Parse.
	Raw []byte
	// Kind says whether the message is a request, notification or response.
	Kind Kind
	// ID is the raw JSON of the id exactly as received (for example 1 or
	// "abc", quotes included), or nil for notifications. It is a string,
	// an integer from -(2^53-1) to 2^53-1 written without fraction,
	// exponent or minus zero, or null in an error response. It aliases the
	// data passed to Parse; compare ids with CanonicalID.
	ID []byte
	// Method is the decoded method name; empty for responses.
	Method string
	// Params are the decoded params; nil when absent.
	Params map[string]any
	// Tool is the tool being called; non-nil only for method "tools/call".
	Tool *ToolCall
	// ProgressToken is params._meta.progressToken (a string or a
	// json.Number holding an integer, as for ID) when present, else nil.
	ProgressToken any
	// IsError reports a response that carries an error rather than a
	// result.
	IsError bool
}

// Body is a parsed POST body: one message, or a JSON-RPC batch.
type Body struct {
	// Batch is true when the body was a JSON array of messages.
	Batch bool
	// Messages are the messages in the order received.
	Messages []Message
}

// JSON-RPC 2.0 error codes (JSON-RPC 2.0 section 5.1).
const (
	// CodeParseError means the body is not well-formed JSON.
	CodeParseError = -32700
	// CodeInvalidRequest means the JSON is not a valid JSON-RPC message.
	CodeInvalidRequest = -32600
	// CodeMethodNotFound means the method does not exist or is not available.
	CodeMethodNotFound = -32601
	// CodeInvalidParams means the method's parameters are invalid.
	CodeInvalidParams = -32602
	// CodeInternalError means the server failed while handling the message.
	CodeInternalError = -32603
)

// CodeRefused is the JSON-RPC error code of the errors mcpgate answers
// the requests it refuses with, to clients and to servers alike. It lies
// outside the range JSON-RPC 2.0 reserves (-32768 to -32000), where the
// SDKs give codes meanings of their own (in the Go SDK -32003 is "client
// is closing", which a server would take for a disconnect; the
// TypeScript SDK's -32000 and -32001 are a closed connection and a
// timeout), so that every SDK reports it as the ordinary error it is.
const CodeRefused = -31403

// Error is a parse or validation failure, mapped to a JSON-RPC error code.
type Error struct {
	// Code is the JSON-RPC error code, one of the Code constants.
	Code int
	// Message says what is wrong, in words fit for the error response.
	Message string
	// ID is, when the body is one request whose id was read before what
	// is wrong was found, that id (the exact bytes), which the error
	// response may answer; nil otherwise.
	ID []byte
}

// Error returns the message and its JSON-RPC code.
func (e *Error) Error() string {
	return fmt.Sprintf("%s (JSON-RPC error %d)", e.Message, e.Code)
}

// invalidRequest returns a CodeInvalidRequest error with a formatted message.
func invalidRequest(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

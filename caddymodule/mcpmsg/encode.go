package mcpmsg

import (
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// ErrorResponse encodes a JSON-RPC error response (JSON-RPC 2.0 section 5.1):
//
//	{"jsonrpc":"2.0","id":<id>,"error":{"code":<code>,"message":<message>}}
//
// id is raw JSON such as Message.ID; nil encodes null, as JSON-RPC requires
// when the request's id could not be determined.
func ErrorResponse(id []byte, code int, message string) []byte {
	b := appendHeader(nil, id)
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = appendString(b, message)
	return append(b, "}}"...)
}

// ToolErrorResult encodes a successful JSON-RPC response for id whose result
// is an MCP CallToolResult with isError set (MCP specification,
// server/tools, "Error Handling"), so the model sees text as the tool's
// failure rather than a protocol error:
//
//	{"jsonrpc":"2.0","id":<id>,"result":{"content":[{"type":"text","text":<text>}],"isError":true}}
func ToolErrorResult(id []byte, text string) []byte {
	b := appendHeader(nil, id)
	b = append(b, `,"result":{"content":[{"type":"text","text":`...)
	b = appendString(b, text)
	return append(b, `}],"isError":true}}`...)
}

// ResultResponse encodes a successful JSON-RPC response for id whose
// result is the raw JSON object result:
//
//	{"jsonrpc":"2.0","id":<id>,"result":<result>}
func ResultResponse(id, result []byte) []byte {
	b := appendHeader(nil, id)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	return append(b, '}')
}

// BatchResponse joins encoded responses into a JSON array, the response to a
// batch (JSON-RPC 2.0 section 6).
func BatchResponse(responses [][]byte) []byte {
	n := 2
	for _, r := range responses {
		n += len(r) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, r := range responses {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	return append(b, ']')
}

// appendHeader appends the opening of a response up to and including its id.
func appendHeader(b, id []byte) []byte {
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	if len(id) == 0 {
		return append(b, "null"...)
	}
	return append(b, id...)
}

// appendString appends s as a JSON string, with any invalid UTF-8 replaced
// by U+FFFD so that the output is always valid JSON.
func appendString(b []byte, s string) []byte {
	// After ToValidUTF8, AppendQuote has nothing to report.
	b, _ = jsontext.AppendQuote(b, strings.ToValidUTF8(s, "\uFFFD"))
	return b
}

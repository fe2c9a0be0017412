package mcpmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// wantMessage is what a parse case expects of one accepted message.
type wantMessage struct {
	kind   Kind
	id     string // raw JSON; empty for notifications
	method string
	tool   string // empty unless the message is a tools/call
	// isError is set for a response carrying an error.
	isError bool
}

// parseCase is one Parse input and its expected outcome. The fuzz target uses
// the bodies as its seed corpus.
type parseCase struct {
	name    string
	body    string
	lim     Limits
	code    int    // expected Error.Code; 0 means Parse must accept the body
	errText string // expected substring of Error.Message
	batch   bool
	want    []wantMessage
}

// nested returns a notification whose nesting reaches depth levels, counting
// the message object and its params as the first two.
func nested(depth int) string {
	return `{"jsonrpc":"2.0","method":"x","params":{"a":` +
		strings.Repeat("[", depth-2) + strings.Repeat("]", depth-2) + `}}`
}

var parseCases = []parseCase{
	// Accepted messages.
	{
		name: "request with number id",
		body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		want: []wantMessage{{kind: KindRequest, id: `1`, method: "tools/list"}},
	},
	{
		name: "request with string id kept raw",
		body: `{"jsonrpc":"2.0","id":"a\u0062c","method":"ping"}`,
		want: []wantMessage{{kind: KindRequest, id: `"a\u0062c"`, method: "ping"}},
	},
	{
		name: "notification",
		body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		want: []wantMessage{{kind: KindNotification, method: "notifications/initialized"}},
	},
	{
		name: "response with result",
		body: `{"jsonrpc":"2.0","id":7,"result":{}}`,
		want: []wantMessage{{kind: KindResponse, id: `7`}},
	},
	{
		name: "error response with null id",
		body: `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"bad"}}`,
		want: []wantMessage{{kind: KindResponse, id: `null`, isError: true}},
	},
	{
		name: "tools/call",
		body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_issue","arguments":{"n":1}}}`,
		want: []wantMessage{{kind: KindRequest, id: `2`, method: "tools/call", tool: "get_issue"}},
	},
	{
		name: "tools/call without arguments",
		body: `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_issues"}}`,
		want: []wantMessage{{kind: KindRequest, id: `2`, method: "tools/call", tool: "list_issues"}},
	},
	{
		name: "escaped tool name is decoded",
		body: `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete\u005fissue","arguments":{}}}`,
		want: []wantMessage{{kind: KindRequest, id: `3`, method: "tools/call", tool: "delete_issue"}},
	},
	{
		name: "escaped method is decoded",
		body: `{"jsonrpc":"2.0","id":4,"method":"tools\/call","params":{"name":"x"}}`,
		want: []wantMessage{{kind: KindRequest, id: `4`, method: "tools/call", tool: "x"}},
	},
	{
		name: "unknown members allowed",
		body: `{"jsonrpc":"2.0","id":1,"method":"ping","extra":{"Method":1}}`,
		want: []wantMessage{{kind: KindRequest, id: `1`, method: "ping"}},
	},
	{
		name: "argument names that differ after folding",
		body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"repo":1,"repos":2,"Name":{"a":[{"b":1,"B2":{}}]}}}}`,
		want: []wantMessage{{kind: KindRequest, id: `1`, method: "tools/call", tool: "t"}},
	},
	{
		name: "a response's result passed as it is",
		body: `{"jsonrpc":"2.0","id":1,"result":{"n":1e400,"pi":3.14159265358979323846,"a":1,"A":2}}`,
		want: []wantMessage{{kind: KindResponse, id: `1`}},
	},
	{
		name: "nested names in any case, and top-level names folded by the gateway",
		body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"\u017fort":1,"filter":{"Owner":"x","\u540d\u524d":"y"}}}}`,
		want: []wantMessage{{kind: KindRequest, id: `1`, method: "tools/call", tool: "t"}},
	},
	{
		name: "numbers every reader reads alike",
		body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":0.1,"b":1.0,"c":-0,"d":1e300,"e":1152921504606846976,"f":[0.30000000000000004,1E2]}}}`,
		want: []wantMessage{{kind: KindRequest, id: `1`, method: "tools/call", tool: "t"}},
	},
	{
		name:  "largest integer ids",
		body:  `[{"jsonrpc":"2.0","id":9007199254740991,"method":"ping"},{"jsonrpc":"2.0","id":-9007199254740991,"result":{}},{"jsonrpc":"2.0","id":0,"result":{}},{"jsonrpc":"2.0","id":-1,"method":"ping"}]`,
		batch: true,
		want: []wantMessage{
			{kind: KindRequest, id: `9007199254740991`, method: "ping"},
			{kind: KindResponse, id: `-9007199254740991`},
			{kind: KindResponse, id: `0`},
			{kind: KindRequest, id: `-1`, method: "ping"},
		},
	},
	{
		name: "string id that looks like a number",
		body: `{"jsonrpc":"2.0","id":"9007199254740993","method":"ping"}`,
		want: []wantMessage{{kind: KindRequest, id: `"9007199254740993"`, method: "ping"}},
	},
	{
		name:  "cancellation by integer and by string",
		body:  `[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9007199254740991}},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"1.0","reason":"stop"}}]`,
		batch: true,
		want: []wantMessage{
			{kind: KindNotification, method: "notifications/cancelled"},
			{kind: KindNotification, method: "notifications/cancelled"},
		},
	},
	{
		name: "cancellation without a request id",
		body: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"reason":"task"}}`,
		want: []wantMessage{{kind: KindNotification, method: "notifications/cancelled"}},
	},
	{
		name: "progress notification",
		body: `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":-7,"progress":0.5}}`,
		want: []wantMessage{{kind: KindNotification, method: "notifications/progress"}},
	},
	{
		name: "valid surrogate pair",
		body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"s":"\ud83d\ude00"}}}`,
		want: []wantMessage{{kind: KindRequest, id: `1`, method: "tools/call", tool: "t"}},
	},
	{
		name: "surrounding whitespace",
		body: "\r\n\t {\"jsonrpc\":\"2.0\",\"method\":\"ping\"} \n",
		want: []wantMessage{{kind: KindNotification, method: "ping"}},
	},
	{
		name: "progress token",
		body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"progressToken":42}}}`,
		want: []wantMessage{{kind: KindRequest, id: `1`, method: "tools/call", tool: "t"}},
	},
	{
		name: "depth 64",
		body: nested(64),
		want: []wantMessage{{kind: KindNotification, method: "x"}},
	},
	{
		name: "values within a custom limit",
		body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":[1,2]}}`,
		lim:  Limits{MaxValues: 8},
		want: []wantMessage{{kind: KindRequest, id: `1`, method: "ping"}},
	},
	{
		name: "depth within a custom limit",
		body: `{"jsonrpc":"2.0","method":"x","params":{}}`,
		lim:  Limits{MaxDepth: 2},
		want: []wantMessage{{kind: KindNotification, method: "x"}},
	},
	{
		name: "names of prompts and resources as MCP gives them",
		body: `[{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}},
			{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}},
			{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{x}"},"argument":{"name":"x","value":"a"}}},
			{"jsonrpc":"2.0","id":4,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["file:///a","file:///b"]}}},
			{"jsonrpc":"2.0","id":5,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":null,"toolsListChanged":true}}}]`,
		batch: true,
		want: []wantMessage{
			{kind: KindRequest, id: `1`, method: "prompts/get"},
			{kind: KindRequest, id: `2`, method: "resources/read"},
			{kind: KindRequest, id: `3`, method: "completion/complete"},
			{kind: KindRequest, id: `4`, method: "subscriptions/listen"},
			{kind: KindRequest, id: `5`, method: "subscriptions/listen"},
		},
	},
	{
		name:  "batch",
		body:  `[{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"notifications/initialized"}]`,
		batch: true,
		want: []wantMessage{
			{kind: KindRequest, id: `1`, method: "ping"},
			{kind: KindNotification, method: "notifications/initialized"},
		},
	},

	// Malformed JSON.
	{name: "empty body", body: ``, code: CodeParseError, errText: "empty body"},
	{name: "whitespace body", body: " \n\t", code: CodeParseError, errText: "empty body"},
	{name: "truncated", body: `{"jsonrpc":"2.0",`, code: CodeParseError, errText: "malformed JSON"},
	{name: "trailing object", body: `{"jsonrpc":"2.0","method":"ping"}{}`, code: CodeParseError, errText: "trailing data after the message at byte 33"},
	{name: "trailing garbage", body: `{"jsonrpc":"2.0","method":"ping"} x`, code: CodeParseError, errText: "trailing data after the message at byte 34"},
	{name: "trailing bracket", body: `{"jsonrpc":"2.0","method":"ping"}]`, code: CodeParseError, errText: "trailing data"},
	{name: "invalid UTF-8 in a string", body: "{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"params\":{\"uri\":\"a\xffb\"}}", code: CodeParseError, errText: "invalid UTF-8"},
	{name: "invalid UTF-8 in a name", body: "{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"\xff\":1}", code: CodeParseError, errText: "invalid UTF-8"},
	{name: "UTF-8 encoded surrogate", body: "{\"jsonrpc\":\"2.0\",\"method\":\"\xed\xa0\x80\"}", code: CodeParseError, errText: "invalid UTF-8"},
	{name: "lone high surrogate escape", body: `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a\ud800"}}`, code: CodeParseError, errText: "surrogate"},
	{name: "lone low surrogate escape", body: `{"jsonrpc":"2.0","method":"ping\udc00"}`, code: CodeParseError, errText: "surrogate"},
	{name: "high surrogate then non-surrogate", body: `{"jsonrpc":"2.0","method":"ping\ud800\u0041"}`, code: CodeParseError, errText: "surrogate"},
	{name: "reversed surrogate pair", body: `{"jsonrpc":"2.0","method":"ping\ude00\ud83d"}`, code: CodeParseError, errText: "surrogate"},
	{name: "lone surrogate in a name", body: `{"jsonrpc":"2.0","method":"ping","\ud800":1}`, code: CodeParseError, errText: "surrogate"},
	{name: "syntax error inside a batch", body: `[{"jsonrpc":"2.0","method":"ping"},]`, code: CodeParseError, errText: "malformed JSON"},

	// Ambiguous or invalid JSON-RPC.
	{name: "duplicate top-level member", body: `{"jsonrpc":"2.0","method":"ping","method":"tools/call"}`, code: CodeInvalidRequest, errText: `duplicate member name "method"`},
	{name: "duplicate member via escape", body: `{"jsonrpc":"2.0","method":"ping","\u006dethod":"tools/call"}`, code: CodeInvalidRequest, errText: `duplicate member name "method"`},
	{
		name:    "duplicate member deep in arguments",
		body:    `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":{"b":[{"c":1,"c":2}]}}}}`,
		code:    CodeInvalidRequest,
		errText: `duplicate member name "c" in /params/arguments/a/b/0`,
	},
	{name: "duplicate tool name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","name":"delete"}}`, code: CodeInvalidRequest, errText: `duplicate member name "name" in /params`},
	{name: "Method alongside method", body: `{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}`, code: CodeInvalidRequest, errText: `member "Method" differs from "method" only by case`},
	{name: "Method alone", body: `{"jsonrpc":"2.0","id":1,"Method":"ping"}`, code: CodeInvalidRequest, errText: `"Method" differs from "method"`},
	{name: "JSONRPC", body: `{"JSONRPC":"2.0","method":"ping"}`, code: CodeInvalidRequest, errText: `"JSONRPC" differs from "jsonrpc"`},
	{name: "Unicode case variant of params", body: `{"jsonrpc":"2.0","method":"ping","param\u017f":{}}`, code: CodeInvalidRequest, errText: `differs from "params" only by case`},
	{name: "NAME in tools/call params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","NAME":"delete"}}`, code: CodeInvalidRequest, errText: `params member "NAME" differs from "name" only by case`},
	{name: "Mode beside mode in an elicitation", body: `{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{"mode":"form","Mode":"url","message":"m","requestedSchema":{"type":"object"}}}`, code: CodeInvalidRequest, errText: `params member "Mode" differs from "mode" only by case`},
	{name: "Arguments in params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","Arguments":{}}}`, code: CodeInvalidRequest, errText: `"Arguments" differs from "arguments"`},
	{name: "Kelvin sign in params", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"progressTo\u212Aen":1}}`, code: CodeInvalidRequest, errText: `differs from "progressToken" only by case`},
	{name: "lowercase protocolversion", body: `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolversion":"2025-06-18"}}`, code: CodeInvalidRequest, errText: `"protocolversion" differs from "protocolVersion"`},
	{name: "case variant of progressToken", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"progresstoken":1}}}`, code: CodeInvalidRequest, errText: `params._meta member "progresstoken"`},
	{name: "InputResponses in params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","InputResponses":{}}}`, code: CodeInvalidRequest, errText: `"InputResponses" differs from "inputResponses"`},
	{name: "RequestState in params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","requeststate":"x"}}`, code: CodeInvalidRequest, errText: `"requeststate" differs from "requestState"`},
	{name: "case variant of clientCapabilities in _meta", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/ClientCapabilities":{}}}}`, code: CodeInvalidRequest, errText: `params._meta member "io.modelcontextprotocol/ClientCapabilities"`},
	{name: "Ref in a completion", body: `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"Ref":{"type":"ref/prompt","name":"p"}}}`, code: CodeInvalidRequest, errText: `params member "Ref" differs from "ref" only by case`},
	{name: "Type in a completion's ref", body: `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"Type":"ref/prompt","name":"p"}}}`, code: CodeInvalidRequest, errText: `params.ref member "Type" differs from "type" only by case`},
	{name: "ResourceSubscriptions in a subscription", body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"ResourceSubscriptions":["file:///x"]}}}`, code: CodeInvalidRequest, errText: `params.notifications member "ResourceSubscriptions" differs from "resourceSubscriptions" only by case`},
	{name: "a subscription's notifications not an object", body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":["x"]}}`, code: CodeInvalidRequest, errText: `"params.notifications" must be an object, not an array`},
	{name: "a prompt named by a number", body: `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":7}}`, code: CodeInvalidRequest, errText: `prompts/get "params.name" must be a string, not a number`},
	{name: "a resource read by an object", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":{"href":"secret://db"}}}`, code: CodeInvalidRequest, errText: `resources/read "params.uri" must be a string, not an object`},
	{name: "a subscription to an array", body: `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":["secret://db"]}}`, code: CodeInvalidRequest, errText: `resources/subscribe "params.uri" must be a string, not an array`},
	{name: "an unsubscription from null", body: `{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":null}}`, code: CodeInvalidRequest, errText: `resources/unsubscribe "params.uri" must be a string, not null`},
	{name: "a completion's ref named by a boolean", body: `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":true}}}`, code: CodeInvalidRequest, errText: `completion/complete "params.ref.name" must be a string, not a boolean`},
	{name: "a completion's ref of a uri array", body: `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":["a"]}}}`, code: CodeInvalidRequest, errText: `completion/complete "params.ref.uri" must be a string, not an array`},
	{name: "a completion's ref of an object type", body: `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":{},"uri":"a"}}}`, code: CodeInvalidRequest, errText: `completion/complete "params.ref.type" must be a string, not an object`},
	{name: "a subscription's resources a string", body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":"secret://db"}}}`, code: CodeInvalidRequest, errText: `subscriptions/listen "params.notifications.resourceSubscriptions" must be an array of strings, not a string`},
	{name: "a subscription's resources an object", body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":{"secret://db":true}}}}`, code: CodeInvalidRequest, errText: `must be an array of strings, not an object`},
	{name: "a subscription's resource an object", body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["file:///a",{"uri":"secret://db"}]}}}`, code: CodeInvalidRequest, errText: `"params.notifications.resourceSubscriptions[1]" must be a string, not an object`},
	{name: "a tool name past MaxToolNameLength", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + strings.Repeat("x", MaxToolNameLength+1) + `"}}`, code: CodeInvalidRequest, errText: "tool names of at most 1024 bytes are accepted"},
	{name: "an id past MaxIDLength", body: `{"jsonrpc":"2.0","id":"` + strings.Repeat("x", MaxIDLength+1) + `","method":"ping"}`, code: CodeInvalidRequest, errText: "ids (and progress tokens) of at most 256 bytes"},
	{name: "a progress token past MaxIDLength", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"progressToken":"` + strings.Repeat("x", MaxIDLength+1) + `"}}}`, code: CodeInvalidRequest, errText: "at most 256 bytes"},
	{name: "a batch past MaxBatchLength", body: "[" + strings.Repeat(`{"jsonrpc":"2.0","method":"ping","id":1},`, MaxBatchLength) + `{"jsonrpc":"2.0","method":"ping","id":2}]`, code: CodeInvalidRequest, errText: "at most 100 are accepted"},
	{name: "two requests of a batch with one id", body: `[{"jsonrpc":"2.0","id":7,"method":"ping"},{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":7,"method":"tools/list"}]`, code: CodeInvalidRequest, errText: "batch elements 0 and 2 are requests with the same id 7"},
	{name: "missing jsonrpc", body: `{"id":1,"method":"ping"}`, code: CodeInvalidRequest, errText: `missing "jsonrpc"`},
	{name: "jsonrpc 1.0", body: `{"jsonrpc":"1.0","id":1,"method":"ping"}`, code: CodeInvalidRequest, errText: `"jsonrpc" must be the string "2.0"`},
	{name: "jsonrpc as a number", body: `{"jsonrpc":2.0,"id":1,"method":"ping"}`, code: CodeInvalidRequest, errText: `"jsonrpc" must be the string "2.0"`},
	{name: "number body", body: `1`, code: CodeInvalidRequest, errText: "message must be a JSON object, not a number"},
	{name: "null body", body: `null`, code: CodeInvalidRequest, errText: "not null"},
	{name: "method not a string", body: `{"jsonrpc":"2.0","id":1,"method":1}`, code: CodeInvalidRequest, errText: `"method" must be a string, not a number`},
	{name: "null request id", body: `{"jsonrpc":"2.0","id":null,"method":"ping"}`, code: CodeInvalidRequest, errText: `request "id" must be a string or an integer, not null`},
	{name: "boolean request id", body: `{"jsonrpc":"2.0","id":true,"method":"ping"}`, code: CodeInvalidRequest, errText: "not a boolean"},
	{name: "object request id", body: `{"jsonrpc":"2.0","id":{},"method":"ping"}`, code: CodeInvalidRequest, errText: "not an object"},
	{name: "array request id", body: `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, code: CodeInvalidRequest, errText: "not an array"},
	{name: "method and result", body: `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, code: CodeInvalidRequest, errText: `both "method" and "result" or "error"`},
	{name: "method and error", body: `{"jsonrpc":"2.0","method":"ping","error":{}}`, code: CodeInvalidRequest, errText: `both "method" and "result" or "error"`},
	{name: "neither method nor id", body: `{"jsonrpc":"2.0","result":{}}`, code: CodeInvalidRequest, errText: `neither "method" nor "id"`},
	{name: "response with result and error", body: `{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`, code: CodeInvalidRequest, errText: `both "result" and "error"`},
	{name: "response with neither result nor error", body: `{"jsonrpc":"2.0","id":1}`, code: CodeInvalidRequest, errText: `neither "result" nor "error"`},
	{name: "result with null id", body: `{"jsonrpc":"2.0","id":null,"result":{}}`, code: CodeInvalidRequest, errText: `may be null only in an error response`},
	{name: "response with boolean id", body: `{"jsonrpc":"2.0","id":false,"result":{}}`, code: CodeInvalidRequest, errText: `response "id" must be a string or an integer, not a boolean`},
	{name: "error not an object", body: `{"jsonrpc":"2.0","id":1,"error":"bad"}`, code: CodeInvalidRequest, errText: `"error" must be an object, not a string`},
	{name: "params as array", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}`, code: CodeInvalidRequest, errText: `"params" must be an object, not an array`},
	{name: "params null", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":null}`, code: CodeInvalidRequest, errText: `"params" must be an object, not null`},
	{name: "_meta not an object", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":[]}}`, code: CodeInvalidRequest, errText: `"params._meta" must be an object`},
	{name: "progressToken boolean", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"progressToken":true}}}`, code: CodeInvalidRequest, errText: "must be a string or an integer"},
	{name: "progressToken fraction", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"progressToken":1.5}}}`, code: CodeInvalidRequest, errText: `"params._meta.progressToken" 1.5 is a number that JSON readers may read differently`},
	{name: "request id with a fraction", body: `{"jsonrpc":"2.0","id":1.0,"method":"ping"}`, code: CodeInvalidRequest, errText: `request "id" 1.0 is a number that JSON readers may read differently`},
	{name: "request id with an exponent", body: `{"jsonrpc":"2.0","id":1e0,"method":"ping"}`, code: CodeInvalidRequest, errText: `request "id" 1e0 is a number`},
	{name: "request id with a capital exponent", body: `{"jsonrpc":"2.0","id":10E-1,"method":"ping"}`, code: CodeInvalidRequest, errText: `request "id" 10E-1 is a number`},
	{name: "request id minus zero", body: `{"jsonrpc":"2.0","id":-0,"method":"ping"}`, code: CodeInvalidRequest, errText: `request "id" -0 is a number`},
	{name: "request id 2^53", body: `{"jsonrpc":"2.0","id":9007199254740992,"method":"ping"}`, code: CodeInvalidRequest, errText: "an integer from -9007199254740991 to 9007199254740991"},
	{name: "request id 2^53+1", body: `{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}`, code: CodeInvalidRequest, errText: `request "id" 9007199254740993 is a number`},
	{name: "request id -2^53", body: `{"jsonrpc":"2.0","id":-9007199254740992,"method":"ping"}`, code: CodeInvalidRequest, errText: `request "id" -9007199254740992 is a number`},
	{name: "request id beyond int64", body: `{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}`, code: CodeInvalidRequest, errText: `is a number that JSON readers may read differently`},
	{name: "response id with a fraction", body: `{"jsonrpc":"2.0","id":7.0,"result":{}}`, code: CodeInvalidRequest, errText: `response "id" 7.0 is a number`},
	{name: "error response id with an exponent", body: `{"jsonrpc":"2.0","id":7e0,"error":{"code":-32600,"message":"bad"}}`, code: CodeInvalidRequest, errText: `response "id" 7e0 is a number`},
	{name: "progressToken with an exponent", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"progressToken":1e3}}}`, code: CodeInvalidRequest, errText: `"params._meta.progressToken" 1e3 is a number`},
	{name: "progressToken 2^53+1", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"progressToken":9007199254740993}}}`, code: CodeInvalidRequest, errText: `"params._meta.progressToken" 9007199254740993 is a number`},
	{name: "cancelled requestId with a fraction", body: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1.0}}`, code: CodeInvalidRequest, errText: `"params.requestId" 1.0 is a number that JSON readers may read differently`},
	{name: "cancelled requestId 2^53", body: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9007199254740992}}`, code: CodeInvalidRequest, errText: `"params.requestId" 9007199254740992 is a number`},
	{name: "cancelled requestId null", body: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":null}}`, code: CodeInvalidRequest, errText: `"params.requestId" must be a string or an integer, not null`},
	{name: "cancelled requestId an object", body: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{"id":1}}}`, code: CodeInvalidRequest, errText: `"params.requestId" must be a string or an integer, not an object`},
	{name: "progress notification token with a fraction", body: `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":2.0,"progress":1}}`, code: CodeInvalidRequest, errText: `"params.progressToken" 2.0 is a number`},
	{name: "id in a batch", body: `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1.0,"method":"ping"}]`, code: CodeInvalidRequest, errText: `batch element 1: request "id" 1.0 is a number`},
	{name: "tools/call without params", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, code: CodeInvalidRequest, errText: `tools/call requires "params"`},
	{name: "tools/call without name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`, code: CodeInvalidRequest, errText: `"params.name" must be a non-empty string`},
	{name: "tools/call empty name", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}`, code: CodeInvalidRequest, errText: `"params.name" must be a non-empty string`},
	{name: "tools/call name a number", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}`, code: CodeInvalidRequest, errText: `"params.name" must be a non-empty string`},
	{name: "tools/call arguments array", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":[]}}`, code: CodeInvalidRequest, errText: `"params.arguments" must be an object, not an array`},
	{name: "argument names differing by case", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"repo":"a","Repo":"b"}}}`, code: CodeInvalidParams, errText: `tools/call argument names "Repo" and "repo" in /params/arguments differ only by case, Unicode compatibility form or surrounding space: upstream servers may read them as one`},
	{name: "argument names differing by a trailing space", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"repo":"a","repo ":"b"}}}`, code: CodeInvalidParams, errText: `names "repo" and "repo " in /params/arguments`},
	{name: "argument names differing by width", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"repo":"a","\uff52\uff45\uff50\uff4f":"b"}}}`, code: CodeInvalidParams, errText: "names \"repo\" and \"\uff52\uff45\uff50\uff4f\""},
	{name: "argument names differing by a long s", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"sort":"a","\u017fort":"b"}}}`, code: CodeInvalidParams, errText: "names \"sort\" and \"\u017fort\""},
	{name: "argument names differing by a Kelvin sign", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"k":1,"\u212A":2}}}`, code: CodeInvalidParams, errText: "names \"k\" and \"\u212a\""},
	{name: "argument names merged in a nested object", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"filter":{"owner/repo":{"Repo":1,"repo":2}}}}}`, code: CodeInvalidParams, errText: `names "Repo" and "repo" in /params/arguments/filter/owner~1repo differ`},
	{name: "argument names merged inside an array", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"items":[{"a":1},{"b":1,"  B":2}]}}}`, code: CodeInvalidParams, errText: `names "  B" and "b" in /params/arguments/items/1 differ`},
	{name: "first merged argument names reported", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"z":{"X":1,"x":2},"b":[{"Y":1,"y":2}],"a":{"c":{"W":1,"w":2}}}}}`, code: CodeInvalidParams, errText: `names "W" and "w" in /params/arguments/a/c differ`},
	{name: "merged argument names in a batch", body: `[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"A":1,"a":2}}}]`, code: CodeInvalidParams, errText: `batch element 1: tools/call argument names "A" and "a"`},
	{name: "argument rounded to another integer", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"issue":1336.99999999999999}}}`, code: CodeInvalidParams, errText: "the number 1336.99999999999999 in /params/arguments/issue is not read alike by every JSON reader: one that uses 64-bit floats (JavaScript, most MCP servers) reads 1337,"},
	{name: "argument 2^53+1", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":9007199254740993}}}`, code: CodeInvalidParams, errText: "reads 9007199254740992,"},
	{name: "argument that underflows to 0", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":1e-400}}}`, code: CodeInvalidParams, errText: "the number 1e-400 in /params/arguments/n is not read alike by every JSON reader: one that uses 64-bit floats (JavaScript, most MCP servers) reads 0,"},
	{name: "argument beyond any float", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":-1e1000000000}}}`, code: CodeInvalidParams, errText: "reads no finite number"},
	{name: "argument of a thousand digits", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":1` + strings.Repeat("0", 1000) + `}}}`, code: CodeInvalidParams, errText: "the number 1000000000000000000000000000000000000000... in /params/arguments/n is 1001 characters long, and no 64-bit float needs more than 128 (JavaScript and most MCP servers read no finite number)"},
	{name: "argument too long, though finite", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":1` + strings.Repeat("0", 128) + `}}}`, code: CodeInvalidParams, errText: "is 129 characters long, and no 64-bit float needs more than 128 (JavaScript and most MCP servers read 1e+128)"},
	{name: "decimal past a float's precision, nested", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":[{"pi":3.14159265358979323846}]}}}`, code: CodeInvalidParams, errText: "in /params/arguments/a/0/pi is not read alike by every JSON reader: one that uses 64-bit floats (JavaScript, most MCP servers) reads 3.141592653589793,"},
	{name: "unportable number in other params", body: `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"x","limit":0.30000000000000001}}`, code: CodeInvalidParams, errText: "reads 0.3,"},
	{name: "unportable number in a notification", body: `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":9007199254740993}}`, code: CodeInvalidParams, errText: "the number 9007199254740993"},
	{name: "unportable number in a batch", body: `[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","id":2,"method":"x","params":{"n":1e400}}]`, code: CodeInvalidParams, errText: "batch element 1: the number 1e400 in /params/n"},
	{name: "member names merged outside tools/call", body: `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{"repo":"a","Repo":"b"}}}`, code: CodeInvalidParams, errText: `member names "Repo" and "repo" in /params/arguments differ only by case`},
	{name: "a server's sampling messages merged", body: `{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[],"Messages":[],"maxTokens":10}}`, code: CodeInvalidParams, errText: `member names "Messages" and "messages" in /params differ only by case`},
	{name: "a server's elicitation message merged by a long s", body: `{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"message":"colour?","me\u017f\u017fage":"password?","requestedSchema":{"type":"object","properties":{}}}}`, code: CodeInvalidParams, errText: "member names \"message\" and \"me\u017f\u017fage\" in /params"},
	{name: "a notification's params merged", body: `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"a":1,"A":2}}}`, code: CodeInvalidParams, errText: `member names "A" and "a" in /params/data`},
	{name: "nested argument name that only full folding reads", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"filter":{"\u017fort":"name"}}}}`, code: CodeInvalidParams, errText: "tools/call argument name \"\u017fort\" in /params/arguments/filter folds to \"sort\", which lowercasing does not give"},
	{name: "nested argument name in an array that only full folding reads", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"items":[{"ok":1},{"\uff52\uff45\uff50\uff4f":"x"}]}}}`, code: CodeInvalidParams, errText: "in /params/arguments/items/1 folds to \"repo\""},
	{name: "depth 65", body: nested(65), code: CodeInvalidRequest, errText: "nesting deeper than 64 levels"},
	{name: "values beyond the default limit", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":[` + strings.Repeat("0,", DefaultMaxValues) + `0]}}}`, code: CodeInvalidRequest, errText: "more than 250000 JSON values in the body"},
	{name: "values beyond a custom limit", body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":[1,2]}}`, lim: Limits{MaxValues: 5}, code: CodeInvalidRequest, errText: "more than 5 JSON values"},
	{name: "values of a batch beyond a custom limit", body: `[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc":"2.0","method":"ping","id":2}]`, lim: Limits{MaxValues: 7}, code: CodeInvalidRequest, errText: "more than 7 JSON values"},
	{name: "depth beyond a custom limit", body: `{"jsonrpc":"2.0","method":"x","params":{"a":[]}}`, lim: Limits{MaxDepth: 2}, code: CodeInvalidRequest, errText: "nesting deeper than 2 levels"},
	{name: "batch adds a level", body: "[" + nested(64) + "]", code: CodeInvalidRequest, errText: "nesting deeper than 64 levels"},
	{name: "empty batch", body: `[]`, code: CodeInvalidRequest, errText: "empty batch"},
	{name: "batch with a non-object", body: `[{"jsonrpc":"2.0","method":"ping"},1]`, code: CodeInvalidRequest, errText: "batch element 1: message must be a JSON object, not a number"},
	{name: "nested batch", body: `[[{"jsonrpc":"2.0","method":"ping"}]]`, code: CodeInvalidRequest, errText: "batch element 0: message must be a JSON object, not an array"},
	{name: "batch with an invalid message", body: `[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}]`, code: CodeInvalidRequest, errText: `batch element 1: "params" must be an object`},
}

// TestParseLeavesParamsToCheck: Parse reads a server's notification
// whatever numbers and names its params hold (no policy decides it, and
// refusing it would cut the stream that carries it); Body.CheckParams,
// which the gateway runs on what policies decide, refuses them.
func TestParseLeavesParamsToCheck(t *testing.T) {
	for _, data := range []string{
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"ts_ns":1753000000123456789}}}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"a":1,"A":2}}}`,
	} {
		body, err := Parse([]byte(data), Limits{})
		if err != nil {
			t.Errorf("Parse(%s): %v; want it read", data, err)
			continue
		}
		if err := body.CheckParams(); err == nil {
			t.Errorf("CheckParams(%s) = nil; want it refused", data)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			// As the gateway reads a client's body.
			body, err := Parse([]byte(tc.body), tc.lim)
			if err == nil {
				err = body.CheckParams()
			}
			if tc.code != 0 {
				checkParseError(t, err, tc.code, tc.errText)
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) failed: %v", tc.body, err)
			}
			if body.Batch != tc.batch {
				t.Errorf("Batch = %v, want %v", body.Batch, tc.batch)
			}
			if len(body.Messages) != len(tc.want) {
				t.Fatalf("got %d messages, want %d", len(body.Messages), len(tc.want))
			}
			for i, want := range tc.want {
				got := body.Messages[i]
				if got.Kind != want.kind || string(got.ID) != want.id || got.Method != want.method || got.IsError != want.isError {
					t.Errorf("message %d = {%v %s %q error %t}, want {%v %s %q error %t}", i, got.Kind, got.ID, got.Method, got.IsError, want.kind, want.id, want.method, want.isError)
				}
				if gotTool := toolName(got); gotTool != want.tool {
					t.Errorf("message %d tool = %q, want %q", i, gotTool, want.tool)
				}
			}
		})
	}
}

// checkParseError fails t unless err is an *Error with the given code whose
// message contains text.
func checkParseError(t *testing.T, err error, code int, text string) {
	t.Helper()
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("got error %v (%T), want *Error with code %d", err, err, code)
	}
	if perr.Code != code || !strings.Contains(perr.Message, text) {
		t.Errorf("got error %d %q, want %d containing %q", perr.Code, perr.Message, code, text)
	}
}

// toolName returns the name of the tool m calls, or "" when m is not a
// tools/call.
func toolName(m Message) string {
	if m.Tool == nil {
		return ""
	}
	return m.Tool.Name
}

func TestParseDecodesValues(t *testing.T) {
	const body = ` {"jsonrpc":"2.0","id":"r-1","method":"tools/call","params":{"name":"create_issue",` +
		`"arguments":{"title":"caf\u00e9","count":12,"ratio":-0.5e3,"labels":["bug",null],"draft":false,"emoji":"\ud83d\ude00"},` +
		`"_meta":{"progressToken":"p-7"}}} `
	tests := []struct {
		name string
		got  func(m Message) any
		want any
	}{
		{"raw", func(m Message) any { return string(m.Raw) }, strings.TrimSpace(body)},
		{"id", func(m Message) any { return string(m.ID) }, `"r-1"`},
		{"tool", func(m Message) any { return toolName(m) }, "create_issue"},
		{"arguments", func(m Message) any { return m.Tool.Arguments }, map[string]any{
			"title":  "café",
			"count":  json.Number("12"),
			"ratio":  json.Number("-0.5e3"),
			"labels": []any{"bug", nil},
			"draft":  false,
			"emoji":  "😀",
		}},
		{"progress token", func(m Message) any { return m.ProgressToken }, "p-7"},
	}
	parsed, err := Parse([]byte(body), Limits{})
	if err != nil {
		t.Fatalf("Parse failed: %v", err)
	}
	m := parsed.Messages[0]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.got(m); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestParseOptionalValues(t *testing.T) {
	tests := []struct {
		name          string
		body          string
		wantParams    bool
		wantArguments bool
		wantToken     any
	}{
		{"no params", `{"jsonrpc":"2.0","method":"ping"}`, false, false, nil},
		{"no arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}`, true, false, nil},
		// As Go clients send a nil map (go-sdk's client, a typed nil
		// in CallToolParams.Arguments): none, as servers read it.
		{"arguments null", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":null}}`, true, false, nil},
		{"integer progress token", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{},"_meta":{"progressToken":-3}}}`, true, true, json.Number("-3")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := Parse([]byte(tt.body), Limits{})
			if err != nil {
				t.Fatalf("Parse failed: %v", err)
			}
			m := body.Messages[0]
			if (m.Params != nil) != tt.wantParams {
				t.Errorf("Params = %v, want present %v", m.Params, tt.wantParams)
			}
			if m.Tool != nil && (m.Tool.Arguments != nil) != tt.wantArguments {
				t.Errorf("Arguments = %v, want present %v", m.Tool.Arguments, tt.wantArguments)
			}
			if !reflect.DeepEqual(m.ProgressToken, tt.wantToken) {
				t.Errorf("ProgressToken = %#v, want %#v", m.ProgressToken, tt.wantToken)
			}
		})
	}
}

func TestParseBatchRaw(t *testing.T) {
	first := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}`
	second := `{ "jsonrpc" : "2.0", "id" : "x" , "result" : [] }`
	data := []byte("[ " + first + " ,\n" + second + " ]")
	body, err := Parse(data, Limits{})
	if err != nil {
		t.Fatalf("Parse failed: %v", err)
	}
	tests := []struct {
		name    string
		message int
		raw     string
		id      string
	}{
		{"first", 0, first, `1`},
		{"second", 1, second, `"x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := body.Messages[tt.message]
			if string(m.Raw) != tt.raw || string(m.ID) != tt.id {
				t.Errorf("Raw, ID = %s, %s; want %s, %s", m.Raw, m.ID, tt.raw, tt.id)
			}
			if !bytes.Contains(data, m.Raw) {
				t.Errorf("Raw %s is not part of the body", m.Raw)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		kind Kind
		want string
	}{
		{KindRequest, "request"},
		{KindNotification, "notification"},
		{KindResponse, "response"},
		{Kind(0), "Kind(0)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.kind.String(); got != tt.want {
				t.Errorf("Kind(%d).String() = %q, want %q", int(tt.kind), got, tt.want)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	data := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"create_issue",` +
		`"arguments":{"owner":"mcpgate","repo":"mcpgate","title":"Gateway drops progress notifications",` +
		`"body":"Seen with two concurrent calls.","labels":["bug","triage"],"assignees":["octocat"],"milestone":3},` +
		`"_meta":{"progressToken":"call-42"}}}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestResourceURIProblem checks which resource URIs are refused: what a
// WHATWG URL parser (the TypeScript and Python SDKs' servers read URIs
// with one) resolves to another place, or a template's variable decodes
// to a path, and nothing that a server lists as it is.
func TestResourceURIProblem(t *testing.T) {
	tests := []struct {
		uri, problem string
	}{
		{"file:///public/readme", ""},
		{"file:///a..b/c.", ""},
		{"file:///.hidden/..config", ""},
		{"file:///My%20Documents/x.md", ""},
		{"https://example.com/search?q=../x#../y", ""},
		{"urn:isbn:0451450523", ""},
		{"postgres://db.internal/app/users", ""},
		{"test://static/resource/1", ""},
		{"ui://widget/index.html", ""},
		{"file:///café/x", ""},
		{"file:///public/../secret", "a dot segment"},
		{"file:///public/./secret", "a dot segment"},
		{"file:///public/..", "a dot segment"},
		{"file:///public/..?x", "a dot segment"},
		{"file:///public/..#x", "a dot segment"},
		{"file:///public/%2e%2e/secret", "a dot segment"},
		{"file:///public/%2E./secret", "a dot segment"},
		{"file:///public/.%2e/secret", "a dot segment"},
		{"file:///public/%2e/secret", "a dot segment"},
		{"file:..", "a dot segment"},
		{"file:../secret", "a dot segment"},
		{"../secret", "a dot segment"},
		{"http://../x", "a dot segment"},
		{`file:///public/..\secret`, "a backslash"},
		{`file:///public\x`, "a backslash"},
		{"file:///public/..%2fsecret", "an encoded slash or backslash that decodes to a dot segment or an empty one"},
		{"file:///public/..%5Csecret", "an encoded slash or backslash that decodes to a dot segment or an empty one"},
		{"notes://x/%2Fetc%2Fpasswd", "an encoded slash or backslash that decodes to a dot segment or an empty one"},
		{"file:///public/a%2F%2Fb", "an encoded slash or backslash that decodes to a dot segment or an empty one"},
		{"notes://folder%2Fnote", ""},
		{"docs://guides%2Fintro.md", ""},
		{"https://example.com/repos/o%2Fr/readme", ""},
		{"file:///public/a?/../../secret", "a dot segment"},
		{"file:///public/a#/../../secret", "a dot segment"},
		{"file:///public/a?/%2e%2e/secret", "a dot segment"},
		{"file:///public/.\t./secret", "a control character (0x09)"},
		{"file:///public/.\n./secret", "a control character (0x0a)"},
		{"file:///secret\x00", "a control character (0x00)"},
		{"file:///secret\x7f", "a control character (0x7f)"},
		{" file:///secret", "a space at its start or end"},
		{"file:///secret ", "a space at its start or end"},
	}
	for _, tt := range tests {
		if got := resourceURIProblem(tt.uri); got != tt.problem {
			t.Errorf("resourceURIProblem(%q) = %q, want %q", tt.uri, got, tt.problem)
		}
	}
}

// TestUnresolvedResourceURI checks that every member naming a resource
// is read for what servers resolve, and the reason given.
func TestUnresolvedResourceURI(t *testing.T) {
	tests := []struct {
		name, body, reason string
	}{
		{"a read through a dot segment", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/../secret"}}`,
			`resources/read "params.uri" "file:///public/../secret" holds a dot segment, which servers resolve in different ways; send the URI resolved`},
		{"a subscription through an encoded dot segment", `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///public/%2E./secret"}}`,
			`resources/subscribe "params.uri" "file:///public/%2E./secret" holds a dot segment`},
		{"an unsubscription through a backslash", `{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{"uri":"file:///public\\..\\secret"}}`,
			`resources/unsubscribe "params.uri" "file:///public\\..\\secret" holds a backslash`},
		{"a completion's template through an encoded slash", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///public/..%2f{x}"},"argument":{"name":"x","value":"a"}}}`,
			`completion/complete "params.ref.uri" "file:///public/..%2f{x}" holds an encoded slash or backslash that decodes to a dot segment`},
		{"a subscription's resource with a tab", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["file:///a","file:///public/.\t./secret"]}}}`,
			`subscriptions/listen "params.notifications.resourceSubscriptions[1]" "file:///public/.\t./secret" holds a control character (0x09)`},
		{"a long URI, cut", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///` + strings.Repeat("a/", 150) + `.."}}`,
			`"file:///` + strings.Repeat("a/", 96) + `…" holds a dot segment`},
		{"a resolved read", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/readme"}}`, ""},
		{"a prompt named with dots", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":".."}}`, ""},
		{"a completion of a prompt", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"../p"},"argument":{"name":"x","value":"a"}}}`, ""},
		{"a subscription to list changes alone", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":null,"toolsListChanged":true}}}`, ""},
		{"a tool argument", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"uri":"file:///../x"}}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := Parse([]byte(tt.body), Limits{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := body.Messages[0].UnresolvedResourceURI()
			if tt.reason == "" && got != "" || !strings.Contains(got, tt.reason) {
				t.Errorf("UnresolvedResourceURI() = %q, want %q", got, tt.reason)
			}
		})
	}
}

package mcpmsg

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestCheckInputRequest: a request a result embeds is refused when a
// member's name is one a client reading it loosely (the Go SDK) takes
// for another the schema names, at any depth the SDK's types reach, as
// well as for what a request sent on its own is refused for.
func TestCheckInputRequest(t *testing.T) {
	tests := []struct {
		name, method, params string
		refused              string // in the error; "" when allowed
	}{
		{"a url elicitation", "elicitation/create", `{"mode":"url","message":"m","url":"https://x.example","elicitationId":"e"}`, ""},
		{"a url elicitation with a query and an encoded slash", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example/oauth/authorize?state=a%2Fb&scope=read","elicitationId":"e"}`, ""},
		{"a url elicitation's dot segment", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example/oauth/../admin","elicitationId":"e"}`, "holds a dot segment, which browsers resolve"},
		{"a url elicitation's encoded dot segment", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example/oauth/%2E%2e/admin","elicitationId":"e"}`, "holds a dot segment"},
		{"a url elicitation's backslash", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example/oauth/..\\admin","elicitationId":"e"}`, "holds a backslash"},
		{"a url elicitation's tab", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example/oauth/.\t./admin","elicitationId":"e"}`, "holds a control character"},
		{"an OAuth authorization URL", "elicitation/create", `{"mode":"url","message":"m","url":"https://accounts.google.com/o/oauth2/v2/auth?client_id=abc&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback&response_type=code&scope=openid","elicitationId":"e"}`, ""},
		{"an OAuth authorization URL to localhost", "elicitation/create", `{"mode":"url","message":"m","url":"https://github.com/login/oauth/authorize?client_id=abc&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2F","elicitationId":"e"}`, ""},
		{"a return path in the query", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/authorize?return_to=%2Fdashboard&v=1.2#./top","elicitationId":"e"}`, ""},
		{"a dot segment in the query", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login?next=../admin","elicitationId":"e"}`, "holds a dot segment"},
		{"an encoded dot segment in the query", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login?next=%2E%2e%2fadmin","elicitationId":"e"}`, "holds a dot segment"},
		{"a dot segment in the fragment", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login#../admin","elicitationId":"e"}`, "holds a dot segment"},
		{"a query of a dot segment", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login?..","elicitationId":"e"}`, "holds a dot segment"},
		{"a dot segment in the query behind a space", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login?next=%20../admin","elicitationId":"e"}`, "holds a dot segment"},
		{"a dot segment in the query behind a plus", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login?next=+../admin","elicitationId":"e"}`, "holds a dot segment"},
		{"a dot segment in the query split by a tab", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login?next=.%09.%2Fadmin","elicitationId":"e"}`, "holds a dot segment"},
		{"a dot segment in the fragment split by a newline", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login#.%0a./admin","elicitationId":"e"}`, "holds a dot segment"},
		{"a dot segment in the query encoded twice", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login?next=%252e%252E/admin","elicitationId":"e"}`, "holds a dot segment"},
		{"dots and a space in the query", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/search?q=what+...+next&v=1..2","elicitationId":"e"}`, ""},
		{"a backslash in the query", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example.com/oauth/login?next=\\\\evil.example","elicitationId":"e"}`, "holds a backslash"},
		{"a url elicitation's trailing dot segment", "elicitation/create", `{"mode":"url","message":"m","url":"https://auth.example/oauth/..","elicitationId":"e"}`, "holds a dot segment"},
		{"a form elicitation", "elicitation/create", `{"message":"m","requestedSchema":{"type":"object","properties":{"URL":{"type":"string"},"Message":{"type":"string"}}}}`, ""},
		{"mode capitalised", "elicitation/create", `{"Mode":"url","message":"m","url":"https://x.example"}`, `"Mode" differs from "mode"`},
		{"mode in capitals", "elicitation/create", `{"MODE":"url","message":"m"}`, `"MODE" differs from "mode"`},
		{"mode in mixed case", "elicitation/create", `{"mOde":"url","message":"m"}`, `"mOde" differs from "mode"`},
		{"the url capitalised", "elicitation/create", `{"mode":"url","message":"m","URL":"https://x.example"}`, `"URL" in /params differs from "url"`},
		{"the elicitation id in lower case", "elicitation/create", `{"message":"m","requestedSchema":{},"elicitationid":"e"}`, `"elicitationid" in /params differs from "elicitationId"`},
		{"a sampling request", "sampling/createMessage", `{"messages":[{"role":"user","content":{"type":"text","text":"t"}}],"maxTokens":10,"includeContext":"none","modelPreferences":{"hints":[{"name":"m"}]}}`, ""},
		{"includeContext capitalised", "sampling/createMessage", `{"messages":[],"maxTokens":10,"IncludeContext":"allServers"}`, `"IncludeContext" in /params differs from "includeContext"`},
		{"a model preference's hints capitalised", "sampling/createMessage", `{"messages":[],"maxTokens":10,"modelPreferences":{"Hints":[{"name":"m"}]}}`, `"Hints" in /params/modelPreferences differs from "hints"`},
		{"a hint's name capitalised", "sampling/createMessage", `{"messages":[],"maxTokens":10,"modelPreferences":{"hints":[{"NAME":"m"}]}}`, `"NAME" in /params/modelPreferences/hints/0 differs from "name"`},
		{"a tool's schema capitalised", "sampling/createMessage", `{"messages":[],"maxTokens":10,"tools":[{"name":"t","InputSchema":{}}]}`, `"InputSchema" in /params/tools/0 differs from "inputSchema"`},
		{"metadata read as written", "sampling/createMessage", `{"messages":[],"maxTokens":10,"metadata":{"Temperature":1}}`, ""},
		{"a progress token capitalised", "roots/list", `{"_meta":{"ProgressToken":1}}`, `"ProgressToken" differs from "progressToken"`},
		{"a roots request", "roots/list", `{"_meta":{"progressToken":1}}`, ""},
		{"names that fold alike", "elicitation/create", `{"message":"m","requestedSchema":{"properties":{"a":{},"A":{}}}}`, "differ only by case"},
		{"another method, a known member capitalised", "tools/call", `{"Name":"x"}`, `"Name" differs from "name"`},
		{"a schema's properties capitalised", "elicitation/create", `{"message":"m","requestedSchema":{"type":"object","Properties":{"grant_admin":{"type":"boolean","default":true}}}}`, `"Properties" in /params/requestedSchema differs from "properties"`},
		{"a property's default capitalised", "elicitation/create", `{"message":"m","requestedSchema":{"type":"object","properties":{"confirm":{"type":"boolean","Default":true}}}}`, `"Default" in /params/requestedSchema/properties/confirm differs from "default"`},
		{"a schema's type in capitals", "elicitation/create", `{"message":"m","requestedSchema":{"TYPE":"object"}}`, `"TYPE" in /params/requestedSchema differs from "type"`},
		{"an item schema's enum capitalised", "elicitation/create", `{"message":"m","requestedSchema":{"properties":{"tags":{"type":"array","items":{"Enum":["a"]}}}}}`, `"Enum" in /params/requestedSchema/properties/tags/items differs from "enum"`},
		{"a schema in anyOf", "elicitation/create", `{"message":"m","requestedSchema":{"properties":{"p":{"anyOf":[{"Const":1}]}}}}`, `"Const" in /params/requestedSchema/properties/p/anyOf/0 differs from "const"`},
		{"property names of any case", "elicitation/create", `{"message":"m","requestedSchema":{"type":"object","properties":{"Default":{"type":"string","title":"Default","default":"x"},"Type":{"type":"string"}},"required":["Default"]}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decoder := json.NewDecoder(strings.NewReader(tt.params))
			decoder.UseNumber() // as the gateway reads them
			var params map[string]any
			if err := decoder.Decode(&params); err != nil {
				t.Fatal(err)
			}
			err := CheckInputRequest(tt.method, params)
			switch {
			case tt.refused == "" && err != nil:
				t.Errorf("CheckInputRequest(%s) = %v; want it allowed", tt.params, err.Message)
			case tt.refused != "" && err == nil:
				t.Errorf("CheckInputRequest(%s) allowed; want it refused for %s", tt.params, tt.refused)
			case tt.refused != "" && !strings.Contains(err.Message, tt.refused):
				t.Errorf("CheckInputRequest(%s) = %v; want %s", tt.params, err.Message, tt.refused)
			}
		})
	}
}

// TestInputRequestParamsReadLoosely: the Go SDK reads the requests a
// result embeds case-insensitively, as CheckInputRequest assumes (a
// future SDK that reads them strictly makes this fail, and the check
// can be narrowed).
func TestInputRequestParamsReadLoosely(t *testing.T) {
	var requests mcp.InputRequestMap
	if err := json.Unmarshal([]byte(`{"q":{"method":"elicitation/create","params":{"Mode":"url","message":"m","URL":"https://x.example"}}}`), &requests); err != nil {
		t.Fatal(err)
	}
	if p, ok := requests["q"].(*mcp.ElicitParams); !ok || p.Mode != "url" || p.URL == "" {
		t.Errorf("the SDK read %#v; want Mode and URL read as mode and url", requests["q"])
	}
}

// TestCheckServerRequest: an elicitation sent on its own is refused for
// a requested schema that clients read otherwise (the Go SDK reads it
// case-insensitively), and for a member that differs from one of the
// request's only by case (clients that decode with encoding/json read
// "Message" as the message the policy did not see).
func TestCheckServerRequest(t *testing.T) {
	for params, refused := range map[string]bool{
		`{"message":"m","requestedSchema":{"type":"object","properties":{"ok":{"type":"boolean","default":false}}}}`:         false,
		`{"message":"m","requestedSchema":{"type":"object","Properties":{"grant_admin":{"type":"boolean","default":true}}}}`: true,
		`{"message":"m","requestedSchema":{"type":"object","properties":{"ok":{"type":"boolean","DEFAULT":true}}}}`:          true,
		`{"message":"m","Mode":"url"}`: true,
		`{"Message":"Type your password","requestedSchema":{"type":"object","properties":{}}}`: true,
		`{"MESSAGE":"Type your password","requestedSchema":{"type":"object","properties":{}}}`: true,
	} {
		var decoded map[string]any
		if err := json.Unmarshal([]byte(params), &decoded); err != nil {
			t.Fatal(err)
		}
		if err := CheckServerRequest("elicitation/create", decoded); (err != nil) != refused {
			t.Errorf("CheckServerRequest(%s) = %v; want it refused: %v", params, err, refused)
		}
	}
}

// TestCheckInputResponse: an answer of a retried request is refused when
// a server, reading it as the Go SDK does (its kind by "action", "role"
// or "roots" in any case, its members case-insensitively), would read it
// otherwise than the policy.
func TestCheckInputResponse(t *testing.T) {
	tests := []struct {
		name, answer, refused string
	}{
		{"an elicitation's answer", `{"action":"accept","content":{"amount":5}}`, ""},
		{"a sampling answer", `{"role":"assistant","content":{"type":"text","text":"t"},"model":"m"}`, ""},
		{"a roots answer", `{"roots":[{"uri":"file:///srv","name":"srv"}]}`, ""},
		{"no kind", `{"content":{}}`, ""},
		{"action capitalised", `{"Action":"decline"}`, `"Action" in /params/inputResponses/k differs from "action"`},
		{"roots in capitals", `{"ROOTS":[]}`, `"ROOTS" in /params/inputResponses/k differs from "roots"`},
		{"content capitalised", `{"action":"accept","Content":{"amount":5000}}`, `"Content" in /params/inputResponses/k differs from "content"`},
		{"a root's uri in capitals", `{"roots":[{"URI":"file:///"}]}`, `"URI" in /params/inputResponses/k/roots/0 differs from "uri"`},
		{"two kinds", `{"action":"decline","roots":[]}`, "more than one kind of answer (roots, action)"},
		{"no object", `"accept"`, "/params/inputResponses/k must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var answer any
			if err := json.Unmarshal([]byte(tt.answer), &answer); err != nil {
				t.Fatal(err)
			}
			err := CheckInputResponse("k", answer)
			switch {
			case tt.refused == "" && err != nil:
				t.Errorf("CheckInputResponse(%s) = %v; want it allowed", tt.answer, err.Message)
			case tt.refused != "" && err == nil:
				t.Errorf("CheckInputResponse(%s) allowed; want it refused for %s", tt.answer, tt.refused)
			case tt.refused != "" && (!strings.Contains(err.Message, tt.refused) || err.Code != CodeInvalidParams):
				t.Errorf("CheckInputResponse(%s) = %d %v; want %d %s", tt.answer, err.Code, err.Message, CodeInvalidParams, tt.refused)
			}
		})
	}
}

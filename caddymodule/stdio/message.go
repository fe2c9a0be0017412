package stdio

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// decodeBody reads a POST body: one JSON-RPC message, or a batch of them,
// held first to mcp_policy's strict reading (mcpmsg.Parse: no member given
// twice or in another case, ids every reader reads alike, requests and
// responses as JSON-RPC defines them), so that mcp_stdio alone refuses
// the ambiguous messages mcp_policy in front of it would. Its size limits
// are the largest a configuration may set (mcpmsg.MaxLimits), so that it
// never refuses what mcp_policy, applying those configured, let through;
// an mcp_stdio without mcp_policy in front is bounded by them and by its
// max_message_size. A refusal is an *mcpmsg.Error.
func decodeBody(body []byte) ([]jsonrpc.Message, error) {
	parsed, err := mcpmsg.Parse(body, mcpmsg.MaxLimits)
	if err == nil {
		err = parsed.CheckParams()
	}
	if err != nil {
		return nil, err
	}
	msgs := make([]jsonrpc.Message, len(parsed.Messages))
	for i := range parsed.Messages {
		msg, err := decodeMessage(parsed.Messages[i].Raw)
		if err != nil {
			return nil, err
		}
		msgs[i] = msg
	}
	return msgs, nil
}

// maxExactID is the largest integer a float64 holds exactly, and so past
// which no other is a valid numeric id.
const maxExactID = 1 << 53

// wireMessage is a JSON-RPC message as a client posts it.
type wireMessage struct {
	JSONRPC string         `json:"jsonrpc"`
	ID      jsontext.Value `json:"id"`
	Method  *string        `json:"method"`
	Params  jsontext.Value `json:"params"`
	Result  jsontext.Value `json:"result"`
	Error   *struct {
		Code    int64          `json:"code"`
		Message string         `json:"message"`
		Data    jsontext.Value `json:"data"`
	} `json:"error"`
}

// decodeMessage reads one JSON-RPC message strictly (member names match
// exactly, and only once). jsonrpc.DecodeMessage would do, but its
// decoder allocates some 128 KiB a message, which cost the gateway a
// tenth of a millisecond a call. Numeric ids must be integers: the go-sdk
// keeps ids as int64, and an id it would round could not be matched with
// its response; and the go-sdk makes numeric ids from float64, so they
// must be exact in one (as JavaScript's are).
func decodeMessage(raw jsontext.Value) (jsonrpc.Message, error) {
	var m wireMessage
	if err := jsonv2.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("reading a message: %w", err)
	}
	if m.JSONRPC != "2.0" {
		return nil, fmt.Errorf("the message's jsonrpc is %q, want \"2.0\"", m.JSONRPC)
	}
	var id jsonrpc.ID
	switch kind := m.ID.Kind(); kind {
	case 0, 'n':
	case '"':
		var text string
		if err := jsonv2.Unmarshal(m.ID, &text); err != nil {
			return nil, fmt.Errorf("reading the id: %w", err)
		}
		id, _ = jsonrpc.MakeID(text)
	default:
		n, err := strconv.ParseInt(string(m.ID), 10, 64)
		if err != nil || n > maxExactID || n < -maxExactID {
			return nil, fmt.Errorf("the id %s is neither a string nor an integer of at most 2^53", m.ID)
		}
		id, _ = jsonrpc.MakeID(float64(n))
	}
	if m.Method != nil {
		return &jsonrpc.Request{ID: id, Method: *m.Method, Params: json.RawMessage(m.Params)}, nil
	}
	if !id.IsValid() {
		return nil, errors.New("a message with neither a method nor an id")
	}
	response := &jsonrpc.Response{ID: id, Result: json.RawMessage(m.Result)}
	if m.Error != nil {
		response.Error = &jsonrpc.Error{Code: m.Error.Code, Message: m.Error.Message, Data: json.RawMessage(m.Error.Data)}
	}
	return response, nil
}

// initializeRequest returns the POST's message when it is initialize
// alone.
func initializeRequest(msgs []jsonrpc.Message) *jsonrpc.Request {
	if len(msgs) != 1 {
		return nil
	}
	if request, ok := msgs[0].(*jsonrpc.Request); ok && request.IsCall() && request.Method == "initialize" {
		return request
	}
	return nil
}

// statelessVersion returns the revision a POST without a session speaks
// when it is 2026-07-28 or later (which has no sessions): from the
// MCP-Protocol-Version header, or from a request's
// _meta["io.modelcontextprotocol/protocolVersion"]; "" otherwise.
func statelessVersion(header http.Header, msgs []jsonrpc.Message) string {
	if version := header.Get(headerProtocolVersion); version >= mcphttp.Version20260728 {
		return version
	}
	for _, msg := range msgs {
		if request, ok := msg.(*jsonrpc.Request); ok {
			var version string
			if json.Unmarshal(metaOf(request.Params)[mcp.MetaKeyProtocolVersion], &version) == nil && version >= mcphttp.Version20260728 {
				return version
			}
		}
	}
	return ""
}

// metaOf returns the _meta member of a request's params, nil if none.
func metaOf(params json.RawMessage) map[string]json.RawMessage {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if len(params) == 0 || json.Unmarshal(params, &p) != nil {
		return nil
	}
	return p.Meta
}

// withMember returns params with member name set to value: in params
// itself (object ""), or in the object member object of params, made if
// need be.
func withMember(params json.RawMessage, object, name string, value json.RawMessage) (json.RawMessage, error) {
	members := map[string]json.RawMessage{}
	if len(params) > 0 {
		if err := json.Unmarshal(params, &members); err != nil {
			return nil, err
		}
	}
	if object == "" {
		members[name] = value
		return json.Marshal(members)
	}
	inner := map[string]json.RawMessage{}
	if raw, ok := members[object]; ok {
		if err := json.Unmarshal(raw, &inner); err != nil {
			return nil, err
		}
	}
	inner[name] = value
	encoded, err := json.Marshal(inner)
	if err != nil {
		return nil, err
	}
	members[object] = encoded
	return json.Marshal(members)
}

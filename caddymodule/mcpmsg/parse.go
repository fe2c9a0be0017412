package mcpmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// MaxBatchLength is the most messages a batch may hold: each is decided,
// audited and answered on its own, and a body of tiny messages would
// otherwise make a body's worth of decisions.
const MaxBatchLength = 100

// Parse parses a POST body holding one JSON-RPC message or a batch of them.
//
// It checks syntax first, over the whole body, and then the JSON-RPC and MCP
// rules for each message. Any failure is returned as an *Error whose Code is
// CodeParseError when the body is not well-formed JSON, CodeInvalidParams
// when tools/call arguments hold a nested name that only full folding
// reads, and CodeInvalidRequest otherwise. What params hold that readers
// may read apart from a policy (names that fold alike, numbers floats
// round) is for Body.CheckParams, on the messages a policy decides. The
// Raw and ID slices of the returned messages alias data.
func Parse(data []byte, lim Limits) (*Body, error) {
	elems, batch, perr := readBody(data, lim)
	if perr != nil {
		return nil, perr
	}
	if batch && len(elems) == 0 {
		return nil, invalidRequest("empty batch")
	}
	body := &Body{Batch: batch, Messages: make([]Message, len(elems))}
	var requestIDs map[string]int
	for i, e := range elems {
		m := &body.Messages[i]
		if verr := e.validate(m); verr != nil {
			if batch {
				verr.Message = fmt.Sprintf("batch element %d: %s", i, verr.Message)
			} else if m.Kind == KindRequest {
				verr.ID = m.ID
			}
			return nil, verr
		}
		if batch && m.Kind == KindRequest {
			// Two requests of one batch with one id could not be told
			// apart by their answers.
			if requestIDs == nil {
				requestIDs = make(map[string]int, len(elems))
			}
			id := CanonicalID(m.ID)
			if first, seen := requestIDs[id]; seen {
				return nil, invalidRequest("batch elements %d and %d are requests with the same id %s", first, i, m.ID)
			}
			requestIDs[id] = i
		}
	}
	return body, nil
}

// element is one message (a whole body, or one element of a batch) after the
// syntactic pass, before the JSON-RPC rules are checked.
type element struct {
	raw []byte
	// members holds the decoded members; nil when the element is not an
	// object, in which case notObject names what it is instead.
	members   map[string]any
	notObject string
	// id is the exact bytes of the id member's value; nil when absent.
	id []byte
}

// bodyReader decodes one body into elements.
//
// It drives jsontext (the proposed encoding/json/v2 tokenizer) rather than a
// hand-written scanner because that decoder, by default, already rejects
// exactly the ambiguities the gateway must refuse: duplicate member names
// (after unescaping, at any depth), invalid UTF-8, and escaped lone
// surrogates such as "\ud800", which encoding/json would silently replace
// with U+FFFD. Its token API also reports offsets and nesting depth, which
// give each message's raw bytes and enforce Limits.MaxDepth without a second
// pass. It counts the values it decodes against Limits.MaxValues, and stops
// a batch at its first message past MaxBatchLength, so that a body is
// refused before it is decoded whole.
type bodyReader struct {
	dec       *jsontext.Decoder
	data      []byte
	maxDepth  int
	maxValues int
	values    int
}

// decoders pools jsontext decoders, whose state (buffers, the stack of
// member names seen) is worth keeping between bodies: a decoder is most of
// what a parse allocates.
var decoders = sync.Pool{New: func() any { return jsontext.NewDecoder(emptyReader) }}

// emptyReader is what a pooled decoder reads, so that it holds no body.
var emptyReader io.Reader = noInput{}

// noInput is a reader with nothing in it, and no state to share between
// goroutines.
type noInput struct{}

// Read reports the end of the input.
func (noInput) Read([]byte) (int, error) { return 0, io.EOF }

// readBody decodes data into its elements and reports whether it is a batch.
func readBody(data []byte, lim Limits) ([]element, bool, *Error) {
	if len(skipSpace(data)) == 0 {
		return nil, false, &Error{Code: CodeParseError, Message: "empty body"}
	}
	// A *bytes.Buffer lets the decoder read data in place, without a copy.
	dec := decoders.Get().(*jsontext.Decoder)
	dec.Reset(bytes.NewBuffer(data))
	defer func() {
		// Drop the reference to data before pooling the decoder.
		dec.Reset(emptyReader)
		decoders.Put(dec)
	}()
	r := &bodyReader{dec: dec, data: data, maxDepth: lim.EffectiveMaxDepth(), maxValues: lim.EffectiveMaxValues()}
	elems, batch, err := r.readTop()
	if err != nil {
		return nil, false, syntaxError(err)
	}
	end := r.dec.InputOffset()
	if _, err := r.dec.ReadToken(); !errors.Is(err, io.EOF) {
		rest := data[end:]
		at := end + int64(len(rest)-len(skipSpace(rest)))
		return nil, false, &Error{Code: CodeParseError, Message: fmt.Sprintf("trailing data after the message at byte %d", at)}
	}
	return elems, batch, nil
}

// readTop reads the top-level value: one message or a batch array of them.
func (r *bodyReader) readTop() ([]element, bool, error) {
	if r.dec.PeekKind() != '[' {
		e, err := r.readElement()
		return []element{e}, false, err
	}
	if _, err := r.readToken(); err != nil {
		return nil, true, err
	}
	var elems []element
	for r.dec.PeekKind() != ']' {
		if len(elems) == MaxBatchLength {
			return nil, true, invalidRequest("a batch of more than %d messages; at most %d are accepted", MaxBatchLength, MaxBatchLength)
		}
		e, err := r.readElement()
		if err != nil {
			return nil, true, err
		}
		elems = append(elems, e)
	}
	_, err := r.dec.ReadToken()
	return elems, true, err
}

// readElement reads one message, recording its raw bytes and those of its id.
func (r *bodyReader) readElement() (element, error) {
	if r.dec.PeekKind() != '{' {
		v, err := r.readValue()
		return element{notObject: TypeName(v)}, err
	}
	if err := r.count(); err != nil {
		return element{}, err
	}
	if _, err := r.readToken(); err != nil {
		return element{}, err
	}
	start := r.dec.InputOffset() - 1
	e := element{members: make(map[string]any)}
	for r.dec.PeekKind() != '}' {
		key, err := r.readName()
		if err != nil {
			return element{}, err
		}
		afterName := r.dec.InputOffset()
		v, err := r.readValue()
		if err != nil {
			return element{}, err
		}
		if key == "id" {
			e.id = r.data[valueStart(r.data, afterName):r.dec.InputOffset()]
		}
		e.members[key] = v
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return element{}, err
	}
	e.raw = r.data[start:r.dec.InputOffset()]
	return e, nil
}

// readValue reads and decodes the next value: objects as map[string]any,
// arrays as []any, numbers as json.Number.
func (r *bodyReader) readValue() (any, error) {
	if err := r.count(); err != nil {
		return nil, err
	}
	if r.dec.PeekKind() == '"' {
		return r.readString()
	}
	tok, err := r.readToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		obj := make(map[string]any)
		for r.dec.PeekKind() != '}' {
			key, err := r.readName()
			if err != nil {
				return nil, err
			}
			v, err := r.readValue()
			if err != nil {
				return nil, err
			}
			obj[key] = v
		}
		_, err := r.dec.ReadToken()
		return obj, err
	case '[':
		arr := []any{}
		for r.dec.PeekKind() != ']' {
			v, err := r.readValue()
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := r.dec.ReadToken()
		return arr, err
	case '0':
		return json.Number(tok.String()), nil
	case 't', 'f':
		return tok.Bool(), nil
	default: // 'n': the decoder yields no other kind at the start of a value.
		return nil, nil
	}
}

// count counts a value about to be decoded against the body's limit.
func (r *bodyReader) count() error {
	if r.values++; r.values > r.maxValues {
		return invalidRequest("more than %d JSON values in the body; at most %d are accepted", r.maxValues, r.maxValues)
	}
	return nil
}

// readName reads the name of an object's member. Names the gateway
// knows are not allocated again for each message: a message's names are
// mostly the few that JSON-RPC and MCP define.
func (r *bodyReader) readName() (string, error) {
	raw, err := r.dec.ReadValue()
	if err != nil {
		return "", err
	}
	if quoted, plain := unescaped(raw); plain {
		if name, ok := knownNames[string(quoted)]; ok {
			return name, nil
		}
		return string(quoted), nil
	}
	name, err := jsontext.AppendUnquote(nil, raw)
	return string(name), err
}

// readString reads a string value; the most frequent ones (knownValues)
// are not allocated again for each message.
func (r *bodyReader) readString() (any, error) {
	raw, err := r.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	if quoted, plain := unescaped(raw); plain {
		if value, ok := knownValues[string(quoted)]; ok {
			return value, nil
		}
		return string(quoted), nil
	}
	value, err := jsontext.AppendUnquote(nil, raw)
	return string(value), err
}

// unescaped returns the text of a JSON string that the decoder read, and
// whether it holds no escape, in which case the text is the string itself
// (the decoder checked that it is UTF-8).
func unescaped(raw jsontext.Value) ([]byte, bool) {
	quoted := raw[1 : len(raw)-1]
	return quoted, bytes.IndexByte(quoted, '\\') < 0
}

// knownNames are the member names of JSON-RPC and MCP messages.
var knownNames = func() map[string]string {
	names := map[string]string{}
	for _, list := range [][]string{messageMembers, paramsMembers, metaMembers, {"code", "message", "data", "text", "type", "content"}} {
		for _, name := range list {
			names[name] = name
		}
	}
	return names
}()

// knownValues are string values that most messages hold, made values
// once: the JSON-RPC version and the most frequent methods.
var knownValues = map[string]any{
	"2.0":                       "2.0",
	"tools/call":                "tools/call",
	"tools/list":                "tools/list",
	"initialize":                "initialize",
	"ping":                      "ping",
	"notifications/initialized": "notifications/initialized",
	"notifications/cancelled":   "notifications/cancelled",
	"notifications/progress":    "notifications/progress",
}

// readToken reads the next token, enforcing the nesting limit on the objects
// and arrays it opens.
func (r *bodyReader) readToken() (jsontext.Token, error) {
	tok, err := r.dec.ReadToken()
	if err != nil {
		return tok, err
	}
	if k := tok.Kind(); (k == '{' || k == '[') && r.dec.StackDepth() > r.maxDepth {
		return tok, invalidRequest("JSON nesting deeper than %d levels", r.maxDepth)
	}
	return tok, nil
}

// syntaxError turns an error from the syntactic pass into an *Error.
func syntaxError(err error) *Error {
	var perr *Error
	if errors.As(err, &perr) {
		return perr
	}
	var serr *jsontext.SyntacticError
	if !errors.As(err, &serr) {
		return &Error{Code: CodeParseError, Message: fmt.Sprintf("malformed JSON: %v", err)}
	}
	if errors.Is(serr.Err, jsontext.ErrDuplicateName) {
		// Decoders disagree on which duplicate wins, so this is ambiguous
		// rather than malformed.
		return invalidRequest("duplicate member name %q%s", serr.JSONPointer.LastToken(), within(serr.JSONPointer.Parent()))
	}
	return &Error{Code: CodeParseError, Message: fmt.Sprintf("malformed JSON at byte %d%s: %v", serr.ByteOffset, within(serr.JSONPointer), serr.Err)}
}

// within describes where in the body p points, or nothing at the top level.
func within(p jsontext.Pointer) string {
	if p == "" {
		return ""
	}
	return fmt.Sprintf(" in %s", p)
}

// valueStart returns the offset of the member value that follows the member
// name ending at afterName. Only whitespace and the colon lie between them.
func valueStart(data []byte, afterName int64) int64 {
	i := afterName
	for data[i] == ':' || isSpace(data[i]) {
		i++
	}
	return i
}

// skipSpace removes leading JSON whitespace (RFC 8259 section 2), which is
// narrower than what bytes.TrimSpace removes.
func skipSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	return b
}

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

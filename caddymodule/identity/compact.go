package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// segmentNames name the three segments of a JWS in compact serialization
// (RFC 7515 §7.1), in order.
var segmentNames = [3]string{"header", "payload", "signature"}

// readCompact checks that token is a JWS in compact serialization with one
// reading only, and returns its protected header and its claims. It is stricter than jws.Verify on
// purpose: a token that different parsers could read differently (one
// taking the first "sub", another the last; one ignoring trailing bits or
// line breaks, another not) is refused before any key is looked up, as the
// gateway refuses such JSON-RPC messages.
//
// Each segment must be unpadded base64url (RFC 7515 §2) in its canonical
// form, the signature must not be empty, and the protected header and the
// claims must each be one JSON object with no duplicate member names (at
// any depth) and valid UTF-8.
func readCompact(token string) (header, claims map[string]any, err error) {
	segments := strings.Split(token, ".")
	if len(segments) != len(segmentNames) {
		return nil, nil, fmt.Errorf("%d segments, not the 3 of a JWS in compact serialization", len(segments))
	}
	var decoded [3][]byte
	for i, segment := range segments {
		if decoded[i], err = decodeSegment(segment); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", segmentNames[i], err)
		}
	}
	if len(decoded[2]) == 0 {
		return nil, nil, errors.New("signature: empty")
	}
	if header, err = decodeObject(decoded[0]); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	if claims, err = decodeObject(decoded[1]); err != nil {
		return nil, nil, fmt.Errorf("payload: %w", err)
	}
	return header, claims, nil
}

// decodeSegment decodes one segment as canonical unpadded base64url.
// base64's strict decoding refuses padding and non-zero trailing bits but
// skips line breaks, so the alphabet is checked first.
func decodeSegment(segment string) ([]byte, error) {
	for i, c := range []byte(segment) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return nil, fmt.Errorf("byte %d is not in the base64url alphabet", i)
		}
	}
	data, err := base64.RawURLEncoding.Strict().DecodeString(segment)
	if err != nil {
		return nil, fmt.Errorf("decoding base64url: %w", err)
	}
	return data, nil
}

// decodeObject decodes data, which must be exactly one JSON object, with
// objects as map[string]any, arrays as []any and numbers as json.Number, as
// the policy input holds them. jsontext, unlike encoding/json, refuses
// duplicate member names (after unescaping, at any depth), invalid UTF-8
// and escaped lone surrogates such as "\ud800".
func decodeObject(data []byte) (map[string]any, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	value, err := decodeValue(dec)
	if err != nil {
		return nil, fmt.Errorf("decoding JSON: %w", err)
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON object")
	}
	object, ok := value.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return object, nil
}

// decodeValue reads and decodes the next JSON value from dec.
func decodeValue(dec *jsontext.Decoder) (any, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		object := make(map[string]any)
		for dec.PeekKind() != '}' {
			name, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			// The name must be taken before the next read invalidates it.
			key := name.String()
			value, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			object[key] = value
		}
		_, err := dec.ReadToken()
		return object, err
	case '[':
		array := []any{}
		for dec.PeekKind() != ']' {
			value, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			array = append(array, value)
		}
		_, err := dec.ReadToken()
		return array, err
	case '"':
		return tok.String(), nil
	case '0':
		return json.Number(tok.String()), nil
	case 't', 'f':
		return tok.Bool(), nil
	default: // 'n': the decoder yields no other kind at the start of a value.
		return nil, nil
	}
}

package mcpmsg

import (
	"bytes"

	"github.com/go-json-experiment/json/jsontext"
)

// CanonicalID returns a raw JSON id (such as Message.ID) in the canonical
// form of RFC 8785, so that ids equal as JSON values, as a JavaScript
// client compares them, are equal strings: "\u0061" becomes "a", and 1.0
// and 1e0 become 1. An id that is not valid JSON is returned as it is.
func CanonicalID(id []byte) string {
	v := jsontext.Value(bytes.Clone(id))
	if err := v.Canonicalize(); err != nil {
		return string(id)
	}
	return string(v)
}

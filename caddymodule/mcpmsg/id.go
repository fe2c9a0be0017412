package mcpmsg

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// maxIntegerID is the largest magnitude of a numeric id that Parse accepts:
// 2^53-1, the largest integer that a float64 holds together with all its
// neighbours. JavaScript reads every number as a float64, and so does Go's
// encoding/json when it decodes into an interface (the MCP Go SDK then
// truncates that float to an int64); Python and Java read integers exactly.
// Up to 2^53-1 they all read the same integer; beyond it,
// 9007199254740993 is that integer to Python and 9007199254740992 to
// JavaScript.
const maxIntegerID = 1<<53 - 1

// MaxIDLength is the longest string id (or progress token) Parse accepts,
// in bytes. Ids are remembered, as keys, for as long as their requests
// are answered or relayed (the tools/list replies to filter, the server
// requests relayed, the calls held): a client or server choosing ids as
// long as a body could make each of those cost a body's worth of memory.
// Clients use short ids (counters, UUIDs).
const MaxIDLength = 256

// maxIntegerIDDigits is the number of decimal digits of maxIntegerID.
const maxIntegerIDDigits = 16

// CanonicalID returns a raw JSON id (such as Message.ID) in a form in which
// two ids are equal only when no JSON reader can tell them apart: a string
// loses its optional escapes ("\u0061" becomes "a"), while a number keeps
// its exact text, so that 1 and 1.0, or 9007199254740992 and
// 9007199254740993, stay distinct (readers disagree on whether those are
// the same id; Parse accepts 1 and refuses the other three). An id that is
// not valid JSON is returned as it is.
func CanonicalID(id []byte) string {
	v := jsontext.Value(bytes.Clone(id))
	if err := v.Canonicalize(jsontext.CanonicalizeRawInts(false), jsontext.CanonicalizeRawFloats(false)); err != nil {
		return string(id)
	}
	return string(v)
}

// checkID checks v, the decoded value of the member that what names, which
// carries a JSON-RPC id, a request id or a progress token (MCP
// specification, schema.ts: RequestId and ProgressToken are each a string
// or an integer). Any string will do; a number must be an integer that every
// JSON reader reads alike (see isPortableInteger), since the gateway matches
// such ids to one another and an upstream must not read two of them as one,
// or one as two.
func checkID(what string, v any) *Error {
	switch v := v.(type) {
	case string:
		if len(v) > MaxIDLength {
			return invalidRequest("%s is a string of %d bytes; ids (and progress tokens) of at most %d bytes are accepted", what, len(v), MaxIDLength)
		}
		return nil
	case json.Number:
		if isPortableInteger(string(v)) {
			return nil
		}
		return invalidRequest("%s %s is a number that JSON readers may read differently: a numeric id must be an integer "+
			"from -%d to %d written without fraction, exponent or minus zero", what, v, maxIntegerID, maxIntegerID)
	}
	return invalidRequest("%s must be a string or an integer, not %s", what, TypeName(v))
}

// isPortableInteger reports whether n, a JSON number as written, is an
// integer that every JSON reader reads as the same integer: written as
// -?(0|[1-9][0-9]*), not -0, and at most maxIntegerID in magnitude. Readers
// disagree on every other number: 1.0 and 1e0 are the integer 1 to
// JavaScript, a float to Python, and are refused or truncated by others.
func isPortableInteger(n string) bool {
	digits := strings.TrimPrefix(n, "-")
	switch {
	case digits == "" || len(digits) > maxIntegerIDDigits:
		return false
	case digits[0] == '0':
		return n == "0"
	}
	for i := range len(digits) {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	return err == nil && v <= maxIntegerID
}

package mcpmsg

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// maxNumberLength bounds a number in a request's or a notification's
// params, in bytes: the longest a 64-bit float needs is 24 ("-2.2250738585072014e-308"),
// and a policy compares numbers as decimals, at a cost that grows with
// the square of their length.
const maxNumberLength = 128

// portableNumber reports whether every JSON reader reads the number text
// (a valid JSON number) as the same value: the policy reads numbers as
// exact decimals, while JavaScript, Go's map decoding (go-sdk's typed
// tools go through one) and Python's floats read them as the nearest
// 64-bit float. So a number passes when it is, exactly, the shortest
// decimal of its nearest float (0.1, 1.5, 1337, 1e300), or an integer
// that float holds exactly (1152921504606846976, 2^60), and fails when
// rounding would change it (1336.99999999999999 is 1337 upstream,
// 9007199254740993 is 9007199254740992, 1e-400 is 0, 1e400 is infinite):
// a rule on the exact value would decide another call than the one the
// upstream runs.
//
// Written here because no library compares a decimal text with a float's
// shortest form by value: strconv gives the float and its shortest text,
// and comparing the two as (sign, digits, exponent) is a few lines.
func portableNumber(text string) bool {
	if smallInteger(text) {
		return true
	}
	if len(text) > maxNumberLength {
		return false
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return false
	}
	var buf [32]byte
	if sameDecimal(text, string(strconv.AppendFloat(buf[:0], f, 'e', -1, 64))) {
		return true
	}
	// Or an integer that is the float's exact value (2^60 written out,
	// which every reader holds exactly though its shortest text is
	// 1.152921504606847e+18); the float of an integer text is an integer
	// too, written exactly with no fraction.
	return integerText(text) && sameDecimal(text, strconv.FormatFloat(f, 'f', 0, 64))
}

// integerText reports whether a JSON number text has neither a fraction
// nor an exponent.
func integerText(text string) bool {
	return !strings.ContainsAny(text, ".eE")
}

// smallInteger reports whether text is an integer of at most 15 digits,
// which every float reads exactly: the common case, answered without
// parsing.
func smallInteger(text string) bool {
	digits := text
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

// decimal is a number as sign, significant digits (no leading or
// trailing zeros) and the exponent of the last digit; zero has no digits
// and no sign.
type decimal struct {
	negative bool
	digits   string
	exponent int
}

// sameDecimal reports whether two JSON number texts (or strconv's 'e'
// format) denote the same value.
func sameDecimal(a, b string) bool {
	x, okA := parseDecimal(a)
	y, okB := parseDecimal(b)
	return okA && okB && x == y
}

// parseDecimal reads a JSON number text (or strconv's 'e' format) as a
// decimal; false when its exponent is out of any float's reach.
func parseDecimal(text string) (decimal, bool) {
	var d decimal
	s := text
	if s != "" && s[0] == '-' {
		d.negative, s = true, s[1:]
	}
	var digits []byte
	fraction := 0
	i := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digits = append(digits, s[i])
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digits = append(digits, s[i])
			fraction++
		}
	}
	exponent := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > 1000 || e < -1000 {
			return decimal{}, false
		}
		exponent = e
	}
	exponent -= fraction
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
	}
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exponent++
	}
	if len(digits) == 0 {
		return decimal{}, true
	}
	d.digits, d.exponent = string(digits), exponent
	return d, true
}

// unportableNumber is the refusal of a message whose params hold, at
// the JSON Pointer at, a number that readers read differently (see
// portableNumber).
func unportableNumber(text, at string) *Error {
	shown := text
	if len(shown) > 40 {
		shown = shown[:40] + "..."
	}
	rounded := "no finite number"
	// ParseFloat reads a long number in one pass, keeping the digits it
	// needs.
	if f, err := strconv.ParseFloat(text, 64); err == nil {
		// As JavaScript writes it: without an exponent from 1e-6 to 1e21.
		format := byte('g')
		if a := math.Abs(f); a == 0 || (a >= 1e-6 && a < 1e21) {
			format = 'f'
		}
		rounded = strconv.FormatFloat(f, format, -1, 64)
	}
	if len(text) > maxNumberLength {
		return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf(
			"the number %s in %s is %d characters long, and no 64-bit float needs more than %d (JavaScript and most MCP servers read %s): "+
				"send it as such a reader reads it, or as a string", shown, at, len(text), maxNumberLength, rounded)}
	}
	return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf(
		"the number %s in %s is not read alike by every JSON reader: one that uses 64-bit floats (JavaScript, most MCP servers) reads %s, "+
			"while the policy would decide on the number as written; send it as that reader reads it, or as a string", shown, at, rounded)}
}

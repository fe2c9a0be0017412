package mcpmsg

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// FoldName returns the form of a JSON member name under which names that
// some reader may take for one another are equal: its Unicode NFKC
// normalization, case-folded (full Unicode case folding), normalized again
// (folding can leave a letter and a combining mark that NFKC composes, as
// for "\u03aa\u0342" and "\u03ca\u0342", which encoding/json equates) and
// without surrounding white space.
//
// Readers merge names that differ. Go's encoding/json matches member names
// to struct fields case-insensitively, with simple Unicode folding, so that
// "Repo" and "REPO" fill the field "repo", "\u017fort" (with a long s)
// fills "sort", and "\u212a" (the Kelvin sign) fills "k". Other servers trim
// names, or normalise them to NFKC, which also maps fullwidth
// "\uff52\uff45\uff50\uff4f" to "repo". Names that FoldName keeps apart are
// kept apart by all these readers, with one exception that no fold can
// avoid: U+0345 (combining ypogegrammeni, which folds to the letter iota)
// next to another combining mark, where normalization reorders the marks
// but encoding/json compares rune by rune.
//
// CheckParams refuses params with two names that FoldName makes equal in
// one object, and a policy can use it to see argument names as an
// upstream might.
func FoldName(name string) string {
	if isFolded(name) {
		return name
	}
	folded := strings.Map(foldCherokee, cases.Fold().String(norm.NFKC.String(name)))
	return strings.TrimSpace(norm.NFKC.String(folded))
}

// foldCherokee maps a Cherokee letter to the capital letter that Unicode
// case folds it to (CaseFolding.txt: small Cherokee letters, added after
// the capitals, fold to them), and leaves other runes alone. It corrects
// golang.org/x/text/cases, whose Fold swaps capital and small Cherokee
// letters instead, so that it never makes them equal
// (https://go.dev/issue/46101).
func foldCherokee(r rune) rune {
	if unicode.Is(unicode.Cherokee, r) {
		return unicode.ToUpper(r)
	}
	return r
}

// isFolded reports, cheaply and without allocating, whether FoldName
// certainly leaves name as it is: ASCII without upper case letters or
// surrounding white space, which NFKC normalization and case folding both
// keep.
func isFolded(name string) bool {
	for i := range len(name) {
		if c := name[i]; c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return name == "" || !isTrimmed(name[0]) && !isTrimmed(name[len(name)-1])
}

// isTrimmed reports whether strings.TrimSpace removes the ASCII byte c.
func isTrimmed(c byte) bool {
	return c == ' ' || '\t' <= c && c <= '\r'
}

// CheckParams refuses the params of a request or a notification (from a
// client, or from a server: its requests, and those a result embeds) that
// readers may read apart from the policy: an object, at any depth, holding
// two member names that FoldName makes equal (the policy sees two members
// where a reader may see one, whose value depends on its decoder), or a
// number that 64-bit float readers read as another value (see
// portableNumber). method names the message in the error. Body.CheckParams
// checks the params of every request and notification of a body.
func CheckParams(method string, params map[string]any) *Error {
	found := findUnreadable(params)
	if found == nil {
		return nil
	}
	at := path{base: "/params"}
	for _, token := range slices.Backward(found.up) {
		at.push(token)
	}
	if found.number != "" {
		return unportableNumber(found.number, string(at.pointer()))
	}
	what := "member names"
	if method == "tools/call" && len(found.up) > 0 && found.up[len(found.up)-1] == "arguments" {
		what = "tools/call argument names"
	}
	return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf(
		"%s %q and %q in %s differ only by case, Unicode compatibility form or surrounding space: upstream servers may read them as one",
		what, found.a, found.b, at.pointer())}
}

// checkNestedNames refuses tool arguments whose objects below the top
// level hold a member name that full folding (FoldName) reads otherwise
// than lowercasing and trimming do ("\u017fort", "Stra\u00dfe",
// fullwidth letters): a policy folds nested names with Rego's lower and
// trim_space (the library's argument_member), since the gateway maps only the
// top-level names to their folded form (input.tool.argument_names), and
// an upstream that folds fully would read a member the policy did not
// see.
func checkNestedNames(args map[string]any) *Error {
	if !hasUnloweredName(args, true) {
		return nil // the common case, without allocating
	}
	// Found: the first in the order of names, the same on every run.
	at := path{base: "/params/arguments"}
	var walk func(v any) *Error
	walk = func(v any) *Error {
		switch v := v.(type) {
		case map[string]any:
			for _, name := range slices.Sorted(maps.Keys(v)) {
				if len(at.tokens) > 0 && unlowered(name) {
					return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf(
						"tools/call argument name %q in %s folds to %q, which lowercasing does not give: upstream servers may read it as that name, "+
							"and a policy cannot; spell it %q", name, at.pointer(), FoldName(name), FoldName(name))}
				}
				at.push(name)
				if err := walk(v[name]); err != nil {
					return err
				}
				at.pop()
			}
		case []any:
			for i, elem := range v {
				at.push(strconv.Itoa(i))
				if err := walk(elem); err != nil {
					return err
				}
				at.pop()
			}
		}
		return nil
	}
	return walk(args)
}

// path is where a walk of a JSON value is: the tokens of a JSON Pointer
// below base, kept as a stack, so that a walk deep in a large value does
// not copy its path at every level it visits (which made a 4 MB message
// 60 levels deep allocate 420 MB); the pointer is made once, for an
// error.
type path struct {
	base   jsontext.Pointer
	tokens []string
}

// push enters the member or element token.
func (p *path) push(token string) { p.tokens = append(p.tokens, token) }

// pop leaves the member or element entered last.
func (p *path) pop() { p.tokens = p.tokens[:len(p.tokens)-1] }

// pointer is the JSON Pointer to where the walk is, for an error
// message: made in one buffer (jsontext.Pointer.AppendToken copies the
// whole pointer for each token), each token cut to its first
// maxShownToken bytes and "…", so that a path of long names (up to the
// body's size) does not make a message as long.
func (p *path) pointer() string {
	var b strings.Builder
	b.WriteString(string(p.base))
	for _, token := range p.tokens {
		b.WriteByte('/')
		if len(token) > maxShownToken {
			cut := maxShownToken
			for cut > 0 && !utf8.RuneStart(token[cut]) {
				cut--
			}
			token = token[:cut] + "…"
		}
		pointerEscaper.WriteString(&b, token)
	}
	return b.String()
}

// maxShownToken is the most of a JSON Pointer token an error message
// shows.
const maxShownToken = 64

// pointerEscaper escapes a JSON Pointer's reference token (RFC 6901 §3).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// hasUnloweredName reports whether v holds, below the top level when top
// is set, a member name that unlowered finds.
func hasUnloweredName(v any, top bool) bool {
	switch v := v.(type) {
	case map[string]any:
		for name, member := range v {
			if (!top && unlowered(name)) || hasUnloweredName(member, false) {
				return true
			}
		}
	case []any:
		for _, elem := range v {
			if hasUnloweredName(elem, false) {
				return true
			}
		}
	}
	return false
}

// unlowered reports whether FoldName reads name otherwise than
// lowercasing and trimming it do.
func unlowered(name string) bool {
	return !isFolded(name) && FoldName(name) != strings.ToLower(strings.TrimSpace(name))
}

// CheckParams refuses a body whose requests or notifications hold params
// that readers may read apart from the policy (see CheckParams): what a
// policy decides on. The gateway checks a client's bodies so; a server's
// requests it checks one by one as it decides them, and a server's
// notifications, which no policy decides, not at all (refusing them
// would cut the stream that carries them, and the answers after).
func (b *Body) CheckParams() error {
	for i := range b.Messages {
		m := &b.Messages[i]
		if m.Kind == KindResponse {
			continue
		}
		if err := CheckParams(m.Method, m.Params); err != nil {
			if b.Batch {
				err.Message = fmt.Sprintf("batch element %d: %s", i, err.Message)
			} else if m.Kind == KindRequest {
				err.ID = m.ID
			}
			return err
		}
	}
	return nil
}

// unreadable is what findUnreadable finds: two member names of one object
// that FoldName makes equal, a before b, or a number that float readers
// read as another value; and where it lies.
type unreadable struct {
	a, b   string
	number string
	// up are the tokens of the JSON Pointer to the object (or the
	// number) from where the search began, innermost first.
	up []string
}

// findUnreadable returns what readers may read apart in v (see
// CheckParams); nil when there is nothing. Whatever the order of map
// iteration, it finds the same thing: an object's own names before its
// members, members in the order of their names, and array elements in
// order.
func findUnreadable(v any) *unreadable {
	switch v := v.(type) {
	case map[string]any:
		if a, b, ok := collidingNames(v); ok {
			return &unreadable{a: a, b: b}
		}
		var found *unreadable
		var at string
		for name, member := range v {
			if found != nil && name > at {
				continue
			}
			if m := findUnreadable(member); m != nil {
				found, at = m, name
			}
		}
		if found != nil {
			found.up = append(found.up, at)
		}
		return found
	case []any:
		for i, elem := range v {
			if m := findUnreadable(elem); m != nil {
				m.up = append(m.up, strconv.Itoa(i))
				return m
			}
		}
	case json.Number:
		if !portableNumber(string(v)) {
			return &unreadable{number: string(v)}
		}
	}
	return nil
}

// maxPairwise is the most members of an object whose ASCII names
// asciiCollision compares pair by pair.
const maxPairwise = 32

// asciiCollision reports, without allocating, whether two of an object's
// names, all ASCII, fold alike: for ASCII, FoldName is lowercasing and
// trimming, which strings.EqualFold and strings.TrimSpace compare in
// place. (camelCase names such as "progressToken" are not folded, and
// would otherwise cost a sort and a fold each.)
func asciiCollision(obj map[string]any) bool {
	for a := range obj {
		if isFolded(a) {
			continue
		}
		for b := range obj {
			if a != b && strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b)) {
				return true
			}
		}
	}
	return false
}

// isASCII reports whether name is ASCII.
func isASCII(name string) bool {
	for i := range len(name) {
		if name[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// collidingNames returns the first two member names of obj, in sorted
// order, that FoldName makes equal; ok is false when there are none. It
// allocates only when some name is not already folded.
func collidingNames(obj map[string]any) (a, b string, ok bool) {
	// Member names are distinct, so two can collide only when folding
	// changes one of them.
	unfolded, ascii := false, true
	for name := range obj {
		unfolded = unfolded || !isFolded(name)
		ascii = ascii && isASCII(name)
	}
	if !unfolded || ascii && len(obj) <= maxPairwise && !asciiCollision(obj) {
		return "", "", false
	}
	first := make(map[string]string, len(obj))
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		folded := FoldName(name)
		if earlier, seen := first[folded]; seen {
			return earlier, name, true
		}
		first[folded] = name
	}
	return "", "", false
}

package replyfilter

import (
	"bytes"
	"fmt"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// privateScope is the cacheScope value PrivateCacheScope gives.
const privateScope = `"private"`

// PrivateCacheScope returns result, a result object as Parse accepted it,
// with its cache scope (MCP 2026-07-28's cacheScope, beside ttlMs) set to
// "private": only the requesting user's client may cache it, where
// "public", or no cacheScope at all, lets any client or intermediary
// cache it and serve it to others. Every member whose name folds to
// cacheScope (as Go's encoding/json matches names: "CacheScope",
// "cacheſcope") is set, so that no reader finds another value; with add,
// a result naming none gets one, first. Anything else is left as the
// server wrote it, and result itself is returned when nothing changes.
func PrivateCacheScope(result []byte, add bool) ([]byte, error) {
	if !add && !MayName(result, "cacheScope") {
		return result, nil
	}
	dec := jsontext.NewDecoder(bytes.NewReader(result), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if dec.PeekKind() != '{' {
		return result, nil
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, fmt.Errorf("reading the result's cache scope: %w", err)
	}
	open := dec.InputOffset()
	type span struct{ start, end int64 }
	var scopes []span
	private := true
	for dec.PeekKind() == '"' {
		token, err := dec.ReadToken()
		if err != nil {
			return nil, fmt.Errorf("reading the result's cache scope: %w", err)
		}
		// (A token is valid only until the next read.)
		name := token.String()
		value, err := dec.ReadValue()
		if err != nil {
			return nil, fmt.Errorf("reading the result's cache scope: %w", err)
		}
		if strings.EqualFold(name, "cacheScope") {
			end := dec.InputOffset()
			scopes = append(scopes, span{end - int64(len(value)), end})
			var scope string
			if jsonv2.Unmarshal(value, &scope) != nil || scope != "private" {
				private = false
			}
		}
	}
	switch {
	case len(scopes) == 0 && add:
		members := `"cacheScope":` + privateScope
		if dec.PeekKind() != '}' {
			// Unreachable for a result Parse accepted: every member was read.
			return nil, fmt.Errorf("reading the result's cache scope: unexpected %v", dec.PeekKind())
		}
		if rest := bytes.TrimLeft(result[open:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
			members += ","
		}
		out := make([]byte, 0, len(result)+len(members))
		out = append(out, result[:open]...)
		out = append(out, members...)
		return append(out, result[open:]...), nil
	case len(scopes) == 0 || private:
		return result, nil
	}
	out := make([]byte, 0, len(result)+len(privateScope))
	last := int64(0)
	for _, s := range scopes {
		out = append(out, result[last:s.start]...)
		out = append(out, privateScope...)
		last = s.end
	}
	return append(out, result[last:]...), nil
}

// MayName reports whether body may hold a member named name as some
// reader reads names: quoted in any ASCII case, or spelt with an escape
// or with a letter other than ASCII that Go's encoding/json folds to one.
// A body it says no of holds none, and need not be read for it.
func MayName(body []byte, name string) bool {
	return bytes.Contains(body, []byte(`\u`)) || bytes.Contains(body, longS) || bytes.Contains(body, kelvinSign) || namesMember(body, name)
}

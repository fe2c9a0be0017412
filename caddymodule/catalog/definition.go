package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// hashedFields are the members of a tool object that make up its definition
// for DefinitionHash: what a model reads to choose and call the tool, and the
// hints a policy reads. Other members (_meta, icons, and any the
// specification adds later) do not count, so a server may change them without
// the tool being blocked as changed.
var hashedFields = []string{"name", "title", "description", "inputSchema", "outputSchema", "annotations"}

// toolMembers and annotationMembers are the members of a tool (and of its
// annotations) that clients and the gateway read (MCP specification,
// schema.ts: Tool, ToolAnnotations).
var (
	toolMembers       = append([]string{"_meta", "icons"}, hashedFields...)
	annotationMembers = []string{"title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"}
)

// listMembers are the members of a tools/list result that clients and
// the gateway read.
var listMembers = []string{"tools", "nextCursor"}

// MayBeToolsList reports whether a result could be read as a tools/list
// result by some client: it has a member named "tools" in any case (as
// Go's encoding/json matches names, "Tools" and "tool\u017f" too).
// ParseToolsList then reads it, or refuses it.
func MayBeToolsList(result []byte) bool {
	var members map[string]jsontext.Value
	if err := jsonv2.Unmarshal(result, &members); err != nil {
		return false
	}
	_, _, found := mcpmsg.CaseVariant(members, "tools")
	_, exact := members["tools"]
	return found || exact
}

// checkCase refuses a member whose name differs from one of known only by
// case (see mcpmsg.CaseVariant): a client that reads names
// case-insensitively (Go's encoding/json) would read it as that member,
// which the gateway does not (it reads names exactly): the tool it hides or
// hashes would not be the one the client sees.
func checkCase(members map[string]jsontext.Value, known []string, where string) error {
	if name, of, found := mcpmsg.CaseVariant(members, known...); found {
		return fmt.Errorf("%smember %q differs from %q only by case", where, name, of)
	}
	return nil
}

// ParseToolsList reads the result of a tools/list response
// ({"tools":[...],"nextCursor":...}; MCP specification, server/tools,
// "Listing Tools") and returns its tools, each as the raw object the server
// sent, their names (in the same order), and the cursor of the next page
// ("" on the last page).
//
// It is strict, so that the gateway never reads a list differently from the
// client: the result must be a JSON object without duplicate member names at
// any depth, tools an array of objects each with a non-empty string name and
// no member (of its own or of its annotations) that differs from a known one
// only by case, and nextCursor, when present, a string.
func ParseToolsList(result []byte) (tools []json.RawMessage, names []string, nextCursor string, err error) {
	var members map[string]jsontext.Value
	if err := jsonv2.Unmarshal(result, &members); err != nil {
		return nil, nil, "", fmt.Errorf("parsing tools/list result: %w", err)
	}
	if members == nil {
		return nil, nil, "", errors.New("parsing tools/list result: not an object")
	}
	if err := checkCase(members, listMembers, ""); err != nil {
		return nil, nil, "", fmt.Errorf("parsing tools/list result: %w", err)
	}
	list, ok := members["tools"]
	if !ok || list.Kind() != '[' {
		return nil, nil, "", errors.New("parsing tools/list result: tools is not an array")
	}
	var raws []jsontext.Value
	if err := jsonv2.Unmarshal(list, &raws); err != nil {
		return nil, nil, "", fmt.Errorf("parsing tools/list result: %w", err)
	}
	tools = make([]json.RawMessage, len(raws))
	names = make([]string, len(raws))
	for i, raw := range raws {
		_, name, err := decodeTool(raw)
		if err != nil {
			return nil, nil, "", fmt.Errorf("parsing tools/list result: tool %d: %w", i, err)
		}
		tools[i], names[i] = json.RawMessage(raw), name
	}
	if cursor, ok := members["nextCursor"]; ok {
		if cursor.Kind() != '"' {
			return nil, nil, "", errors.New("parsing tools/list result: nextCursor is not a string")
		}
		if err := jsonv2.Unmarshal(cursor, &nextCursor); err != nil {
			return nil, nil, "", fmt.Errorf("parsing tools/list result: nextCursor: %w", err)
		}
	}
	return tools, names, nextCursor, nil
}

// DefinitionHash returns the hex SHA-256 of a tool's canonical definition.
//
// The definition is the tool object restricted to name, title, description,
// inputSchema, outputSchema and annotations; other members are left out. It
// is canonicalised as RFC 8785 (JSON Canonicalization Scheme) describes,
// but for numbers: members sorted by name at every depth, no whitespace, and
// strings in their shortest escaping, so that neither member order nor
// formatting changes the hash. Every number is kept exactly as written
// rather than rounded to float64 (as RFC 8785 would), so that no two
// numbers that a reader could tell apart share a hash: not 9007199254740993
// and 9007199254740992, nor 1e400 and 1e401, nor 1.0 and 1. A member
// present as null hashes differently from one that is absent.
//
// The tool must be a JSON object without duplicate member names at any depth
// and with a non-empty string name.
func DefinitionHash(tool json.RawMessage) (string, error) {
	members, _, err := decodeTool(tool)
	if err != nil {
		return "", fmt.Errorf("hashing tool definition: %w", err)
	}
	return definitionHash(members)
}

// definitionHash is DefinitionHash over a tool's decoded members.
func definitionHash(members map[string]jsontext.Value) (string, error) {
	def := make(map[string]jsontext.Value, len(hashedFields))
	for _, field := range hashedFields {
		if v, ok := members[field]; ok {
			def[field] = v
		}
	}
	b, err := jsonv2.Marshal(def)
	if err != nil {
		return "", fmt.Errorf("hashing tool definition: %w", err)
	}
	canonical := jsontext.Value(b)
	if err := canonical.Canonicalize(jsontext.CanonicalizeRawInts(false), jsontext.CanonicalizeRawFloats(false)); err != nil {
		return "", fmt.Errorf("hashing tool definition: %w", err)
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

// decodeTool decodes a tool object into its members and returns its name.
// Decoding rejects duplicate member names at any depth and invalid UTF-8.
func decodeTool(raw []byte) (members map[string]jsontext.Value, name string, err error) {
	if err := jsonv2.Unmarshal(raw, &members); err != nil {
		return nil, "", err
	}
	if members == nil {
		return nil, "", errors.New("not an object")
	}
	if err := checkCase(members, toolMembers, ""); err != nil {
		return nil, "", err
	}
	if v, ok := members["annotations"]; ok && v.Kind() == '{' {
		var annotations map[string]jsontext.Value
		if err := jsonv2.Unmarshal(v, &annotations); err != nil {
			return nil, "", fmt.Errorf("annotations: %w", err)
		}
		if err := checkCase(annotations, annotationMembers, "annotations "); err != nil {
			return nil, "", err
		}
	}
	v, ok := members["name"]
	if !ok || v.Kind() != '"' {
		return nil, "", errors.New("name is not a string")
	}
	if err := jsonv2.Unmarshal(v, &name); err != nil {
		return nil, "", fmt.Errorf("name: %w", err)
	}
	if name == "" {
		return nil, "", errors.New("name is empty")
	}
	return members, name, nil
}

// describe returns what the catalog records of one listed tool; Changed is
// left for Lookup to work out against the pins.
func describe(raw json.RawMessage) (Tool, error) {
	members, name, err := decodeTool(raw)
	if err != nil {
		return Tool{}, err
	}
	hash, err := definitionHash(members)
	if err != nil {
		return Tool{}, err
	}
	annotations := map[string]any{}
	if v, ok := members["annotations"]; ok && v.Kind() == '{' {
		if err := jsonv2.Unmarshal(v, &annotations); err != nil {
			return Tool{}, fmt.Errorf("annotations: %w", err)
		}
	}
	return Tool{
		Name:        name,
		Annotations: annotations,
		Category:    CategoryOf(annotations),
		Hash:        hash,
		Definition:  bytes.Clone(raw),
	}, nil
}

// describeAll describes every tool of a list, by name.
//
// A name listed more than once with different definitions is ambiguous: the
// client may use any of them. The catalog then keeps the most cautious
// listing (by category; the first of equals) and gives it a hash over all
// of the listings' hashes, in order, so that a change to any of them, or to
// their order, makes the tool Changed; its Definition is then every
// listing, in order, as a JSON array: what an operator accepting that hash
// accepts.
func describeAll(raws []json.RawMessage) (map[string]Tool, error) {
	tools := make(map[string]Tool, len(raws))
	// listings are the definitions each merged hash covers, kept for the
	// names listed more than once only.
	listings := map[string][][]byte{}
	for i, raw := range raws {
		t, err := describe(raw)
		if err != nil {
			return nil, fmt.Errorf("tool %d: %w", i, err)
		}
		if prev, ok := tools[t.Name]; ok && prev.Hash != t.Hash {
			if listings[t.Name] == nil {
				listings[t.Name] = [][]byte{prev.Definition}
			}
			listings[t.Name] = append(listings[t.Name], t.Definition)
			hash := sha256.Sum256([]byte(prev.Hash + "\n" + t.Hash))
			if !t.Category.moreCautious(prev.Category) {
				t = prev
			}
			t.Hash = hex.EncodeToString(hash[:])
		}
		tools[t.Name] = t
	}
	for name, definitions := range listings {
		t := tools[name]
		t.Definition = append(append([]byte("["), bytes.Join(definitions, []byte(","))...), ']')
		tools[name] = t
	}
	return tools, nil
}

// Package tooloverride renames a server's tools and replaces their
// descriptions and titles as clients see them, as ToolHive's
// --tools-override does:
// a tool called "search_issues_v2" upstream may be offered as
// "search_issues", with a description written for the organization's
// assistants. Everything behind the gateway's edge keeps the server's own
// names: the policy and the permissions table decide, approvals show,
// logs and metrics count, and the server runs the tool by the name the
// server gave it. Only what the client reads (a tools list) and sends (a
// tools/call) are translated, both ways, here.
package tooloverride

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Override is what clients see of one tool in place of what the server
// lists: its name, its description, its title, or several (an empty
// field leaves the server's).
type Override struct {
	// Name is the name clients see and call the tool by: 1 to 128
	// letters, digits, "_", "-" and ".", as the MCP specification
	// (2025-11-25, server/tools, "Tool Names") advises.
	Name string `json:"name,omitempty"`
	// Description replaces the tool's description.
	Description string `json:"description,omitempty"`
	// Title replaces the tool's display name, which clients show in its
	// name's stead: its title, and its annotations' title where it has
	// one (2025-03-26 put it there).
	Title string `json:"title,omitempty"`
}

// Set is a configuration's overrides, by the server's tool names, checked
// by New. A nil *Set overrides nothing.
type Set struct {
	byUpstream map[string]Override
	// upstreamOf maps each name a tool is renamed to to the tool's name
	// upstream.
	upstreamOf map[string]string
}

// validName is what the MCP specification advises a tool's name to be
// (2025-11-25, server/tools, "Tool Names"): what the gateway offers
// clients holds to it, whatever the server's own names do.
var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// New checks overrides, by the server's tool names, and returns them as
// a Set: each names a tool and overrides its name, its description, its
// title or several; a new name is one the specification advises; and no
// two tools are offered under one name, or names that differ only by
// case, whether both are renamed to it or one keeps it as its own. (A
// tool of the server's that is not overridden and has a name another
// tool is renamed to is hidden: see Expose. Which tools the server lists
// is not known until it lists them.) nil when there are none.
func New(overrides map[string]Override) (*Set, error) {
	if len(overrides) == 0 {
		return nil, nil
	}
	s := &Set{byUpstream: maps.Clone(overrides), upstreamOf: make(map[string]string)}
	var problems []error
	upstreams := slices.Sorted(maps.Keys(overrides))
	for _, upstream := range upstreams {
		o := overrides[upstream]
		switch {
		case upstream == "":
			problems = append(problems, errors.New("an override names no tool"))
		case o.Name == "" && o.Description == "" && o.Title == "":
			problems = append(problems, fmt.Errorf("the override of tool %q changes neither its name, its description nor its title", upstream))
		case o.Name != "" && !validName.MatchString(o.Name):
			problems = append(problems, fmt.Errorf("tool %q is renamed to %q: a tool's name must be 1 to 128 letters, digits, \"_\", \"-\" or \".\"", upstream, o.Name))
		case o.Name != "":
			if other, taken := s.upstreamOf[o.Name]; taken {
				problems = append(problems, fmt.Errorf("tools %q and %q are both renamed to %q", other, upstream, o.Name))
				continue
			}
			s.upstreamOf[o.Name] = upstream
		}
	}
	// Names that differ only by case are one to a client or a model that
	// matches names so (and to the gateway's own reading of member
	// names); a name kept is a tool's overridden with a description alone.
	exposed := slices.Sorted(maps.Keys(s.upstreamOf))
	for i, name := range exposed {
		upstream := s.upstreamOf[name]
		for _, other := range exposed[i+1:] {
			if strings.EqualFold(name, other) {
				problems = append(problems, fmt.Errorf("tools %q and %q are renamed to %q and %q, which differ only by case", upstream, s.upstreamOf[other], name, other))
			}
		}
		for _, kept := range upstreams {
			if overrides[kept].Name != "" || kept == upstream {
				continue
			}
			if strings.EqualFold(name, kept) {
				problems = append(problems, fmt.Errorf("tool %q is renamed to %q, which tool %q keeps as its own name, but for case (rename it too)", upstream, name, kept))
			}
			if strings.EqualFold(upstream, kept) {
				problems = append(problems, fmt.Errorf("tool %q keeps its name, which differs only by case from that of tool %q, renamed to %q (rename it too)", kept, upstream, name))
			}
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("tool overrides: %w", err)
	}
	return s, nil
}

// Upstream returns the server's name of the tool a client calls by
// name, and whether the gateway offers a tool of that name: a tool
// renamed is called by its new name alone, so that its old name (which
// the client was never shown, and which another tool may be renamed to)
// offers nothing; nor does the name of a tool Expose hides.
func (s *Set) Upstream(name string) (upstream string, offered bool) {
	if s == nil {
		return name, true
	}
	if upstream, renamed := s.upstreamOf[name]; renamed {
		return upstream, true
	}
	if s.byUpstream[name].Name != "" || s.shadows(name) {
		// A renamed tool's old name, or a tool whose name differs only
		// by case from one a tool is renamed to (which Expose hides).
		return "", false
	}
	return name, true
}

// Expose returns tool, the definition a server listed under name, as
// clients are to see it: renamed, described and titled as overridden, or
// as it came. hidden reports a tool that keeps a name another tool is
// renamed to, or one that differs from it, or from a renamed tool's old
// name, only by case (see shadows): calls of that name reach the other,
// or are refused, so the list does not offer it.
// A definition that is no JSON object is returned with an error.
func (s *Set) Expose(tool json.RawMessage, name string) (exposed json.RawMessage, hidden bool, err error) {
	if s == nil {
		return tool, false, nil
	}
	o, overridden := s.byUpstream[name]
	if (!overridden || o.Name == "") && s.shadows(name) {
		return nil, true, nil
	}
	if !overridden {
		return tool, false, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(tool, &members); err != nil || members == nil {
		return nil, false, fmt.Errorf("overriding tool %q: its definition is not an object", name)
	}
	for member, value := range map[string]string{"name": o.Name, "description": o.Description, "title": o.Title} {
		if value == "" {
			continue
		}
		if members[member], err = json.Marshal(value); err != nil {
			return nil, false, fmt.Errorf("overriding tool %q: %w", name, err)
		}
	}
	if o.Title != "" && members["annotations"] != nil {
		var annotations map[string]json.RawMessage
		if err := json.Unmarshal(members["annotations"], &annotations); err == nil && annotations["title"] != nil {
			annotations["title"] = members["title"]
			if members["annotations"], err = json.Marshal(annotations); err != nil {
				return nil, false, fmt.Errorf("overriding tool %q: %w", name, err)
			}
		}
	}
	if exposed, err = json.Marshal(members); err != nil {
		return nil, false, fmt.Errorf("overriding tool %q: %w", name, err)
	}
	return exposed, false, nil
}

// shadows reports whether a tool is renamed to name, or to a name that
// differs from it only by case, or whether name differs only by case
// from a renamed tool's old name (a server that matches names in any
// case would run that tool by it).
func (s *Set) shadows(name string) bool {
	if _, renamed := s.upstreamOf[name]; renamed {
		return true
	}
	for exposed, upstream := range s.upstreamOf {
		if strings.EqualFold(exposed, name) || upstream != name && strings.EqualFold(upstream, name) {
			return true
		}
	}
	return false
}

// Equal reports whether two sets override the same tools alike (nil
// sets, none).
func (s *Set) Equal(other *Set) bool {
	if s == nil || other == nil {
		return s == other
	}
	return maps.Equal(s.byUpstream, other.byUpstream)
}

// Tools returns the server's names of the tools overridden, sorted.
func (s *Set) Tools() []string {
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.byUpstream))
}

// Package catalog knows what each upstream MCP server's tools are, as the
// gateway last saw them in tools/list: their annotations, their category
// (read_only, write or destructive) and a hash of each definition. It pins
// definitions on first use and reports a tool whose definition has changed
// since (a "rug pull") until an operator accepts the new one.
//
// The package works on raw JSON and knows nothing of Caddy or OPA.
package catalog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// ErrUnknownTool is returned by Accept for a tool the catalog has not seen
// listed.
var ErrUnknownTool = errors.New("unknown tool")

// Tool is what the catalog knows of one tool. Its Annotations and
// Definition are shared with the catalog and must not be modified.
type Tool struct {
	// Name is the tool's name.
	Name string
	// Annotations are the tool's annotations as listed; empty, not nil,
	// when it had none (or they were not an object).
	Annotations map[string]any
	// Category is CategoryOf(Annotations).
	Category Category
	// Hash is DefinitionHash of the tool as listed. For a name listed more
	// than once with different definitions it is a hash over all of them
	// (see Learn).
	Hash string
	// Changed reports that Hash differs from the pinned (accepted) hash.
	Changed bool
	// Definition is the tool object as listed.
	Definition json.RawMessage
}

// ServerTool is a tool and the upstream server that lists it.
type ServerTool struct {
	// Server is the upstream server's name, as given to Learn.
	Server string
	Tool
}

// Catalog holds what is known of every upstream server's tools and their
// pins. It is safe for concurrent use.
type Catalog struct {
	store PinStore

	// pinMu is held while pins are decided and saved, so that the store
	// sees them in the order the catalog made them, without holding mu
	// (and so blocking Lookup) during the store's I/O.
	pinMu sync.Mutex

	mu      sync.RWMutex
	servers map[string]*server
	pins    map[string]map[string]string
	// generations counts each server's Forget calls, so that a list
	// fetched before a change is not taken as current (see Generation).
	generations map[string]uint64

	// rechecked is when each changed tool's pin was last read again from
	// the store (see Recheck), keyed by server and tool name.
	recheckMu sync.Mutex
	rechecked map[[2]string]time.Time
}

// RecheckInterval is how often, at most, Recheck reads a changed tool's
// pin from the store again.
const RecheckInterval = time.Second

// server is what the catalog knows of one upstream server. Its tools are
// stored with Changed unset; Lookup works it out.
type server struct {
	tools map[string]Tool
	// listed reports that a full list has been learned since the server
	// was last forgotten.
	listed bool
	// asOf is the generation the last full list was requested at.
	asOf uint64
}

// New returns a catalog with the pins in store, which keeps the pins it
// makes from then on.
func New(ctx context.Context, store PinStore) (*Catalog, error) {
	pins, err := store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading tool pins: %w", err)
	}
	if pins == nil {
		pins = map[string]map[string]string{}
	}
	return &Catalog{store: store, servers: map[string]*server{}, pins: pins, generations: map[string]uint64{}, rechecked: map[[2]string]time.Time{}}, nil
}

// Learn records a server's full tool list (every page of a tools/list, in
// order, as ParseToolsList returns them), replacing all that was known of
// the server's tools, and marks the list current (see Stale) unless the
// server was forgotten since asOf, the Generation read before the list was
// requested: a list the server announced changed while it was on its way is
// recorded, but stays stale, so that the next lookup fetches it again. A
// list requested before the one already recorded (two fetches crossing) is
// older than it, and changes nothing.
//
// The server's pins are read from the store first, so that what another
// gateway sharing the store pinned or accepted holds here too. A tool
// never pinned before is pinned to its hash, trusting it on first use,
// unless another gateway pinned it first (see PinStore.PinFirst). A
// pinned tool whose hash differs is Changed, and its pin is kept until
// Accept. A name listed more than once with different definitions is
// recorded once, from its most cautious listing, with a hash over all of
// its listings in order, so that a change to any of them is a change.
//
// A tool that cannot be read is an error, and nothing is recorded. An error
// reading or saving pins is returned once everything is recorded: the pins
// already in memory stand, and a new pin holds in memory regardless, so
// the tool's changes are still caught until the process ends.
func (c *Catalog) Learn(ctx context.Context, server string, tools []json.RawMessage, asOf uint64) error {
	return c.learn(ctx, server, tools, true, asOf)
}

// Generation returns how many times a server's list has been forgotten: read
// it before requesting a list, and give it to Learn.
func (c *Catalog) Generation(server string) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.generations[server]
}

// LearnPage records one page of a server's tool list like Learn, but
// without forgetting the server's tools that the page does not list, and
// without marking the list current.
func (c *Catalog) LearnPage(ctx context.Context, server string, tools []json.RawMessage) error {
	return c.learn(ctx, server, tools, false, 0)
}

// learn implements Learn (full) and LearnPage.
func (c *Catalog) learn(ctx context.Context, name string, raws []json.RawMessage, full bool, asOf uint64) error {
	listed, err := describeAll(raws)
	if err != nil {
		return fmt.Errorf("learning tools of server %q: %w", name, err)
	}

	c.pinMu.Lock()
	defer c.pinMu.Unlock()

	var errs []error
	stored, err := c.store.Pins(ctx, name)
	if err != nil {
		errs = append(errs, fmt.Errorf("reading pins of server %q: %w", name, err))
	}

	c.mu.Lock()
	s := c.servers[name]
	if full && s != nil && asOf < s.asOf {
		c.mu.Unlock()
		return errors.Join(errs...)
	}
	if s == nil || full {
		s = &server{tools: map[string]Tool{}, asOf: asOf}
		c.servers[name] = s
	}
	if full {
		s.listed = c.generations[name] == asOf
	}
	pins := c.pins[name]
	if pins == nil {
		pins = map[string]string{}
		c.pins[name] = pins
	}
	maps.Copy(pins, stored)
	var unpinned []Tool
	for _, t := range listed {
		s.tools[t.Name] = t
		if _, ok := pins[t.Name]; !ok {
			// Trusted on first use at once, so that the calls that
			// follow this list are decided by it; corrected below if
			// another gateway pinned the tool between the read above and
			// the store's answer.
			pins[t.Name] = t.Hash
			unpinned = append(unpinned, t)
		}
	}
	c.mu.Unlock()

	slices.SortFunc(unpinned, func(a, b Tool) int { return cmp.Compare(a.Name, b.Name) })
	for _, t := range unpinned {
		pin, err := c.store.PinFirst(ctx, name, t.Name, t.Hash)
		if err != nil {
			errs = append(errs, fmt.Errorf("pinning tool %q of server %q: %w", t.Name, name, err))
			continue
		}
		if pin != t.Hash {
			c.mu.Lock()
			pins[t.Name] = pin
			c.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// Lookup returns what is known of a server's tool, and whether it is known
// at all. A tool the catalog has not seen listed is, by the MCP defaults,
// Destructive; callers choose what that means.
func (c *Catalog) Lookup(server, name string) (Tool, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.lookup(server, name)
}

// lookup implements Lookup; c.mu must be held.
func (c *Catalog) lookup(server, name string) (Tool, bool) {
	s := c.servers[server]
	if s == nil {
		return Tool{}, false
	}
	t, ok := s.tools[name]
	if !ok {
		return Tool{}, false
	}
	pin, pinned := c.pins[server][name]
	t.Changed = !pinned || pin != t.Hash
	return t, true
}

// Recheck returns what is known of a server's tool like Lookup, after
// reading its pin from the store again if it is Changed, so that a new
// definition an operator accepted through another gateway sharing the
// store is accepted here too. It reads the store at most once per
// RecheckInterval for each tool; if the store cannot be read, the pin in
// memory stands.
func (c *Catalog) Recheck(ctx context.Context, server, name string) (Tool, bool) {
	t, ok := c.Lookup(server, name)
	if !ok || !t.Changed {
		return t, ok
	}
	key, now := [2]string{server, name}, time.Now()
	c.recheckMu.Lock()
	due := now.Sub(c.rechecked[key]) >= RecheckInterval
	if due {
		c.rechecked[key] = now
	}
	c.recheckMu.Unlock()
	if !due {
		return t, ok
	}
	stored, err := c.store.Pins(ctx, server)
	pin, pinned := stored[name]
	if err != nil || !pinned {
		return t, ok
	}
	c.mu.Lock()
	if c.pins[server] == nil {
		c.pins[server] = map[string]string{}
	}
	c.pins[server][name] = pin
	t, ok = c.lookup(server, name)
	c.mu.Unlock()
	return t, ok
}

// Accept pins a server's tool to its current definition, as an operator
// does to approve a changed definition, and saves the pin. The pin changes
// only once saved. A tool the catalog has not seen listed is
// ErrUnknownTool.
func (c *Catalog) Accept(ctx context.Context, server, name string) error {
	c.pinMu.Lock()
	defer c.pinMu.Unlock()

	c.mu.RLock()
	t, ok := c.lookup(server, name)
	c.mu.RUnlock()
	if !ok {
		return fmt.Errorf("accepting tool %q of server %q: %w", name, server, ErrUnknownTool)
	}
	if err := c.store.Save(ctx, server, name, t.Hash); err != nil {
		return fmt.Errorf("accepting tool %q of server %q: %w", name, server, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pins[server] == nil {
		c.pins[server] = map[string]string{}
	}
	c.pins[server][name] = t.Hash
	return nil
}

// Tools lists what is known of a server's tools, or of every server's when
// server is "", sorted by server and then tool name.
func (c *Catalog) Tools(server string) []ServerTool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var list []ServerTool
	for sname, s := range c.servers {
		if server != "" && sname != server {
			continue
		}
		for name := range s.tools {
			t, _ := c.lookup(sname, name)
			list = append(list, ServerTool{Server: sname, Tool: t})
		}
	}
	slices.SortFunc(list, func(a, b ServerTool) int {
		return cmp.Or(cmp.Compare(a.Server, b.Server), cmp.Compare(a.Name, b.Name))
	})
	return list
}

// Forget marks a server's tool list stale, as a
// notifications/tools/list_changed from it calls for. What was known of its
// tools is kept, for Lookup, until the next Learn.
func (c *Catalog) Forget(server string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generations[server]++
	if s := c.servers[server]; s != nil {
		s.listed = false
	}
}

// Stale reports whether a server's tool list should be fetched before a
// Lookup miss is taken as final: no full list of it has been learned, or it
// has been forgotten since.
func (c *Catalog) Stale(server string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := c.servers[server]
	return s == nil || !s.listed
}

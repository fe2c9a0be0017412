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

// ErrOtherDefinition is returned by Accept when the tool's current
// definition is not the one the operator reviewed.
var ErrOtherDefinition = errors.New("the tool's current definition is not the one reviewed")

// storeTimeout bounds each read and write of the pin store. The store's
// work outlives the request that brought a list: a pin left half made
// because a client went away would never be made.
const storeTimeout = 5 * time.Second

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
	// Definition is the tool object as listed; for a name listed more
	// than once with different definitions, every listing, in order, as
	// a JSON array (what Hash covers).
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
	// epochs is, by server, the configuration whose list the catalog
	// keeps (see Reset).
	epochs map[string]uint64

	// rechecked is when each changed tool's pin was last read again from
	// the store (see Recheck), keyed by server and tool name; a key with
	// an empty tool name is for a whole list (see learn).
	recheckMu sync.Mutex
	rechecked map[[2]string]time.Time

	// maxListAge is MaxListAge, unless SetMaxListAge changed it.
	maxListAge time.Duration

	// now reads the clock (time.Now; the tests' own).
	now func() time.Time
}

// maxRechecked bounds the times kept for Recheck: past it they are
// forgotten, which at worst lets one more read through per tool.
const maxRechecked = 10_000

// MaxTools is the most tools a server may list: every one is hashed and
// pinned (a write to the pin store each, the first time), and a server
// inventing names with each list would make the pins grow for good. MCP
// servers list tens of tools; clients cannot offer a model thousands.
const MaxTools = 2000

// MaxPins is the most tool names the gateway pins for a server, over
// time: each pin is kept for good (in memory, and written with the rest
// of the server's pins), so a server listing new names with each list
// would grow them without end. Past it, the tools a list names that were
// never pinned are not pinned (and so are changed, refused).
const MaxPins = 10 * MaxTools

// pinCount returns how many tools a server has pinned, here or in the
// store, once those listed are.
func pinCount(held, stored map[string]string, listed map[string]Tool) int {
	n := len(held)
	for tool := range stored {
		if _, ok := held[tool]; !ok {
			n++
		}
	}
	for tool := range listed {
		_, isHeld := held[tool]
		_, isStored := stored[tool]
		if !isHeld && !isStored {
			n++
		}
	}
	return n
}

// tooManyTools is the error of a server that lists more than MaxTools.
func tooManyTools(server string) error {
	return fmt.Errorf("learning tools of server %q: it lists more than %d tools, more than the gateway keeps (and pins) for a server", server, MaxTools)
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
	// learned is when the last full list was learned, started when its
	// fetch started.
	learned, started time.Time
	// dropped are the tools the list held before a renewal, that the
	// renewal did not list (see Dropped).
	dropped map[string]bool
}

// MaxListAge is how long a server's full tool list is current at most,
// from when it was learned: past it, the list is to be renewed (see
// Freshness). A server that restarts with other tools (another version,
// annotations changed) announces no list_changed: this bounds how long
// calls are decided by what it listed before, for clients that call
// before they list (a client's list tells the catalog of a change at
// once: see LearnPage).
const MaxListAge = 30 * time.Second

// Freshness is whether a server's tool list may decide calls.
type Freshness int

const (
	// Current: a full list, learned since the server was last forgotten,
	// is held, and is no older than MaxListAge.
	Current Freshness = iota
	// Renewable: a full list is held, older than MaxListAge: it is to be
	// fetched again (LearnFetched with renew) before a call is decided.
	Renewable
	// Unlisted: no full list is held, or the server announced a change
	// since (Forget), or a reload reset it: it must be fetched before a
	// call is decided.
	Unlisted
)

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
	return &Catalog{
		store: store, servers: map[string]*server{}, pins: pins, generations: map[string]uint64{}, epochs: map[string]uint64{},
		rechecked: map[[2]string]time.Time{}, maxListAge: MaxListAge, now: time.Now,
	}, nil
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
// When the list has a tool this catalog has no pin for, or (at most once
// per RecheckInterval) one whose definition differs from its pin, the
// server's pins are read from the store first, so that what another
// gateway sharing the store pinned or accepted holds here too. A tool
// never pinned before is pinned to its hash, trusting it on first use,
// unless another gateway pinned it first (see PinStore.PinFirst); it is
// trusted while its pin is saved only if the store was read just before.
// A pinned tool whose hash differs is Changed, and its pin is kept until
// Accept. A name listed more than once with different definitions is
// recorded once, from its most cautious listing, with a hash over all of
// its listings in order, so that a change to any of them is a change.
//
// A tool that cannot be read is an error, and nothing is recorded. An error
// reading or saving pins is returned once everything is recorded: the pins
// already in memory stand, and a tool whose first pin could not be saved
// has none, so it is Changed (refused) until a later Learn or Recheck
// saves it.
func (c *Catalog) Learn(ctx context.Context, server string, tools []json.RawMessage, asOf uint64) error {
	_, err := c.learn(ctx, server, tools, learning{full: true, asOf: asOf, started: c.now()})
	return err
}

// LearnFetched is Learn of a list the gateway fetched, whose fetch
// started at started, and reports whether it stands. With renew (the
// list was Renewable: see Freshness), a list whose fetch started before
// that of the list held (between the same two Forgets) does not replace
// it (a slow renewal the server answered before it restarted, arriving
// after one it answered since), and the tools the list
// held before and this one lacks are noted as Dropped: a server that
// lists tools per caller (by the scopes of its token) lists the renewing
// caller's, and another caller's tool is fetched again in its own
// session rather than refused (see the gateway's refetchOnMiss).
func (c *Catalog) LearnFetched(ctx context.Context, server string, tools []json.RawMessage, asOf uint64, started time.Time, renew bool) (stood bool, err error) {
	return c.learn(ctx, server, tools, learning{full: true, asOf: asOf, started: started, renew: renew})
}

// learning is how learn records a list: whole (full) or a page, as of the
// Generation asOf, fetched from started, renewing the list held.
type learning struct {
	full    bool
	asOf    uint64
	started time.Time
	renew   bool
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
// without marking the list current. asOf is the Generation read before
// the page was requested: a page requested before the list was last
// forgotten is out of date (the server said its tools changed since), and
// records nothing. Nor does a page ever change a current list (one a
// full Learn recorded since the last Forget), lest an old definition
// replace the one a later fetch recorded: a page that disagrees with it
// (another definition, or a tool it lacks) makes it stale instead, as
// Forget does, so that the next decision fetches the list anew. Its tools
// that nothing pinned yet are pinned all the same, trusted on first use
// as from a list the gateway fetched: a server that lists tools per
// session (by the capabilities a client declared, the scopes of its
// token) lists the client's own, which would otherwise read as changed.
func (c *Catalog) LearnPage(ctx context.Context, server string, tools []json.RawMessage, asOf uint64) error {
	_, err := c.learn(ctx, server, tools, learning{asOf: asOf})
	return err
}

// learn implements Learn, LearnFetched and LearnPage; stood reports
// that a full list replaced the list held.
func (c *Catalog) learn(ctx context.Context, name string, raws []json.RawMessage, how learning) (stood bool, err error) {
	full, asOf := how.full, how.asOf
	listed, err := describeList(name, raws)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()

	c.pinMu.Lock()
	defer c.pinMu.Unlock()

	var errs []error
	var stored map[string]string
	read := false
	if c.storeWanted(name, listed) {
		if stored, err = c.store.Pins(ctx, name); err != nil {
			errs = append(errs, fmt.Errorf("reading pins of server %q: %w", name, err))
		} else {
			read = true
		}
	}

	c.mu.Lock()
	s := c.servers[name]
	if full && s != nil && (asOf < s.asOf || how.renew && asOf == s.asOf && how.started.Before(s.started)) || !full && asOf != c.generations[name] {
		c.mu.Unlock()
		return false, errors.Join(errs...)
	}
	// Past MaxPins the list is learned all the same (a page that shows a
	// tool changed must make the list stale), but its tools never pinned
	// stay unpinned, and so changed: refused.
	pinsFull := false
	if n := pinCount(c.pins[name], stored, listed); n > MaxPins {
		errs = append(errs, fmt.Errorf("learning tools of server %q: with this list it would have %d tools pinned, "+
			"more than the %d the gateway keeps for a server (a server inventing names?): its tools never pinned are not pinned, and are refused", name, n, MaxPins))
		pinsFull = true
	}
	// A page never changes a current list; its tools are only pinned.
	record := full || s == nil || !s.listed
	if !record {
		for toolName, t := range listed {
			if current, ok := s.tools[toolName]; !ok || current.Hash != t.Hash {
				c.generations[name]++
				s.listed, s.dropped = false, nil
				break
			}
		}
	}
	if record && !full && s != nil {
		added := 0
		for toolName := range listed {
			if _, known := s.tools[toolName]; !known {
				added++
			}
		}
		if len(s.tools)+added > MaxTools {
			c.mu.Unlock()
			return false, tooManyTools(name)
		}
	}
	var dropped map[string]bool
	if s != nil && full && how.renew && s.listed && c.generations[name] == asOf {
		for toolName := range s.tools {
			if _, relisted := listed[toolName]; !relisted {
				if dropped == nil {
					dropped = map[string]bool{}
				}
				dropped[toolName] = true
			}
		}
	}
	if s == nil || full {
		s = &server{tools: map[string]Tool{}, asOf: asOf}
		c.servers[name] = s
	}
	if full {
		s.listed = c.generations[name] == asOf
		s.learned, s.started, s.dropped = c.now(), how.started, dropped
	}
	pins := c.pinsOf(name)
	// Pins this catalog holds that the store read lacks were lost there
	// (a Redis flushed, or failed over to a stale replica): saved again
	// below, before another gateway trusts a changed definition on first
	// use in their place.
	var lost map[string]string
	if read {
		for tool, pin := range pins {
			if _, kept := stored[tool]; !kept {
				if lost == nil {
					lost = map[string]string{}
				}
				lost[tool] = pin
			}
		}
	}
	maps.Copy(pins, stored)
	var unpinned []Tool
	for _, t := range listed {
		if record {
			s.tools[t.Name] = t
		}
		if _, ok := pins[t.Name]; !ok && !pinsFull {
			if read {
				// The store had no pin a moment ago: trusted on first
				// use at once, so that the calls that follow this list
				// are decided by it; corrected below if another gateway
				// pinned the tool since.
				pins[t.Name] = t.Hash
			}
			unpinned = append(unpinned, t)
		}
	}
	c.mu.Unlock()

	for _, tool := range slices.Sorted(maps.Keys(lost)) {
		// Not saved, the pin held here stands: dropping it would trust
		// whatever the server lists next.
		if _, err := c.savePinFirst(ctx, name, tool, lost[tool]); err != nil {
			errs = append(errs, fmt.Errorf("saving again the lost pin of tool %q of server %q: %w", tool, name, err))
		}
	}
	slices.SortFunc(unpinned, func(a, b Tool) int { return cmp.Compare(a.Name, b.Name) })
	if batch, ok := c.store.(BatchPinner); ok && len(unpinned) > 1 {
		hashes := make(map[string]string, len(unpinned))
		for _, t := range unpinned {
			hashes[t.Name] = t.Hash
		}
		got, err := batch.PinFirstAll(ctx, name, hashes)
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, t := range unpinned {
			pin, ok := got[t.Name]
			settlePin(pins, t.Name, pin, ok && err == nil)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pinning %d tools of server %q: %w", len(unpinned), name, err))
		}
		return full, errors.Join(errs...)
	}
	for _, t := range unpinned {
		pin, err := c.store.PinFirst(ctx, name, t.Name, t.Hash)
		c.mu.Lock()
		settlePin(pins, t.Name, pin, err == nil)
		c.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("pinning tool %q of server %q: %w", t.Name, name, err))
		}
	}
	return full, errors.Join(errs...)
}

// settlePin records in a server's pins (under Catalog.mu) what the store
// answered for a tool pinned on first use: the pin it saved (the one sent,
// or another gateway's), or, when it saved none, no pin at all: a tool is
// not trusted on a pin nobody else can see, and is refused until its pin
// is saved.
func settlePin(pins map[string]string, tool, pin string, saved bool) {
	if saved {
		pins[tool] = pin
	} else {
		delete(pins, tool)
	}
}

// storeWanted reports whether learning listed calls for reading the
// server's pins from the store: a tool without a pin here, or, at most
// once per RecheckInterval, one whose pin here differs (it may have been
// accepted through another gateway).
func (c *Catalog) storeWanted(name string, listed map[string]Tool) bool {
	c.mu.RLock()
	unpinned, changed := false, false
	for _, t := range listed {
		pin, ok := c.pins[name][t.Name]
		unpinned = unpinned || !ok
		changed = changed || (ok && pin != t.Hash)
	}
	c.mu.RUnlock()
	return unpinned || (changed && c.due(name, ""))
}

// due reports whether the store may be read again for a server's tool
// (or, with no tool name, its list), and if so records that it is.
func (c *Catalog) due(server, tool string) bool {
	key, now := [2]string{server, tool}, c.now()
	c.recheckMu.Lock()
	defer c.recheckMu.Unlock()
	if now.Sub(c.rechecked[key]) < RecheckInterval {
		return false
	}
	if len(c.rechecked) >= maxRechecked {
		clear(c.rechecked)
	}
	c.rechecked[key] = now
	return true
}

// pinsOf returns a server's pins, made if need be; c.mu must be held for
// writing.
func (c *Catalog) pinsOf(server string) map[string]string {
	pins := c.pins[server]
	if pins == nil {
		pins = map[string]string{}
		c.pins[server] = pins
	}
	return pins
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
	return c.pinned(server, t), true
}

// pinned is t with Changed set: unless its server's pin for it holds its
// hash (a tool never pinned is changed). c.mu must be held.
func (c *Catalog) pinned(server string, t Tool) Tool {
	pin, pinned := c.pins[server][t.Name]
	t.Changed = !pinned || pin != t.Hash
	return t
}

// Recheck returns what is known of a server's tool like Lookup, after
// reading its pin from the store again if it is Changed, so that a new
// definition an operator accepted through another gateway sharing the
// store is accepted here too; a tool whose first pin could not be saved
// is pinned now, unless another gateway pinned it first. It goes to the
// store at most once per RecheckInterval for each tool; if the store
// cannot be reached, the pin in memory stands.
func (c *Catalog) Recheck(ctx context.Context, server, name string) (Tool, bool) {
	t, ok := c.Lookup(server, name)
	if !ok || !t.Changed || !c.due(server, name) {
		return t, ok
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	c.mu.RLock()
	pin, pinned := c.pins[server][name]
	c.mu.RUnlock()
	if !pinned {
		// Its first pin was never saved: saved now, or another's taken.
		pin = t.Hash
	}
	if _, err := c.savePinFirst(ctx, server, name, pin); err != nil {
		return t, ok
	}
	return c.Lookup(server, name)
}

// savePinFirst pins a tool's hash in the store unless another gateway
// pinned it first, and keeps here the pin the store answers; c.pinMu
// must be held.
func (c *Catalog) savePinFirst(ctx context.Context, server, tool, hash string) (string, error) {
	pin, err := c.store.PinFirst(ctx, server, tool, hash)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pinsOf(server)[tool] = pin
	return pin, nil
}

// Accept pins a server's tool to its current definition, as an operator
// does to approve a changed definition, and saves the pin; it returns the
// tool as it stands. The pin changes only once saved. A tool the catalog
// has not seen listed is ErrUnknownTool. With reviewed set, the current
// definition must have that hash, or nothing changes and the error is
// ErrOtherDefinition: a definition that changed again since the operator
// looked is not accepted unseen. server is the name the tools are kept
// under (the handler's upstream name).
func (c *Catalog) Accept(ctx context.Context, server, name, reviewed string) (Tool, error) {
	c.pinMu.Lock()
	defer c.pinMu.Unlock()

	c.mu.RLock()
	t, ok := c.lookup(server, name)
	c.mu.RUnlock()
	if !ok {
		return Tool{}, fmt.Errorf("accepting tool %q of server %q: %w", name, server, ErrUnknownTool)
	}
	if reviewed != "" && reviewed != t.Hash {
		return t, fmt.Errorf("accepting tool %q of server %q: %w", name, server, ErrOtherDefinition)
	}
	if err := c.store.Save(ctx, server, name, t.Hash); err != nil {
		return t, fmt.Errorf("accepting tool %q of server %q: %w", name, server, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.pinsOf(server)[name] = t.Hash
	t.Changed = false
	return t, nil
}

// Reset forgets what a server's tool list was, keeping its pins, and
// gives the list to the configuration epoch, which starts to run: it may
// route the name to another MCP server than the configuration before,
// whose tools must be listed before they are decided. The next lookup
// finds the list stale. A list fetched for another configuration (see
// GenerationFor) is never current after it.
func (c *Catalog) Reset(server string, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generations[server]++
	c.epochs[server] = epoch
	delete(c.servers, server)
}

// Owns reports whether the server's list is the configuration epoch's:
// the last Reset gave it that epoch (or none was made, and epoch is 0).
// A configuration that does not own it decides on lists it fetches
// itself, without recording them (see Describe).
func (c *Catalog) Owns(server string, epoch uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epochs[server] == epoch
}

// GenerationFor is Generation for the configuration epoch: 0 when it
// does not own the server's list (see Owns), which no list is current at
// once a Reset was made, so that a list it fetches records nothing as
// current, nor a page anything: read at once with the owner, so that a
// Reset after it makes the list out of date.
func (c *Catalog) GenerationFor(server string, epoch uint64) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.epochs[server] != epoch {
		return 0
	}
	return c.generations[server]
}

// PinFirst pins a tool that Describe read, which no pin held, to its
// definition, as Learn pins a listed tool on its first use, unless
// another gateway pinned it first (whose pin then stands); it returns the
// tool with Changed as the pin says. A tool with a pin is returned as it
// is: only Accept changes a pin. Without the store, the tool stays
// Changed (refused): it is not trusted on a pin nobody else can see.
func (c *Catalog) PinFirst(ctx context.Context, server string, t Tool) (Tool, error) {
	c.mu.RLock()
	_, pinned := c.pins[server][t.Name]
	if pinned {
		t = c.pinned(server, t)
	}
	c.mu.RUnlock()
	if pinned {
		return t, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	c.mu.RLock()
	full := len(c.pins[server]) >= MaxPins
	c.mu.RUnlock()
	if full {
		// As Learn: past MaxPins a tool never pinned stays unpinned.
		return t, fmt.Errorf("pinning tool %q of server %q: the server has %d tools pinned, the most the gateway keeps", t.Name, server, MaxPins)
	}
	pin, err := c.savePinFirst(ctx, server, t.Name, t.Hash)
	if err != nil {
		return t, fmt.Errorf("pinning tool %q of server %q: %w", t.Name, server, err)
	}
	t.Changed = pin != t.Hash
	return t, nil
}

// Describe reads a tool list of a server as Learn would, without
// recording it: each tool as listed, Changed unless its pin holds its
// hash (a tool never pinned is changed: it is not pinned here).
func (c *Catalog) Describe(server string, raws []json.RawMessage) (map[string]Tool, error) {
	tools, err := describeList(server, raws)
	if err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for name, t := range tools {
		tools[name] = c.pinned(server, t)
	}
	return tools, nil
}

// describeList describes a server's whole tool list (see describeAll), of
// at most MaxTools tools.
func describeList(server string, raws []json.RawMessage) (map[string]Tool, error) {
	if len(raws) > MaxTools {
		return nil, tooManyTools(server)
	}
	tools, err := describeAll(raws)
	if err != nil {
		return nil, fmt.Errorf("learning tools of server %q: %w", server, err)
	}
	return tools, nil
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
		s.listed, s.dropped = false, nil
	}
}

// SetMaxListAge makes lists current for d at most, in place of
// MaxListAge (for tests).
func (c *Catalog) SetMaxListAge(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maxListAge = d
}

// Freshness says whether a server's tool list may decide calls: it is
// Current, Renewable or Unlisted.
func (c *Catalog) Freshness(server string) Freshness {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := c.servers[server]
	if s == nil || !s.listed {
		return Unlisted
	}
	if c.now().Sub(s.learned) > c.maxListAge {
		return Renewable
	}
	return Current
}

// Dropped reports whether the last renewal of a server's list (see
// LearnFetched) did not list a tool the list held before.
func (c *Catalog) Dropped(server, tool string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := c.servers[server]
	return s != nil && s.dropped[tool]
}

// Stale reports whether a server's tool list should be fetched before a
// Lookup miss is taken as final: it is not Current.
func (c *Catalog) Stale(server string) bool {
	return c.Freshness(server) != Current
}

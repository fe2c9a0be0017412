package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// toolsListRequests returns the ids of the allowed tools/list requests
// among the verdicts, and the same ids canonical, as a set.
func toolsListRequests(verdicts []verdict) (ids [][]byte, lists map[string]bool) {
	for _, v := range verdicts {
		m := v.message
		if !v.forwardsRequest() || m.Method != "tools/list" {
			continue
		}
		if lists == nil {
			lists = make(map[string]bool)
		}
		ids = append(ids, m.ID)
		lists[mcpmsg.CanonicalID(m.ID)] = true
	}
	return ids, lists
}

// watchToolListChanges marks the upstream's tool list stale when it
// announces it changed.
func (g *Gateway) watchToolListChanges() func(*mcpmsg.Message) {
	return func(m *mcpmsg.Message) {
		if m.Kind == mcpmsg.KindNotification && m.Method == "notifications/tools/list_changed" {
			g.catalog.Forget(g.cfg.Upstream)
		}
	}
}

// hideBlockedTools records one page of a tools/list result in the
// catalog and returns it without the tools whose permission is block, so
// the model never tries them. Tools that need approval stay listed. A
// result the gateway cannot read is an error, which the client receives
// instead.
//
// A client's list is recorded as a page, never as the server's whole list
// (which only the gateway's own fetch, with ids no client can take, marks
// current; see fetcher): the gateway knows an answer by its id alone, and
// a client can make an upstream answer one of its requests under the id of
// another (a page-2 answer taken for a first page would have the
// catalog forget the first page's tools, refusing everyone's calls to
// them). A stray result (one that reads as a tools list but answers no
// tools/list the gateway knows of) is filtered without being recorded.
// asOf is the catalog's Generation when the list was requested: a list
// requested before the server announced its tools changed is out of date,
// and records nothing (see catalog.LearnPage).
func (x *exchange) hideBlockedTools(version string, result []byte, asOf uint64, stray bool) ([]byte, error) {
	if !replyfilter.HeldWhole(x.w.Header()) {
		// A stream (a POST's, or a GET's), open for as long as the
		// upstream likes, carries lists that the policy, a reload or an
		// operator's acceptance of a definition judge otherwise by the
		// time they come.
		return x.filterToolsList(version, result, asOf, stray)
	}
	key := filteredListKey{digest: sha256.Sum256(result), version: version, asOf: asOf, stray: stray, judges: x.g.listJudges()}
	if filtered, ok := x.lastList.get(key); ok {
		return filtered, nil
	}
	filtered, err := x.filterToolsList(version, result, asOf, stray)
	if err == nil {
		x.lastList.set(key, filtered)
	}
	return filtered, err
}

// filteredListKey is what a tools list's filtering depends on: the list,
// as the bytes of its result, and what hideBlockedTools is given with it.
type filteredListKey struct {
	digest  [sha256.Size]byte
	version string
	asOf    uint64
	stray   bool
	// judges names the gateways that judge a list now and the policy
	// each decides with (listJudges): a reply may stay open across a
	// reload, or a policy file rewritten.
	judges string
}

// listJudges names the gateways whose policies judge a tools list now
// (see hidesTool), each with the revision of its policy.
func (g *Gateway) listJudges() string {
	var names strings.Builder
	for _, h := range g.judges() {
		fmt.Fprintf(&names, "%p %s\n", h, h.cfg.Engine.Revision())
	}
	return names.String()
}

// lastFilteredList is the tools list a JSON reply filtered last, and
// what came of it: a batch of tools/list requests answered alike (the
// same page, to the byte) has it judged once, not once per copy (a batch
// of 100 lists of 300 tools took 1.5 s and 286 MB). Only for a JSON
// reply, whose lists are read at once when it ends: a stream open
// for hours carries lists that the policy, a reload or the pins judge
// otherwise by the time they come (and within one reply, a list is
// judged again when the policies that judge it changed).
type lastFilteredList struct {
	mu       sync.Mutex
	key      filteredListKey
	filtered []byte
}

func (l *lastFilteredList) get(key filteredListKey) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.filtered, l.filtered != nil && l.key == key
}

func (l *lastFilteredList) set(key filteredListKey, filtered []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.key, l.filtered = key, filtered
}

// filterToolsList implements hideBlockedTools.
func (x *exchange) filterToolsList(version string, result []byte, asOf uint64, stray bool) ([]byte, error) {
	g, r := x.g, x.r
	server := g.cfg.Upstream
	tools, names, _, err := catalog.ParseToolsList(result)
	if err != nil {
		return nil, fmt.Errorf("reading the upstream's tools/list: %w", err)
	}
	if !stray {
		if err := g.catalog.LearnPage(r.Context(), server, tools, asOf); err != nil {
			g.logger.Error("could not record the upstream's tools", zap.String("server", server), zap.Error(err))
		}
	}
	// Each tool is judged by what this list says of it, the bytes the
	// client will read, against the pins (a tool whose definition is not
	// pinned is changed, and the library hides it): not by what the
	// catalog holds, which an out-of-date list does not change.
	described, err := g.catalog.Describe(server, tools)
	if err != nil {
		return nil, fmt.Errorf("reading the upstream's tools/list: %w", err)
	}

	base := x.baseInput(version)
	base.Kind, base.Method = mcpmsg.KindRequest.String(), "tools/call"
	kept := make([]json.RawMessage, 0, len(tools))
	keptNames := make([]string, 0, len(tools))
	for i, raw := range tools {
		name := names[i]
		tool, listed := described[name]
		if !listed {
			tool = notListed(name)
		}
		base.Tool, base.Params = policyTool(tool, nil), map[string]any{"name": name}
		if g.hidesTool(r, base, name) {
			continue
		}
		kept, keptNames = append(kept, raw), append(keptNames, name)
	}
	kept, renamed, err := g.exposeTools(kept, keptNames)
	if err != nil {
		return nil, fmt.Errorf("reading the upstream's tools/list: %w", err)
	}
	if len(kept) == len(tools) && !renamed {
		return result, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(result, &members); err != nil {
		return nil, fmt.Errorf("reading the upstream's tools/list: %w", err)
	}
	keptJSON, err := json.Marshal(kept)
	if err != nil {
		return nil, fmt.Errorf("encoding tools/list: %w", err)
	}
	members["tools"] = keptJSON
	return json.Marshal(members)
}

// hidesTool reports whether a tools/list hides the tool of input (a
// tools/call of it without arguments, in the list's context): when the
// policy's table blocks it, or its permission cannot be read; and, of a
// policy that decides calls without reading their arguments
// (policy.Engine.DecidesWithoutArguments), when its decision on such a
// call of this caller blocks it, or fails: every call of the tool the
// caller could make in this context would be blocked alike. A gateway a
// reload retired asks the gateways serving its server now (see deciders):
// any of them hides it, and with none, every tool is hidden.
func (g *Gateway) hidesTool(r *http.Request, input *policy.Input, name string) bool {
	return g.hiddenByJudges(r, input, func(h *Gateway, input *policy.Input) bool {
		permission, defined, err := h.cfg.Engine.ToolPermission(r.Context(), input)
		if err != nil {
			h.logger.Error("tool permission failed; tool hidden", zap.String("server", h.cfg.Upstream), zap.String("tool", name), zap.Error(err))
		}
		if err != nil || defined && permission.Action == policy.ActionBlock {
			return true
		}
		if !h.cfg.Engine.DecidesWithoutArguments() {
			return false
		}
		decision, err := h.cfg.Engine.Decide(r.Context(), input)
		if err != nil {
			h.logger.Error("policy failed on a listed tool; tool hidden", zap.String("server", h.cfg.Upstream), zap.String("tool", name), zap.Error(err))
		}
		return decision.Action == policy.ActionBlock
	})
}

// hiddenByJudges reports whether any of the gateways that judge what this
// one relays now (judges: this one while its configuration runs) hides
// what input asks for, by hides, given input with that gateway's own
// facts of the request; with none, everything is hidden.
func (g *Gateway) hiddenByJudges(r *http.Request, input *policy.Input, hides func(h *Gateway, input *policy.Input) bool) bool {
	judges := g.judges()
	if len(judges) == 0 {
		return true
	}
	for _, h := range judges {
		now := *input
		if h != g {
			now.Request = h.requestInfo(r)
		}
		if hides(h, &now) {
			return true
		}
	}
	return false
}

// hideThenCheck filters a result that reads as a tools list
// (hideBlockedTools), and then checks the requests it may embed for the
// client as any result's (relay.checkInputRequests): a tools list does not
// make the inputRequests beside it undecided.
func (x *exchange) hideThenCheck(rl *relay, id []byte, version string, result []byte, asOf uint64, stray bool) ([]byte, error) {
	filtered, err := x.hideBlockedTools(version, result, asOf, stray)
	if err != nil {
		return nil, err
	}
	return rl.checkInputRequests(id, filtered)
}

// learnBeforeStray has the gateway fetch the upstream's list itself when
// its catalog's is stale (or past its age: catalog.Freshness), before a
// stray list (recorded nowhere, judged by
// the pins alone) is filtered: its tools are then pinned as the server
// lists them now, rather than all hidden as never seen. Not on an HTTP+SSE
// stream, whose relay would wait for the fetch's own answer on itself.
func (x *exchange) learnBeforeStray() {
	g := x.g
	freshness := g.catalog.Freshness(g.cfg.Upstream)
	if !g.ownsList() || freshness == catalog.Current {
		return
	}
	if err := x.fetcher().refresh(g.cfg.Upstream, nil, freshness == catalog.Renewable); err != nil {
		g.logger.Warn("could not fetch the upstream's tool list", zap.String("upstream", g.cfg.Upstream), zap.Error(err))
	}
}

// noteList records the digest of a list learned, its tools in any order
// (see refetchOnMiss).
func (g *Gateway) noteList(tools []json.RawMessage) {
	sorted := slices.SortedFunc(slices.Values(tools), func(a, b json.RawMessage) int { return bytes.Compare(a, b) })
	digest := sha256.New()
	for _, tool := range sorted {
		digest.Write(tool)
		digest.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	digest.Sum(sum[:0])
	g.listMu.Lock()
	defer g.listMu.Unlock()
	g.listDigest = sum
}

// heldList returns the digest of the list learned last.
func (g *Gateway) heldList() [sha256.Size]byte {
	g.listMu.Lock()
	defer g.listMu.Unlock()
	return g.listDigest
}

// learnList records a whole tool list of the upstream, whose fetch
// started at started (renewing the list held: see
// catalog.Catalog.LearnFetched), and logs, once per tool, each tool the
// configuration names that the list lacks.
func (g *Gateway) learnList(ctx context.Context, tools []json.RawMessage, asOf uint64, started time.Time, renew bool) error {
	stood, err := g.catalog.LearnFetched(ctx, g.cfg.Upstream, tools, asOf, started, renew)
	if stood {
		// (The digest of the list held: not of one that did not replace
		// it.)
		g.noteList(tools)
	}
	g.warnUnlisted(g.cfg.Engine.TableTools(g.cfg.Server), "the permissions table names a tool the upstream does not list: its entry applies to no call (a misspelt name?)")
	g.warnUnlisted(g.cfg.ToolOverrides.Tools(), "a tool override names a tool the upstream does not list: it changes nothing (a misspelt name?)")
	return err
}

// warnUnlisted logs, once per tool, each of names that the upstream's
// list, learned whole, lacks.
func (g *Gateway) warnUnlisted(names []string, message string) {
	for _, name := range names {
		if _, listed := g.catalog.Lookup(g.cfg.Upstream, name); listed {
			continue
		}
		if _, warned := g.unlistedWarned.LoadOrStore(message+"\x00"+name, true); !warned {
			g.logger.Warn(message, zap.String("server", g.cfg.Server), zap.String("tool", name))
		}
	}
}

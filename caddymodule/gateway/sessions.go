package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/ttlcache"
)

// Bounds on what the gateway remembers of the server requests it relayed.
const (
	// maxPendingPerSession bounds the unanswered requests remembered for
	// one session; the oldest is forgotten first.
	maxPendingPerSession = 64
	// maxTrackedSessions bounds the sessions with unanswered requests,
	// and maxTrackedSessionsPerCaller those of one caller (see callerOf):
	// past either, once the expired are forgotten, a new session's
	// request is not tracked (and so not relayed), rather than a live one
	// forgotten, whose answer would then be refused.
	maxTrackedSessions          = 10000
	maxTrackedSessionsPerCaller = 1000
	// pendingTTL is how long a relayed request may wait for the client's
	// answer: an elicitation waits on a person.
	pendingTTL = 30 * time.Minute
)

// sessionKey names one MCP session: with one upstream, under one server
// name, of one caller.
type sessionKey struct {
	// upstream is the gateway's upstream (Config.Upstream).
	upstream string
	// server is the gateway's server name (Config.Server): handlers of
	// one upstream under two server names guard it apart, each by its own
	// policy, so that what one lets start (a task, a request relayed to
	// the client) is not carried on under the other, as the session
	// tokens each seals are not (sessionScope).
	server string
	// caller is the identified caller's id, "" without identity: the
	// requests of a stateless upstream's callers are kept apart too.
	caller string
	// realm is where caller comes from (Identity.Realm): callers of one
	// id from two realms are two callers.
	realm string
	// legacy is set for the HTTP+SSE transport, where id is the message
	// endpoint (see legacyKey); on Streamable HTTP, id is the upstream's
	// Mcp-Session-Id, empty when the upstream is stateless.
	legacy bool
	id     string
}

// shown is the session as the gateway shows it, in audit records,
// placeholders and logs: on Streamable HTTP the upstream's session id,
// which reaches nothing through the gateway (it takes only its own sealed
// tokens); on HTTP+SSE a digest of the upstream's message endpoint, which
// would let whoever reads it post into the session.
func (k sessionKey) shown() string {
	if !k.legacy {
		return k.id
	}
	sum := sha256.Sum256([]byte(k.id))
	return "sse-" + hex.EncodeToString(sum[:8])
}

// sealedCallerID is the caller's id in a sealed caller (see
// sealedCaller), whatever its realm; a caller sealed without a realm (by
// an earlier version) is its id.
func sealedCallerID(sealed string) string {
	length, rest, ok := strings.Cut(sealed, ":")
	n, err := strconv.Atoi(length)
	if !ok || err != nil || n < 0 || n >= len(rest) || rest[n] != ':' {
		return sealed
	}
	return rest[n+1:]
}

// String spells the key unambiguously, for maps outside this package.
func (k sessionKey) String() string {
	return fmt.Sprintf("%q %q %q %q %t %q", k.upstream, k.server, k.realm, k.caller, k.legacy, k.id)
}

// names reports whether the key tells its caller's requests apart from
// other callers': it has a session, or an identified caller. A stateless
// upstream's anonymous callers share one key.
func (k sessionKey) names() bool {
	return k.id != "" || k.caller != ""
}

// sealedCaller is the caller a token sealed for the session names: the
// caller's id in its realm, so that a token sealed for "alice" of one
// token issuer opens for no "alice" of another (after a reload that
// changed the issuer, or on a replica configured otherwise); "" for an
// anonymous caller.
func (k sessionKey) sealedCaller() string {
	if k.caller == "" {
		return ""
	}
	return strconv.Itoa(len(k.realm)) + ":" + k.realm + ":" + k.caller
}

// Sessions is what the gateway remembers of live sessions: the server
// requests it relayed, the HTTP+SSE streams open through it, and the
// tools/list requests whose responses it has yet to see. Its host keeps
// one for every gateway of the process, across configurations, so that a
// stream opened under one configuration is still governed under the next.
type Sessions struct {
	relayed *relayedRequests
	legacy  *legacyStreams
	// toolsLists are the session's forwarded tools/list requests whose
	// response has not been seen yet: a client that loses a POST's stream
	// gets the response on a resumed GET stream, and an upstream that
	// answers the latest request of an id on that request's POST reply;
	// it must be filtered there too.
	toolsLists *relayedRequests
	// own are the gateway's own requests to clients awaiting answers.
	own *ownRequests
	// inFlight are the ids of the clients' requests forwarded on a
	// Streamable HTTP session whose POSTs are still open.
	inFlight *inFlightRequests
	// confirmations are the caller confirmations used, without a store.
	confirmations *usedConfirmations
	// tasks are the tasks allowed calls started (tasks.go).
	tasks *startedTasks
	// givenCursors are the list cursors servers gave sessions that
	// block_secrets reads as credentials (secrets.go).
	givenCursors *ttlcache.Cache[[sha256.Size]byte, struct{}]
}

// NewSessions returns empty session state.
func NewSessions() *Sessions {
	return &Sessions{
		relayed:       newRelayedRequests(),
		legacy:        &legacyStreams{streams: make(map[sessionKey]*legacyStream), secrets: make(map[string]int)},
		toolsLists:    newRelayedRequests(),
		own:           newOwnRequests(),
		inFlight:      &inFlightRequests{sessions: make(map[sessionKey]map[string]int)},
		confirmations: newUsedConfirmations(),
		tasks:         newStartedTasks(),
		givenCursors:  ttlcache.New[[sha256.Size]byte, struct{}](givenCursorsKept, givenCursorsFor),
	}
}

// relayedRequests remembers, per session, the ids of requests relayed
// through the gateway that have not been answered yet.
type relayedRequests struct {
	mu       sync.Mutex
	sessions map[sessionKey]*pendingRequests
	// byCaller holds each caller's sessions in sessions (see callerOf).
	byCaller map[sessionKey]map[sessionKey]bool
	// expiresAt is, of all sessions (the zero key) and of each caller's,
	// no later than when the first of their requests expires: before it,
	// nothing is looked for to forget (a look goes through them all).
	expiresAt map[sessionKey]time.Time
	// now is the clock, time.Now but in tests.
	now func() time.Time
}

func newRelayedRequests() *relayedRequests {
	return &relayedRequests{sessions: make(map[sessionKey]*pendingRequests), byCaller: make(map[sessionKey]map[sessionKey]bool),
		expiresAt: make(map[sessionKey]time.Time), now: time.Now}
}

// callerOf names whose share of the bounds a session's state counts
// against: an identified caller's, on every upstream (its id in its
// realm); without identity, the session's own (anonymous clients are not
// one another's), or with no session (a stateless upstream) the
// upstream's.
func callerOf(session sessionKey) sessionKey {
	if session.caller != "" {
		return sessionKey{caller: session.caller, realm: session.realm}
	}
	return sessionKey{upstream: session.upstream, legacy: session.legacy, id: session.id}
}

// pendingRequests are one session's relayed requests, oldest first, each
// with a note of its caller's (see add).
type pendingRequests struct {
	ids     []string
	notes   []uint64
	relayed []time.Time
}

// add remembers that the request with this id was relayed, with a note
// that take returns (a tools/list's catalog generation; 0 when nothing
// need be noted), and reports whether it could: a new session past the
// bounds (maxTrackedSessions, maxTrackedSessionsPerCaller) is not
// tracked, and its request must not be relayed.
func (rr *relayedRequests) add(session sessionKey, id []byte, note uint64) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	// Read under the lock, so that requests are stamped in the order
	// they are stored, and no scan's expiresAt is undercut later.
	now := rr.now()
	pending := rr.sessions[session]
	if pending == nil {
		caller := callerOf(session)
		if len(rr.sessions) >= maxTrackedSessions {
			rr.forgetExpired(now, sessionKey{})
		}
		if len(rr.byCaller[caller]) >= maxTrackedSessionsPerCaller {
			rr.forgetExpired(now, caller)
		}
		if len(rr.sessions) >= maxTrackedSessions || len(rr.byCaller[caller]) >= maxTrackedSessionsPerCaller {
			return false
		}
		pending = new(pendingRequests)
		rr.sessions[session] = pending
		if rr.byCaller[caller] == nil {
			rr.byCaller[caller] = make(map[sessionKey]bool)
		}
		rr.byCaller[caller][session] = true
	}
	pending.expire(now)
	if len(pending.ids) >= maxPendingPerSession {
		pending.ids, pending.notes, pending.relayed = pending.ids[1:], pending.notes[1:], pending.relayed[1:]
	}
	pending.ids = append(pending.ids, mcpmsg.CanonicalID(id))
	pending.notes = append(pending.notes, note)
	pending.relayed = append(pending.relayed, now)
	return true
}

// take reports whether the request with this id was relayed and is still
// unanswered, with the note it was added with, and forgets it: a request
// is answered once.
func (rr *relayedRequests) take(session sessionKey, id []byte) (note uint64, ok bool) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	pending := rr.sessions[session]
	if pending == nil {
		return 0, false
	}
	pending.expire(rr.now())
	i := slices.Index(pending.ids, mcpmsg.CanonicalID(id))
	if i >= 0 {
		note = pending.notes[i]
		pending.ids = slices.Delete(pending.ids, i, i+1)
		pending.notes = slices.Delete(pending.notes, i, i+1)
		pending.relayed = slices.Delete(pending.relayed, i, i+1)
	}
	if len(pending.ids) == 0 {
		rr.forget(session)
	}
	return note, i >= 0
}

// took is take without the note.
func (rr *relayedRequests) took(session sessionKey, id []byte) bool {
	_, ok := rr.take(session, id)
	return ok
}

// forgetExpired forgets, of all sessions (key is the zero key) or of
// one caller's (key is callerOf theirs), those whose requests have all
// expired, and notes when the first of the others expires; before that,
// it does nothing. rr.mu is held.
func (rr *relayedRequests) forgetExpired(now time.Time, key sessionKey) {
	if now.Before(rr.expiresAt[key]) {
		return
	}
	sessions := maps.Keys(rr.byCaller[key])
	if key == (sessionKey{}) {
		sessions = maps.Keys(rr.sessions)
	}
	var first time.Time
	for session := range sessions {
		pending := rr.sessions[session]
		if pending == nil {
			continue
		}
		if pending.expire(now); len(pending.ids) == 0 {
			rr.forget(session)
		} else if at := pending.relayed[0].Add(pendingTTL); first.IsZero() || at.Before(first) {
			first = at
		}
	}
	if first.IsZero() {
		delete(rr.expiresAt, key) // none left: nothing kept for them
	} else {
		rr.expiresAt[key] = first
	}
}

// forget forgets a session. rr.mu is held.
func (rr *relayedRequests) forget(session sessionKey) {
	delete(rr.sessions, session)
	caller := callerOf(session)
	if delete(rr.byCaller[caller], session); len(rr.byCaller[caller]) == 0 {
		delete(rr.byCaller, caller)
		delete(rr.expiresAt, caller)
	}
}

// expire forgets the requests relayed longer than pendingTTL ago.
func (p *pendingRequests) expire(now time.Time) {
	n := 0
	for n < len(p.relayed) && now.Sub(p.relayed[n]) > pendingTTL {
		n++
	}
	p.ids, p.notes, p.relayed = p.ids[n:], p.notes[n:], p.relayed[n:]
}

// inFlightRequests remembers, per Streamable HTTP session, the ids of the
// requests forwarded on POSTs still open: their answers may still come.
// An upstream matches an answer to its request by id alone, within the
// session, and some (the TypeScript SDK's transport) route it to the
// stream of the latest request with that id: a request that took the id
// of one in flight would get that one's answer on its own POST, read as
// its own (a tools/list's, unfiltered, on a ping's reply). MCP forbids
// reusing an id in a session; the gateway refuses it rather than trust the
// upstream to. Each POST holds its ids until it ends, so nothing is kept
// longer than a request is open.
type inFlightRequests struct {
	mu       sync.Mutex
	sessions map[sessionKey]map[string]int
}

// claim records the requests with these ids (canonical) as in flight in
// the session, unless one of them already is: it then records none, and
// returns that id. release must be called with the same ids once the
// POST ends.
func (f *inFlightRequests) claim(session sessionKey, ids []string) (taken string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	held := f.sessions[session]
	for _, id := range ids {
		if held[id] > 0 {
			return id, false
		}
	}
	if held == nil {
		held = make(map[string]int, len(ids))
		f.sessions[session] = held
	}
	for _, id := range ids {
		held[id]++
	}
	return "", true
}

// release forgets the ids that claim recorded.
func (f *inFlightRequests) release(session sessionKey, ids []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	held := f.sessions[session]
	for _, id := range ids {
		if held[id]--; held[id] <= 0 {
			delete(held, id)
		}
	}
	if len(held) == 0 {
		delete(f.sessions, session)
	}
}

package approval

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/ttlcache"
)

// Store keeps approvals where every gateway that shares it sees them. The
// rules (what is live, which changes are allowed) are Approval's; a store
// only makes each change atomic and tells of it.
type Store interface {
	// Create saves a, a new pending approval, unless an approval that is
	// live at now has the same binding under a's decision secret (see
	// bindingKey), or under one of olderKeys (the ids of decision secrets
	// still listed after the first, so that a rotation keeps the
	// approvals announced before it standing for their calls): then it
	// returns that one and false, and saves nothing.
	Create(ctx context.Context, a *Approval, now time.Time, olderKeys ...string) (*Approval, bool, error)
	// Standing returns the approval that Create would return in a's
	// place (live at now, with a's binding, under a's decision secret or
	// one of olderKeys), or ErrNotFound.
	Standing(ctx context.Context, a *Approval, now time.Time, olderKeys ...string) (*Approval, error)
	// Get returns the approval with the id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Approval, error)
	// Update applies change to the approval with the id atomically and
	// returns the result. When change returns an error, nothing is saved
	// and Update returns that error.
	Update(ctx context.Context, id string, change func(*Approval) error) (*Approval, error)
	// List returns the approvals the store remembers, oldest first.
	List(ctx context.Context) ([]*Approval, error)
	// Due returns the ids of pending approvals whose time ran out before
	// now, and lets the store forget what it no longer needs to keep.
	Due(ctx context.Context, now time.Time) ([]string, error)
	// CountPending returns how many approvals are pending.
	CountPending(ctx context.Context) (int, error)
	// Claim records key (a webhook-id) for ttl and reports whether it was
	// new.
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Unclaim forgets a key Claim recorded, so that it may be claimed
	// again.
	Unclaim(ctx context.Context, key string) error
	// Scope names where the store keeps its records: a one-time key
	// claimed in it (Claim) is seen as claimed by every store of the same
	// scope, and by no other. A store of this process alone names itself
	// anew each time it is made, so that nothing claimed before a
	// restart is taken as unclaimed after it.
	Scope() string
	// Close releases the store's connections.
	Close() error
}

// ChangeFunc is told the id of every approval that a store created or
// updated, by this gateway or (for a shared store) another one.
type ChangeFunc func(id string)

// memoryStore keeps approvals in this process.
type memoryStore struct {
	onChange ChangeFunc
	// scope is the store's Scope, random.
	scope string
	// claims are the keys claimed, each until its time is up, at most
	// maxMemoryClaims of them (past it, no key is claimed until one's
	// time is up); it locks on its own.
	claims *ttlcache.Cache[string, struct{}]

	mu        sync.Mutex
	approvals map[string]*Approval
	// bindings maps a binding to the approval that last stood for it.
	bindings map[string]string
}

// NewMemoryStore returns a store that lives in this process: approvals
// outlive config reloads (the service holding the store is shared) but
// not a restart, and are not shared with other gateways.
func NewMemoryStore(onChange ChangeFunc) Store {
	return &memoryStore{
		onChange:  onChange,
		scope:     "memory " + rand.Text(),
		approvals: make(map[string]*Approval),
		bindings:  make(map[string]string),
		claims:    ttlcache.New[string, struct{}](maxMemoryClaims, 0),
	}
}

func (s *memoryStore) Create(_ context.Context, a *Approval, now time.Time, olderKeys ...string) (*Approval, bool, error) {
	s.mu.Lock()
	if existing := s.standing(a, now, olderKeys); existing != nil {
		s.mu.Unlock()
		return clone(existing), false, nil
	}
	s.forgetOldest(now)
	s.approvals[a.ID] = clone(a)
	s.bindings[a.bindingKey()] = a.ID
	s.mu.Unlock()
	s.onChange(a.ID)
	return a, true, nil
}

func (s *memoryStore) Standing(_ context.Context, a *Approval, now time.Time, olderKeys ...string) (*Approval, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if existing := s.standing(a, now, olderKeys); existing != nil {
		return clone(existing), nil
	}
	return nil, fmt.Errorf("%w: no approval stands for the call", ErrNotFound)
}

// standing returns the live approval with a's binding, or nil. The
// caller holds s.mu.
func (s *memoryStore) standing(a *Approval, now time.Time, olderKeys []string) *Approval {
	for _, key := range standingKeys(a, olderKeys) {
		if id, ok := s.bindings[key]; ok {
			if existing := s.approvals[id]; existing != nil && existing.Live(now) {
				return existing
			}
		}
	}
	return nil
}

// forgetOldest makes room for an approval, keeping at most maxRemembered
// that are no longer live: past it, those that would be forgotten first
// (see Approval.forgetAt) are forgotten now. Live approvals are bounded
// by MaxPending. The caller holds s.mu.
func (s *memoryStore) forgetOldest(now time.Time) {
	if len(s.approvals) < maxRemembered {
		return
	}
	var done []*Approval
	for _, a := range s.approvals {
		if !a.Live(now) {
			done = append(done, a)
		}
	}
	if len(done) < maxRemembered {
		return
	}
	slices.SortFunc(done, func(a, b *Approval) int { return a.forgetAt().Compare(b.forgetAt()) })
	// A tenth at once, so that a full store is not sorted on every Create.
	for _, a := range done[:len(done)-maxRemembered*9/10] {
		s.forget(a)
	}
}

// forget drops an approval, and its binding if it still names it. The
// caller holds s.mu.
func (s *memoryStore) forget(a *Approval) {
	delete(s.approvals, a.ID)
	if s.bindings[a.bindingKey()] == a.ID {
		delete(s.bindings, a.bindingKey())
	}
}

func (s *memoryStore) Get(_ context.Context, id string) (*Approval, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.approvals[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return clone(a), nil
}

func (s *memoryStore) Update(_ context.Context, id string, change func(*Approval) error) (*Approval, error) {
	s.mu.Lock()
	current, ok := s.approvals[id]
	if !ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	a := clone(current)
	if err := change(a); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.approvals[id] = a
	if a.settled() && s.bindings[a.bindingKey()] == id {
		delete(s.bindings, a.bindingKey())
	}
	s.mu.Unlock()
	s.onChange(id)
	return clone(a), nil
}

func (s *memoryStore) List(context.Context) ([]*Approval, error) {
	s.mu.Lock()
	list := make([]*Approval, 0, len(s.approvals))
	for _, a := range s.approvals {
		list = append(list, clone(a))
	}
	s.mu.Unlock()
	sortByRequest(list)
	return list, nil
}

func (s *memoryStore) Due(_ context.Context, now time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []string
	for id, a := range s.approvals {
		switch {
		case a.State == Pending && !now.Before(a.ExpiresAt):
			due = append(due, id)
		case now.After(a.forgetAt()):
			s.forget(a)
		}
	}
	return due, nil
}

func (s *memoryStore) CountPending(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.approvals {
		if a.State == Pending {
			n++
		}
	}
	return n, nil
}

// maxMemoryClaims bounds the keys a memory store keeps claimed. Past it,
// a new key is refused (ErrTooManyClaims) rather than an older one
// forgotten: a claim may stand for a reviewer's approval used (a retry
// run on it), which must not run again once forgotten.
const maxMemoryClaims = 100_000

// ErrTooManyClaims is Claim's error when a memory store holds as many
// keys claimed as it may.
var ErrTooManyClaims = errors.New("the approval store holds as many one-time keys as it may; retry later")

func (s *memoryStore) Claim(_ context.Context, key string, ttl time.Duration) (bool, error) {
	added, full := s.claims.AddIfAbsentWithin(key, struct{}{}, ttl)
	if full {
		return false, ErrTooManyClaims
	}
	return added, nil
}

func (s *memoryStore) Unclaim(_ context.Context, key string) error {
	s.claims.Remove(key)
	return nil
}

func (s *memoryStore) Close() error { return nil }

func (s *memoryStore) Scope() string { return s.scope }

// standingKeys are the binding keys (see bindingKey) whose live approval
// stands for a, a new approval: its own first, then its binding's under
// each of olderKeys.
func standingKeys(a *Approval, olderKeys []string) []string {
	keys := []string{a.bindingKey()}
	for _, keyID := range olderKeys {
		keys = append(keys, bindingKey(keyID, a.Binding))
	}
	return keys
}

// clone copies an approval, so that no caller shares a store's record.
func clone(a *Approval) *Approval {
	c := *a
	return &c
}

// sortByRequest orders approvals oldest first.
func sortByRequest(list []*Approval) {
	slices.SortFunc(list, ByRequest)
}

// ByRequest orders approvals as stores list them: oldest first, by when
// they were requested (by the wall clock: a memory store's times also
// carry a monotonic reading, which Compare would prefer, and a Redis
// store's do not, so that approvals of both would not be ordered alike),
// then by id.
func ByRequest(a, b *Approval) int {
	return cmp.Or(cmp.Compare(a.RequestedAt.UnixNano(), b.RequestedAt.UnixNano()), strings.Compare(a.ID, b.ID))
}

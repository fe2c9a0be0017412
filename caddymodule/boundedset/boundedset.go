// Package boundedset is a set that holds at most a fixed number of
// members: past it, the member added first is forgotten. The gateway keeps
// such sets of what it remembers of requests no longer awaited (ids not
// to be taken again, ids and tokens to name them by), bounded so that a
// client cannot grow them without end.
//
// A Set is not safe for concurrent use: its owner holds its own lock
// around it, as it does around the state the set goes with.
package boundedset

import "slices"

// Set holds up to a fixed number of members, oldest first.
type Set[K comparable] struct {
	members map[K]struct{}
	order   []K
	limit   int
}

// New returns an empty set of at most limit members (limit must be
// positive).
func New[K comparable](limit int) *Set[K] {
	if limit <= 0 {
		panic("boundedset: a limit of 0 or less") // the caller's mistake
	}
	return &Set[K]{members: make(map[K]struct{}), limit: limit}
}

// Add adds k, unless it is there, forgetting the oldest member when the
// set is full; it returns the member forgotten, if one was.
func (s *Set[K]) Add(k K) (forgotten K, ok bool) {
	if _, there := s.members[k]; there {
		return forgotten, false
	}
	if len(s.order) >= s.limit {
		forgotten, ok = s.order[0], true
		delete(s.members, forgotten)
		s.order = slices.Delete(s.order, 0, 1)
	}
	s.members[k] = struct{}{}
	s.order = append(s.order, k)
	return forgotten, ok
}

// Contains reports whether k is there.
func (s *Set[K]) Contains(k K) bool {
	_, ok := s.members[k]
	return ok
}

// Remove takes k out, if it is there.
func (s *Set[K]) Remove(k K) {
	if _, ok := s.members[k]; !ok {
		return
	}
	delete(s.members, k)
	s.order = slices.DeleteFunc(s.order, func(other K) bool { return other == k })
}

// Len returns how many members the set holds.
func (s *Set[K]) Len() int {
	return len(s.order)
}

package boundedset

import (
	"slices"
	"testing"
)

// TestSet: a set adds each member once, forgets the oldest past its
// limit, takes members out from anywhere, and its order and members
// agree throughout.
func TestSet(t *testing.T) {
	tests := []struct {
		name string
		do   func(s *Set[int])
		want []int // the members, oldest first
	}{
		{"added", func(s *Set[int]) { s.Add(1); s.Add(2) }, []int{1, 2}},
		{"added twice", func(s *Set[int]) { s.Add(1); s.Add(2); s.Add(1) }, []int{1, 2}},
		{"past the limit", func(s *Set[int]) { s.Add(1); s.Add(2); s.Add(3); s.Add(4) }, []int{2, 3, 4}},
		{"removed from the middle", func(s *Set[int]) { s.Add(1); s.Add(2); s.Add(3); s.Remove(2) }, []int{1, 3}},
		{"removed, then past the limit", func(s *Set[int]) {
			s.Add(1)
			s.Add(2)
			s.Add(3)
			s.Remove(1)
			s.Add(4)
			s.Add(5)
		}, []int{3, 4, 5}},
		{"removed when absent", func(s *Set[int]) { s.Add(1); s.Remove(9) }, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New[int](3)
			tt.do(s)
			if !slices.Equal(s.order, tt.want) || s.Len() != len(tt.want) || len(s.members) != len(tt.want) {
				t.Fatalf("order %v, %d members; want %v", s.order, len(s.members), tt.want)
			}
			for _, k := range tt.want {
				if !s.Contains(k) {
					t.Errorf("%d is not a member", k)
				}
			}
		})
	}
}

// TestAddReportsWhatItForgot: Add says which member the bound pushed out.
func TestAddReportsWhatItForgot(t *testing.T) {
	s := New[string](2)
	for _, k := range []string{"a", "b", "a"} {
		if forgotten, ok := s.Add(k); ok {
			t.Errorf("adding %q forgot %q; want nothing forgotten below the bound", k, forgotten)
		}
	}
	if forgotten, ok := s.Add("c"); !ok || forgotten != "a" {
		t.Errorf("adding c past the bound forgot %q, %v; want a", forgotten, ok)
	}
}

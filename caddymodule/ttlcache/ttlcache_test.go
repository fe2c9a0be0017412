package ttlcache

import (
	"testing"
	"time"
)

// TestCache: entries are kept until they expire or the bound evicts the
// least recently used (expired ones at that end first); an expired entry
// is neither got, contained, removed nor kept from being added again.
func TestCache(t *testing.T) {
	type step struct {
		do    string // add, addIfAbsent, addIfAbsentFor, get, contains, remove, wait
		key   string
		value int
		want  bool // what get, contains, addIfAbsent or remove report
		got   int  // the value get returns
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"kept until it expires", []step{
			{do: "add", key: "a", value: 1},
			{do: "get", key: "a", want: true, got: 1},
			{do: "wait", value: 9},
			{do: "contains", key: "a", want: true},
			{do: "wait", value: 1},
			{do: "get", key: "a"},
			{do: "contains", key: "a"},
		}},
		{"added again, kept anew", []step{
			{do: "add", key: "a", value: 1},
			{do: "wait", value: 9},
			{do: "add", key: "a", value: 2},
			{do: "wait", value: 9},
			{do: "get", key: "a", want: true, got: 2},
		}},
		{"the least recently used evicted", []step{
			{do: "add", key: "a", value: 1},
			{do: "add", key: "b", value: 2},
			{do: "get", key: "a", want: true, got: 1},
			{do: "add", key: "c", value: 3},
			{do: "contains", key: "b"},
			{do: "contains", key: "a", want: true},
			{do: "contains", key: "c", want: true},
		}},
		{"read, kept no longer", []step{
			{do: "add", key: "a", value: 1},
			{do: "wait", value: 9},
			{do: "get", key: "a", want: true, got: 1},
			{do: "wait", value: 1},
			{do: "get", key: "a"},
		}},
		{"an expired entry evicted before a live one", []step{
			{do: "add", key: "a", value: 1},
			{do: "wait", value: 5},
			{do: "add", key: "b", value: 2},
			{do: "wait", value: 6},
			{do: "add", key: "c", value: 3},
			{do: "get", key: "b", want: true, got: 2},
			{do: "contains", key: "c", want: true},
		}},
		{"added again, evicted last", []step{
			{do: "add", key: "a", value: 1},
			{do: "add", key: "b", value: 2},
			{do: "add", key: "a", value: 3},
			{do: "add", key: "c", value: 4},
			{do: "contains", key: "b"},
			{do: "get", key: "a", want: true, got: 3},
		}},
		{"added if absent, once", []step{
			{do: "addIfAbsent", key: "a", value: 1, want: true},
			{do: "addIfAbsent", key: "a", value: 2},
			{do: "get", key: "a", want: true, got: 1},
			{do: "wait", value: 10},
			{do: "addIfAbsent", key: "a", value: 3, want: true},
			{do: "get", key: "a", want: true, got: 3},
		}},
		{"added if absent for a time of its own", []step{
			{do: "addIfAbsentFor", key: "a", value: 20, want: true},
			{do: "wait", value: 15},
			{do: "contains", key: "a", want: true},
			{do: "wait", value: 5},
			{do: "contains", key: "a"},
		}},
		{"removed", []step{
			{do: "add", key: "a", value: 1},
			{do: "remove", key: "a", want: true},
			{do: "remove", key: "a"},
			{do: "add", key: "b", value: 1},
			{do: "wait", value: 10},
			{do: "remove", key: "b"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(0, 0)
			c := New[string, int](2, 10*time.Second)
			c.now = func() time.Time { return now }
			for i, s := range tt.steps {
				var ok bool
				var got int
				switch s.do {
				case "add":
					c.Add(s.key, s.value)
					continue
				case "wait":
					now = now.Add(time.Duration(s.value) * time.Second)
					continue
				case "get":
					got, ok = c.Get(s.key)
				case "contains":
					ok = c.Contains(s.key)
				case "addIfAbsent":
					ok = c.AddIfAbsent(s.key, s.value)
				case "addIfAbsentFor": // value seconds
					ok = c.AddIfAbsentFor(s.key, s.value, time.Duration(s.value)*time.Second)
				case "remove":
					ok = c.Remove(s.key)
				}
				if ok != s.want || got != s.got {
					t.Errorf("step %d, %s %q: %d %v; want %d %v", i, s.do, s.key, got, ok, s.got, s.want)
				}
			}
			if c.Len() > 2 {
				t.Errorf("%d entries; the bound is 2", c.Len())
			}
		})
	}
}

package mcpmsg

import "testing"

func TestCaseVariant(t *testing.T) {
	known := []string{"action", "kind"}
	tests := []struct {
		name    string
		members []string
		bad, of string
		variant bool
	}{
		{"none", nil, "", "", false},
		{"only known names", []string{"action", "kind"}, "", "", false},
		{"unrelated names", []string{"actions", "note"}, "", "", false},
		{"capitalised", []string{"action", "Action"}, "Action", "action", true},
		{"without the known one", []string{"ACTION"}, "ACTION", "action", true},
		{"Kelvin sign", []string{"\u212aind"}, "\u212aind", "kind", true},
		{"long s is not a", []string{"\u017fction"}, "", "", false},
		{"smallest of several", []string{"aCTION", "KIND", "Action"}, "Action", "action", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			members := map[string]int{}
			for _, m := range tt.members {
				members[m] = 0
			}
			for range 20 { // map order varies: the answer must not
				bad, of, variant := CaseVariant(members, known...)
				if bad != tt.bad || of != tt.of || variant != tt.variant {
					t.Fatalf("CaseVariant(%q) = %q, %q, %v; want %q, %q, %v",
						tt.members, bad, of, variant, tt.bad, tt.of, tt.variant)
				}
			}
		})
	}
}

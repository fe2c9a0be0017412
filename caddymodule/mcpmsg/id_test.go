package mcpmsg

import (
	"math/big"
	"strconv"
	"testing"
)

// sameIDs are groups of raw ids: the ids of one group are the same id to
// every JSON reader, and ids of different groups are different ids to some
// reader, so CanonicalID must map each group, and only it, to one string.
var sameIDs = []struct {
	name string
	ids  []string
}{
	{"letter", []string{`"a"`, `"\u0061"`, `"\u0061"`}},
	{"capital letter", []string{`"A"`, `"\u0041"`}},
	{"solidus", []string{`"/"`, `"\/"`, `"\u002f"`, `"\u002F"`}},
	{"quote and backslash", []string{`"\"\\"`, `"\u0022\u005c"`}},
	{"control character", []string{`"\u001f"`, `"\u001F"`}},
	{"tab", []string{`"\t"`, `"\u0009"`}},
	{"precomposed e acute", []string{`"é"`, `"\u00e9"`, `"\u00E9"`}},
	{"e and combining acute", []string{`"e\u0301"`, "\"e\u0301\""}},
	{"surrogate pair", []string{`"😀"`, `"\ud83d\ude00"`, `"\uD83D\uDE00"`}},
	{"string one", []string{`"1"`, `"\u0031"`}},
	{"one", []string{`1`}},
	{"one with a fraction", []string{`1.0`}},
	{"one with an exponent", []string{`1e0`}},
	{"zero", []string{`0`}},
	{"minus zero", []string{`-0`}},
	{"2^53-1", []string{`9007199254740991`}},
	{"2^53", []string{`9007199254740992`}},
	{"2^53+1", []string{`9007199254740993`}},
	{"-(2^53+1)", []string{`-9007199254740993`}},
	{"2^64", []string{`18446744073709551616`}},
	{"2^64+1", []string{`18446744073709551617`}},
	{"thirty digits", []string{`123456789012345678901234567890`}},
	{"thirty digits plus one", []string{`123456789012345678901234567891`}},
}

func TestCanonicalIDGroups(t *testing.T) {
	for i, gi := range sameIDs {
		for j, gj := range sameIDs {
			for _, a := range gi.ids {
				for _, b := range gj.ids {
					same := CanonicalID([]byte(a)) == CanonicalID([]byte(b))
					if want := i == j; same != want {
						t.Errorf("CanonicalID(%s) == CanonicalID(%s) is %v, want %v (%s, %s)", a, b, same, want, gi.name, gj.name)
					}
				}
			}
		}
	}
}

func TestCanonicalIDForm(t *testing.T) {
	tests := []struct{ id, want string }{
		{`"\u0061"`, `"a"`},
		{`"\ud83d\ude00"`, `"😀"`},
		{`"\u00e9\/"`, `"é/"`},
		{`"\u001F"`, `"\u001f"`},
		{`9007199254740993`, `9007199254740993`},
		{`1.0`, `1.0`},
		{`-0`, `-0`},
		{` 7 `, `7`},
		{`"unterminated`, `"unterminated`},
		{`"\ud800"`, `"\ud800"`},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := CanonicalID([]byte(tt.id)); got != tt.want {
				t.Errorf("CanonicalID(%s) = %s, want %s", tt.id, got, tt.want)
			}
		})
	}
}

func TestIsPortableInteger(t *testing.T) {
	tests := []struct {
		n    string
		want bool
	}{
		{"0", true},
		{"7", true},
		{"-7", true},
		{"10", true},
		{"1000000000000000", true},
		{"9007199254740991", true},
		{"-9007199254740991", true},
		{"9007199254740990", true},
		{"-0", false},
		{"00", false},
		{"01", false},
		{"-01", false},
		{"+1", false},
		{"", false},
		{"-", false},
		{"--1", false},
		{"1.0", false},
		{"1.5", false},
		{"0.0", false},
		{"1e0", false},
		{"1E2", false},
		{"1e-0", false},
		{"9007199254740992", false},
		{"-9007199254740992", false},
		{"9007199254740993", false},
		{"9999999999999999", false},
		{"10000000000000000", false},
		{"18446744073709551616", false},
		{"123456789012345678901234567890", false},
	}
	for _, tt := range tests {
		t.Run(tt.n, func(t *testing.T) {
			if got := isPortableInteger(tt.n); got != tt.want {
				t.Errorf("isPortableInteger(%q) = %v, want %v", tt.n, got, tt.want)
			}
			if tt.want {
				checkReadAlike(t, tt.n)
			}
		})
	}
}

// checkReadAlike fails t unless the JSON number n reads as one integer
// exactly (as Python and Java read it), through float64 (as JavaScript reads
// it) and through float64 then int64 (as the MCP Go SDK reads an id).
func checkReadAlike(t *testing.T, n string) {
	t.Helper()
	exact, ok := new(big.Int).SetString(n, 10)
	if !ok {
		t.Fatalf("%s is not an integer", n)
	}
	f, err := strconv.ParseFloat(n, 64)
	if err != nil {
		t.Fatalf("%s does not read as a float64: %v", n, err)
	}
	if got, _ := big.NewFloat(f).Int(nil); got.Cmp(exact) != 0 {
		t.Errorf("%s reads as float64 %s, want %s", n, got, exact)
	}
	if got := int64(f); !exact.IsInt64() || got != exact.Int64() {
		t.Errorf("%s reads through float64 as int64 %d, want %s", n, got, exact)
	}
}

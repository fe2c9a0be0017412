package mcpmsg

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestPortableNumber(t *testing.T) {
	tests := []struct {
		text string
		want bool
	}{
		{"0", true},
		{"-0", true},
		{"0.0", true},
		{"-0.0e5", true},
		{"1", true},
		{"1.0", true},
		{"1e0", true},
		{"1E2", true},
		{"1e+2", true},
		{"100.000", true},
		{"0.1", true},
		{"0.30000000000000004", true},
		{"1.5", true},
		{"999999999999999", true},
		{"-999999999999999", true},
		{"9007199254740992", true},
		{"1152921504606846976", true}, // 2^60, a float exactly
		{"1e300", true},
		{"1.7976931348623157e308", true},
		{"5e-324", true},
		{"2.2250738585072014e-308", true},
		{"0.30000000000000001", false},
		{"1336.99999999999999", false},
		{"9007199254740993", false},
		{"-9007199254740993", false},
		{"1234567890123456789", false},
		{"3.14159265358979323846", false},
		{"1e-400", false},
		{"2e-324", false}, // rounds to 0
		{"1e400", false},
		{"1.7976931348623159e308", false}, // rounds to infinity
		{"-1e1000000000", false},
		{"1" + strings.Repeat("0", 200), false},
		{"1." + strings.Repeat("0", 200), false}, // exact, but longer than any float needs
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			if got := portableNumber(tt.text); got != tt.want {
				t.Errorf("portableNumber(%s) = %v, want %v", tt.text, got, tt.want)
			}
		})
	}
}

// TestPortableNumberRandom compares portableNumber with an oracle of
// exact rationals (math/big) over the shortest texts of random floats and
// texts one digit away from them: a number is portable when its value is
// that of its nearest float's shortest text, or when it is an integer
// that float holds exactly.
func TestPortableNumberRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	oracle := func(text string) bool {
		if len(text) > maxNumberLength {
			return false
		}
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return false
		}
		value, ok := new(big.Rat).SetString(text)
		if !ok {
			t.Fatalf("math/big cannot read %s", text)
		}
		shortest, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'e', -1, 64))
		return (integerText(text) && value.Cmp(new(big.Rat).SetFloat64(f)) == 0) || value.Cmp(shortest) == 0
	}
	for range 20000 {
		f := math.Float64frombits(r.Uint64())
		if math.IsInf(f, 0) || math.IsNaN(f) {
			continue
		}
		if r.IntN(2) == 0 {
			// Integers, where the exact value and the shortest text part.
			f = math.Trunc(math.Ldexp(r.Float64(), 40+r.IntN(40)))
		}
		texts := []string{strconv.FormatFloat(f, 'e', -1, 64), strconv.FormatFloat(f, 'f', -1, 64), strconv.FormatFloat(f, 'f', 0, 64)}
		mantissa, exponent, _ := strings.Cut(texts[0], "e")
		if !strings.Contains(mantissa, ".") {
			mantissa += "."
		}
		texts = append(texts, mantissa+"1e"+exponent, mantissa+"9e"+exponent, texts[2]+"1", strings.TrimSuffix(texts[2], "0")+"1")
		for _, text := range texts {
			if got, want := portableNumber(text), oracle(text); got != want {
				t.Fatalf("portableNumber(%s) = %v, want %v", text, got, want)
			}
		}
	}
}

// BenchmarkPortableNumber: what the check costs a number of each kind.
func BenchmarkPortableNumber(b *testing.B) {
	for _, text := range []string{"42", "0.1", "1152921504606846976", "3.14159265358979323846"} {
		b.Run(text, func(b *testing.B) {
			for b.Loop() {
				portableNumber(text)
			}
		})
	}
}

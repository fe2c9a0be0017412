package mcpmsg

import "testing"

func TestCanonicalID(t *testing.T) {
	tests := []struct{ a, b string }{
		{`"\u0061"`, `"a"`},
		{`1.0`, `1`},
		{`1e0`, `1`},
		{`"x"`, `"x"`},
	}
	for _, tt := range tests {
		if got, want := CanonicalID([]byte(tt.a)), CanonicalID([]byte(tt.b)); got != want {
			t.Errorf("CanonicalID(%s) = %s, want %s as for %s", tt.a, got, want, tt.b)
		}
	}
	if CanonicalID([]byte(`"1"`)) == CanonicalID([]byte(`1`)) {
		t.Error(`CanonicalID made "1" and 1 equal`)
	}
}

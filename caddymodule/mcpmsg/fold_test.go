package mcpmsg

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestFoldName(t *testing.T) {
	tests := []struct {
		name, a, b string
		same       bool
	}{
		{"identical", "repo", "repo", true},
		{"ASCII case", "repo", "Repo", true},
		{"all capitals", "repo", "REPO", true},
		{"trailing space", "repo", "repo ", true},
		{"leading tab and newline", "repo", "\t\nrepo", true},
		{"no-break space", "repo", "repo\u00a0", true},
		{"ideographic space", "repo", "\u3000repo", true},
		{"fullwidth", "repo", "\uff52\uff45\uff50\uff4f", true},
		{"long s", "sort", "\u017fort", true},
		{"Kelvin sign", "k", "\u212a", true},
		{"ligature", "file", "\ufb01le", true},
		{"sharp s", "strasse", "stra\u00dfe", true},
		{"capital sharp s", "stra\u00dfe", "STRA\u1e9eE", true},
		{"decomposed accent", "caf\u00e9", "CAFE\u0301", true},
		{"superscript", "x2", "x\u00b2", true},
		{"Greek final sigma", "\u03c3", "\u03c2", true},
		{"Cherokee", "\u13a0\u13f5", "\uab70\u13fd", true},
		{"capital letter and a combining mark", "\u03aa\u0342", "\u03ca\u0342", true},
		{"plural", "repo", "repos", false},
		{"inner space", "re po", "repo", false},
		{"underscore", "repo_id", "repoid", false},
		{"hyphen", "repo-id", "repo_id", false},
		{"accent", "cafe", "caf\u00e9", false},
		{"zero width space", "repo", "repo\u200b", false},
		{"empty", "", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa, fb := FoldName(tt.a), FoldName(tt.b)
			if same := fa == fb; same != tt.same {
				t.Errorf("FoldName(%q) = %q and FoldName(%q) = %q: equal %v, want %v", tt.a, fa, tt.b, fb, same, tt.same)
			}
		})
	}
}

// TestFoldNameMergesSimpleFolds checks, over every code point, that
// FoldName merges what encoding/json merges: names equal under simple
// Unicode case folding (strings.EqualFold).
func TestFoldNameMergesSimpleFolds(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		for other := unicode.SimpleFold(r); other != r; other = unicode.SimpleFold(other) {
			if a, b := FoldName(string(r)), FoldName(string(other)); a != b {
				t.Errorf("FoldName(%q) = %q, FoldName(%q) = %q; want equal, as strings.EqualFold makes them", r, a, other, b)
			}
		}
	}
}

func TestFoldNameDoesNotAllocateWhenFolded(t *testing.T) {
	args := map[string]any{
		"owner": "mcpgate", "repo": "mcpgate", "title": "Gateway drops progress",
		"labels": []any{"bug", map[string]any{"name": "triage", "color": "red"}},
		"filter": map[string]any{"state": "open", "sort": "updated", "per_page": 30},
	}
	tests := []struct {
		name string
		run  func()
	}{
		{"FoldName", func() { _ = FoldName("per_page") }},
		{"CheckParams", func() { _ = CheckParams("tools/call", map[string]any{"name": "t", "arguments": args}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.run); n != 0 {
				t.Errorf("%v allocations, want 0", n)
			}
		})
	}
}

// FuzzFoldName checks that FoldName merges every name with the names that
// readers take for it: its case variants under simple folding (as
// encoding/json matches them), its normalization forms, and itself with
// surrounding white space.
func FuzzFoldName(f *testing.F) {
	for _, seed := range []string{"repo", "Repo ", "\uff52\uff45\uff50\uff4f", "\u017fort", "\u212a", "\u1e9e", "\u0345", "\u03b1\u0345", "caf\u00e9", "\ufb01", "\u0130", "\u13a0\uab70", "\u03aa\u0342", "\u1fbe\u1b70"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !utf8.ValidString(name) {
			return // Parse refuses invalid UTF-8 before names are folded.
		}
		folded := FoldName(name)
		variants := map[string]string{
			"NFC":               norm.NFC.String(name),
			"NFD":               norm.NFD.String(name),
			"NFKC":              norm.NFKC.String(name),
			"surrounding space": " \t" + name + "\r\n",
		}
		// FoldName documents that it cannot merge the simple folds of
		// U+0345 among combining marks.
		if next := strings.Map(unicode.SimpleFold, name); !strings.ContainsRune(name+next, '\u0345') {
			variants["next simple fold"] = next
		}
		for what, variant := range variants {
			if got := FoldName(variant); got != folded {
				t.Errorf("FoldName(%q) = %q, but FoldName(%q) (%s) = %q", name, folded, variant, what, got)
			}
		}
	})
}

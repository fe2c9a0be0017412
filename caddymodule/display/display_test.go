package display

import (
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLineAndBlock(t *testing.T) {
	tests := []struct {
		name, in, line, block string
	}{
		{"plain", "read_file /etc/hosts", "read_file /etc/hosts", "read_file /etc/hosts"},
		{"unicode letters", "café ｒｅｐｏ 日本", "café ｒｅｐｏ 日本", "café ｒｅｐｏ 日本"},
		{"a line break", "a\nb", "a⟨U+000A⟩b", "a\nb"},
		{"a tab", "a\tb", "a⟨U+0009⟩b", "a⟨U+0009⟩b"},
		{"a terminal escape", "x\x1b[8my", "x⟨U+001B⟩[8my", "x⟨U+001B⟩[8my"},
		{"a C1 escape introducer", "x\u009by", "x⟨U+009B⟩y", "x⟨U+009B⟩y"},
		{"a bidi override", "txt.\u202Eexe", "txt.⟨U+202E⟩exe", "txt.⟨U+202E⟩exe"},
		{"a zero-width space", "rm\u200B -rf", "rm⟨U+200B⟩ -rf", "rm⟨U+200B⟩ -rf"},
		{"a line separator", "a\u2028b", "a⟨U+2028⟩b", "a⟨U+2028⟩b"},
		{"invalid UTF-8", "a\xffb", "a⟨invalid UTF-8⟩b", "a⟨invalid UTF-8⟩b"},
		{"a real replacement character", "a\uFFFDb", "a\uFFFDb", "a\uFFFDb"},
		// Names that would look alike, or blanks that are not spaces.
		{"a Hangul filler", "delete_repo\u3164", "delete_repo⟨U+3164⟩", "delete_repo⟨U+3164⟩"},
		{"ignorable characters", "delete_repo\u115f\u034f\ufe0f", "delete_repo⟨U+115F⟩⟨U+034F⟩⟨U+FE0F⟩", "delete_repo⟨U+115F⟩⟨U+034F⟩⟨U+FE0F⟩"},
		{"a blank braille pattern", "a\u2800b", "a⟨U+2800⟩b", "a⟨U+2800⟩b"},
		{"other spaces", "a\u00a0b\u3000c", "a⟨U+00A0⟩b⟨U+3000⟩c", "a⟨U+00A0⟩b⟨U+3000⟩c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Line(tt.in); got != tt.line {
				t.Errorf("Line(%q) = %q, want %q", tt.in, got, tt.line)
			}
			if got := Block(tt.in); got != tt.block {
				t.Errorf("Block(%q) = %q, want %q", tt.in, got, tt.block)
			}
		})
	}
}

func TestCut(t *testing.T) {
	if got := Cut("short", 10); got != "short" {
		t.Errorf("Cut of a short text = %q", got)
	}
	got := Cut(strings.Repeat("é", 10), 5)
	if got != "éé\n⟨16 more bytes not shown⟩" {
		t.Errorf("Cut = %q; want two whole characters and the bytes left out", got)
	}
}

func TestIndentedJSON(t *testing.T) {
	tests := []struct {
		name, raw string
		limit     int
		want      string
		complete  bool
	}{
		{"an object", `{"cmd":"a && b > c","n":1.50,"list":[1,{"x":null}]}`, 1000,
			"{\n  \"cmd\": \"a && b > c\",\n  \"n\": 1.50,\n  \"list\": [\n    1,\n    {\n      \"x\": null\n    }\n  ]\n}", true},
		{"an empty object", `{}`, 10, "{}", true},
		{"cut at the limit", `{"a":"` + strings.Repeat("x", 100) + `"}`, 20, "{\n  \"a\": \"xxxxxxxxxx", false},
		{"cut before a character the limit falls in", `{"a":"` + strings.Repeat("é", 100) + `"}`, 21, "{\n  \"a\": \"ééééé", false},
		{"cut after a whole character", `{"a":"` + strings.Repeat("é", 100) + `"}`, 22, "{\n  \"a\": \"éééééé", false},
		{"cut in a three-byte character", `{"a":"` + strings.Repeat("€", 100) + `"}`, 20, "{\n  \"a\": \"€€€", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, complete, err := IndentedJSON([]byte(tt.raw), tt.limit)
			if err != nil || got != tt.want || complete != tt.complete {
				t.Errorf("IndentedJSON = %q, %v, %v; want %q, %v", got, complete, err, tt.want, tt.complete)
			}
		})
	}
	if _, _, err := IndentedJSON([]byte(`{"a":`), 100); err == nil {
		t.Error("IndentedJSON of a broken value succeeded")
	}
}

// TestIndentedJSONBounded checks that showing the start of a deeply
// nested value costs what the start costs: indenting all of a 1 MiB
// array 60 levels deep wrote 60 MiB and took seconds.
func TestIndentedJSONBounded(t *testing.T) {
	raw := []byte(strings.Repeat("[", 60) + strings.Repeat("1,", 1<<19) + "1" + strings.Repeat("]", 60))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	shown, complete, err := IndentedJSON(raw, 4000)
	runtime.ReadMemStats(&after)
	if err != nil || complete || len(shown) != 4000 {
		t.Fatalf("IndentedJSON = %d bytes, %v, %v; want 4000 bytes, cut", len(shown), complete, err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > uint64(len(raw)) {
		t.Errorf("showing 4000 bytes of a %d-byte value allocated %d bytes", len(raw), allocated)
	}
}

// TestHiddenASCII checks hidden's ASCII shortcut against the Unicode
// classes it stands for.
func TestHiddenASCII(t *testing.T) {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		if got, want := hidden(r), hiddenUnicode(r); got != want {
			t.Errorf("hidden(%U) = %v, want %v", r, got, want)
		}
	}
}

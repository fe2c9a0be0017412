package display

import (
	"strings"
	"testing"
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

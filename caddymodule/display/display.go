// Package display makes text that untrusted parties wrote (tool names
// and arguments from an agent, descriptions from a server, reasons that
// policies build from arguments) safe to show to the person who decides
// on it: what they read is what runs.
//
// Control characters, bidirectional overrides, zero-width and other
// format characters and line separators are shown as visible escapes
// (⟨U+202E⟩) rather than acting on the display: they could reorder the
// text of an argument, hide part of it, fake a new line, or drive a
// terminal. (No library here does this for both terminals and pages;
// golang.org/x/text has the character classes, the standard library's
// unicode the categories used.)
package display

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s for one line of a display: every character that could
// act on the display, line breaks and tabs included, made visible.
func Line(s string) string {
	return visible(s, false)
}

// Block returns s for a block of lines: as Line, but line breaks kept.
func Block(s string) string {
	return visible(s, true)
}

// visible implements Line and Block. Text with nothing to escape, the
// common case, is returned as it is, without a copy.
func visible(s string, keepNewlines bool) string {
	var b *strings.Builder // started at the first character to escape
	for i, r := range s {
		escaped := escape(s, i, r, keepNewlines)
		switch {
		case escaped != "":
			if b == nil {
				b = &strings.Builder{}
				b.WriteString(s[:i])
			}
			b.WriteString(escaped)
		case b != nil:
			b.WriteRune(r)
		}
	}
	if b == nil {
		return s
	}
	return b.String()
}

// escape returns the visible escape that stands for r, at byte i of s, or
// "" when r shows as itself.
func escape(s string, i int, r rune, keepNewlines bool) string {
	switch {
	case r == utf8.RuneError && !validAt(s, i):
		return "⟨invalid UTF-8⟩"
	case r == '\n' && keepNewlines:
		return ""
	case hidden(r):
		return fmt.Sprintf("⟨U+%04X⟩", r)
	}
	return ""
}

// validAt reports whether the U+FFFD at byte i of s was written as such,
// rather than standing for an invalid byte.
func validAt(s string, i int) bool {
	return strings.HasPrefix(s[i:], "\uFFFD")
}

// hidden reports whether r acts on a display, or shows as nothing or as a
// blank that is not a plain space: a control character (C0, C1, DEL), a
// format character (bidirectional marks and overrides, zero-width
// characters, the byte order mark), a line or paragraph separator, any
// other space than U+0020 (no-break, ideographic, ...), a character
// Unicode says to ignore (Hangul fillers, the combining grapheme joiner),
// a variation selector, or the blank braille pattern. Each could make two
// names that differ look alike ("delete_repo" and "delete_repo" with a
// filler), or hide part of a text.
func hidden(r rune) bool {
	if r < utf8.RuneSelf {
		// The classes below hold, of ASCII, the controls alone; looking
		// them up costs a dozen table searches a character.
		return r < 0x20 || r == 0x7f
	}
	return hiddenUnicode(r)
}

// hiddenUnicode is hidden by the Unicode classes alone.
func hiddenUnicode(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Zl, r) || unicode.Is(unicode.Zp, r) ||
		unicode.Is(unicode.White_Space, r) && r != ' ' && r != '\n' ||
		unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) || unicode.Is(unicode.Variation_Selector, r) ||
		r == '\u2800'
}

// Cut returns s cut to at most limit bytes at a character boundary, with
// a note of how many bytes were left out, so that what is not shown is
// never taken for nothing.
func Cut(s string, limit int) string {
	prefix, cut := Prefix(s, limit)
	if !cut {
		return s
	}
	return prefix + fmt.Sprintf("\n⟨%d more bytes not shown⟩", len(s)-len(prefix))
}

// Prefix returns s cut to at most limit bytes at a character boundary,
// and whether anything was cut; the caller says what was left out.
func Prefix(s string, limit int) (prefix string, cut bool) {
	if len(s) <= limit {
		return s, false
	}
	end := limit
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end], true
}

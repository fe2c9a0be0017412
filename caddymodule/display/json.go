package display

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// IndentedJSON returns the JSON value raw indented by two spaces, as
// written (no HTML escaping), with at most limit bytes of it: complete
// reports whether all of it fits. It stops writing at the limit, so that
// what it costs is bounded by the limit, not by the value: indenting
// multiplies a deeply nested value (each line carries its depth in
// spaces), and json.Indent writes all of it before anything can be cut.
func IndentedJSON(raw []byte, limit int) (indented string, complete bool, err error) {
	out := &boundedBuffer{limit: limit}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	enc := jsontext.NewEncoder(out, jsontext.WithIndent("  "), jsontext.EscapeForHTML(false), jsontext.EscapeForJS(false))
	for {
		token, err := dec.ReadToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", false, fmt.Errorf("reading JSON to show: %w", err)
		}
		if err := enc.WriteToken(token); err != nil {
			if errors.Is(err, errBufferFull) {
				shown := out.buf.Bytes()
				if r, size := utf8.DecodeLastRune(shown); r == utf8.RuneError && size == 1 {
					// The limit fell inside a character: it is left out.
					cut := len(shown) - 1
					for cut > 0 && !utf8.RuneStart(shown[cut]) {
						cut--
					}
					shown = shown[:cut]
				}
				return string(shown), false, nil
			}
			return "", false, fmt.Errorf("indenting JSON to show: %w", err)
		}
	}
	return string(bytes.TrimSuffix(out.buf.Bytes(), []byte("\n"))), true, nil
}

// errBufferFull stops an IndentedJSON at its limit.
var errBufferFull = errors.New("limit reached")

// boundedBuffer keeps what is written up to limit bytes, and fails the
// write that passes it.
type boundedBuffer struct {
	buf   bytes.Buffer
	limit int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); len(p) > room {
		b.buf.Write(p[:max(room, 0)])
		return max(room, 0), errBufferFull
	}
	return b.buf.Write(p)
}

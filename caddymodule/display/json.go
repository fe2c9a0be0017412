package display

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
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
	// A character's worth past the limit is kept, for Prefix to find
	// where the character the limit falls in begins.
	out := &boundedBuffer{limit: limit + utf8.UTFMax}
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
		if err := enc.WriteToken(token); errors.Is(err, errBufferFull) {
			break
		} else if err != nil {
			return "", false, fmt.Errorf("indenting JSON to show: %w", err)
		}
	}
	indented, cut := Prefix(strings.TrimSuffix(out.buf.String(), "\n"), limit)
	return indented, !cut, nil
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

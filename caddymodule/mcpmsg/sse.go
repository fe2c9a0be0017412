package mcpmsg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"unicode/utf8"
)

// This file reads and writes Server-Sent Events as the WHATWG HTML Living
// Standard defines them (section 9.2, "Server-sent events"; the reading rules
// are in 9.2.6, "Interpreting an event stream"). The Streamable HTTP
// transport carries JSON-RPC messages in such events.
//
// The gateway reads a stream exactly as a browser would and forwards only
// its own canonical re-encoding, so a client and the gateway cannot read one
// stream two ways: a lone CR, for instance, ends a line for every reader of
// the re-encoded stream, not only for those that follow the specification.

// DefaultMaxEventSize is the event size limit that NewSSEDecoder and
// NewSSEReader apply when given zero or less.
const DefaultMaxEventSize = 4 << 20

// Errors that reading an event stream reports, wrapped with details.
var (
	// ErrEventTooLarge means an event grew past the size limit before the
	// blank line that ends it.
	ErrEventTooLarge = errors.New("event stream: event too large")
	// ErrEventTruncated means the stream ended inside an event. The
	// specification discards such an event; the gateway also reports it,
	// since the upstream cut its stream short.
	ErrEventTruncated = errors.New("event stream: stream ended inside an event")
	// ErrEventInvalidUTF8 means a line is not valid UTF-8. The specification
	// would replace the bad bytes with U+FFFD; the gateway refuses them, as
	// it refuses invalid UTF-8 in JSON.
	ErrEventInvalidUTF8 = errors.New("event stream: invalid UTF-8")
)

// byteOrderMark is U+FEFF in UTF-8; one may open a stream, and is ignored.
const byteOrderMark = "\xEF\xBB\xBF"

// Event is one Server-Sent Event: the fields read between two blank lines.
//
// Besides the events a reader dispatches (those with data), an Event can be a
// block without data that still matters to a client: comments (which keep
// idle connections open), an id (which sets the ID a reconnecting client
// resumes from) or a retry time. Re-encoding it keeps that effect.
type Event struct {
	// Type is the value of the last "event" field; empty means "message".
	// It is kept only when HasData is true, since a reader discards the
	// type of a block without data.
	Type string
	// ID is the value of the last "id" field, when HasID is true. An "id"
	// field containing U+0000 is ignored, as the specification says.
	ID string
	// HasID tells whether the block had an "id" field. An empty ID with
	// HasID true resets the client's last event ID.
	HasID bool
	// Data is the values of the "data" fields joined with "\n".
	Data string
	// HasData tells whether the block had a "data" field, so whether a
	// reader dispatches it as an event (possibly with empty Data).
	HasData bool
	// Retry is the value of the "retry" field when it is made of ASCII
	// digits only; other values are ignored, as the specification says.
	Retry string
	// Comments are the lines that began with a colon, without that colon;
	// a decoder gives an event's comment lines as one, joined with "\n"
	// (a stream of keepalive comments kept as a string each held eight
	// times their size).
	Comments []string
}

// MessageEvent returns the event that carries one JSON-RPC message on an
// MCP event stream: type "message", the message as its data.
func MessageEvent(message []byte) Event {
	return Event{Type: "message", Data: string(message), HasData: true}
}

// Encode returns the event in canonical form; see AppendTo.
func (e Event) Encode() []byte {
	return e.AppendTo(nil)
}

// AppendTo appends the event in canonical form to b and returns the result:
// "event", "id" and "retry" fields, then comments, then one "data" field
// for each line of Data, each line ended by LF, and a blank line at the end.
//
// It writes what a reader would see: a CR, LF or CRLF in Data or in a
// comment starts a new line of the same kind, Type, ID and Retry are cut at
// their first line break, and an ID containing U+0000 or a Retry that is
// not all digits is left out, so that no value can inject a field.
func (e Event) AppendTo(b []byte) []byte {
	if e.HasData && e.Type != "" {
		b = appendField(b, "event", firstLine(e.Type))
	}
	if e.HasID && !strings.ContainsRune(e.ID, 0) {
		b = appendField(b, "id", firstLine(e.ID))
	}
	if retry := firstLine(e.Retry); isDigits(retry) {
		b = appendField(b, "retry", retry)
	}
	for _, c := range e.Comments {
		for line := range lines(c) {
			b = append(b, ':')
			b = append(b, line...)
			b = append(b, '\n')
		}
	}
	if e.HasData {
		for line := range lines(e.Data) {
			b = appendField(b, "data", line)
		}
	}
	return append(b, '\n')
}

// appendField appends the line "name: value", or "name:" for an empty value.
// A reader strips one space after the colon, so a value that itself starts
// with a space survives.
func appendField(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ':')
	if value != "" {
		b = append(b, ' ')
		b = append(b, value...)
	}
	return append(b, '\n')
}

// lines yields the lines of s as an event stream reader splits them, at CRLF,
// LF or CR; s with no line break is one line, even when empty.
func lines(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for {
			i := strings.IndexAny(s, "\r\n")
			if i < 0 {
				yield(s)
				return
			}
			if !yield(s[:i]) {
				return
			}
			if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			s = s[i+1:]
		}
	}
}

// firstLine returns s up to its first line break.
func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// isDigits reports whether s is non-empty and made of ASCII digits only.
func isDigits[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// SSEDecoder reads an event stream that arrives in pieces, as a response body
// does through http.ResponseWriter.Write, without a goroutine. It holds only
// the event in progress. Its zero value is not usable; call NewSSEDecoder.
type SSEDecoder struct {
	maxSize int
	// started is set once the stream is past where a byte order mark may be;
	// bomLen counts the bytes of one matched so far.
	started bool
	bomLen  int
	// afterCR is set when the last line ended with CR, so that an LF opening
	// the next piece belongs to that line end.
	afterCR bool
	// line holds the start of a line whose end has not arrived yet.
	line []byte
	// size counts the bytes of the event in progress, line ends included.
	size  int
	event Event
	data  []byte
	// comments holds the event's comment lines, each ended by "\n".
	comments []byte
	err      error
}

// NewSSEDecoder returns a decoder that refuses events larger than
// maxEventSize bytes (DefaultMaxEventSize when zero or less).
func NewSSEDecoder(maxEventSize int) *SSEDecoder {
	if maxEventSize <= 0 {
		maxEventSize = DefaultMaxEventSize
	}
	return &SSEDecoder{maxSize: maxEventSize}
}

// Feed reads the next piece p of the stream and calls emit, in order, for each
// block that p completes (see Event for which blocks those are). Feed does not
// retain p. It returns the first error from the stream or from emit, and
// returns that error again on every later call.
func (d *SSEDecoder) Feed(p []byte, emit func(Event) error) error {
	if d.err == nil {
		d.err = d.feed(p, emit)
	}
	return d.err
}

// End reports whether the stream, which has ended, ended cleanly: it returns
// ErrEventTruncated when an event was in progress, and the error Feed
// returned, if any.
func (d *SSEDecoder) End() error {
	if d.err == nil && (d.size > 0 || (!d.started && d.bomLen > 0)) {
		d.err = ErrEventTruncated
	}
	return d.err
}

func (d *SSEDecoder) feed(p []byte, emit func(Event) error) error {
	p, err := d.skipByteOrderMark(p)
	if err != nil {
		return err
	}
	for len(p) > 0 {
		if d.afterCR {
			d.afterCR = false
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			return d.appendLine(p)
		}
		if err := d.grow(i + 1); err != nil {
			return err
		}
		d.afterCR = p[i] == '\r'
		line := p[:i]
		if len(d.line) > 0 {
			d.line = append(d.line, line...)
			line = d.line
		}
		p = p[i+1:]
		if err := d.processLine(line, emit); err != nil {
			return err
		}
		d.line = reuse(d.line)
	}
	return nil
}

// skipByteOrderMark drops a byte order mark that opens the stream, which may
// arrive split across pieces.
func (d *SSEDecoder) skipByteOrderMark(p []byte) ([]byte, error) {
	for !d.started && len(p) > 0 {
		if p[0] != byteOrderMark[d.bomLen] {
			d.started = true
			// The bytes matched so far begin a character other than U+FEFF.
			return p, d.appendLine([]byte(byteOrderMark[:d.bomLen]))
		}
		p = p[1:]
		d.bomLen++
		d.started = d.bomLen == len(byteOrderMark)
	}
	return p, nil
}

// appendLine keeps part of a line whose end has not arrived yet.
func (d *SSEDecoder) appendLine(part []byte) error {
	if err := d.grow(len(part)); err != nil {
		return err
	}
	d.line = append(d.line, part...)
	return nil
}

// grow counts n more bytes into the event in progress.
func (d *SSEDecoder) grow(n int) error {
	d.size += n
	if d.size > d.maxSize {
		return fmt.Errorf("%w (more than %d bytes)", ErrEventTooLarge, d.maxSize)
	}
	return nil
}

// processLine interprets one complete line (HTML 9.2.6).
func (d *SSEDecoder) processLine(line []byte, emit func(Event) error) error {
	if !utf8.Valid(line) {
		return fmt.Errorf("%w in line %q", ErrEventInvalidUTF8, line)
	}
	if len(line) == 0 {
		return d.dispatch(emit)
	}
	if line[0] == ':' {
		d.comments = append(d.comments, line[1:]...)
		d.comments = append(d.comments, '\n')
		return nil
	}
	name, value, _ := bytes.Cut(line, []byte{':'})
	value, _ = bytes.CutPrefix(value, []byte{' '})
	switch string(name) {
	case "event":
		d.event.Type = string(value)
	case "data":
		d.data = append(d.data, value...)
		d.data = append(d.data, '\n')
		d.event.HasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			d.event.ID, d.event.HasID = string(value), true
		}
	case "retry":
		if isDigits(value) {
			d.event.Retry = string(value)
		}
	}
	// Other fields are ignored, as the specification says.
	return nil
}

// dispatch ends the event in progress at a blank line, and emits it unless
// it has no effect on a reader.
func (d *SSEDecoder) dispatch(emit func(Event) error) error {
	e := d.event
	d.event, d.size = Event{}, 0
	if len(d.comments) > 0 {
		e.Comments = []string{string(d.comments[:len(d.comments)-1])}
		d.comments = reuse(d.comments)
	}
	if e.HasData {
		e.Data = string(d.data[:len(d.data)-1])
		d.data = reuse(d.data)
	} else {
		e.Type = ""
		if !e.HasID && e.Retry == "" && len(e.Comments) == 0 {
			return nil
		}
	}
	return emit(e)
}

// reuse empties b for the next event, but lets the memory of an unusually
// large one go: a stream may stay open for hours.
func reuse(b []byte) []byte {
	if cap(b) > 64<<10 {
		return nil
	}
	return b[:0]
}

// SSEReader reads the events of a stream from an io.Reader, one at a time,
// returning each as soon as its blank line has been read.
type SSEReader struct {
	r       io.Reader
	decoder *SSEDecoder
	buf     []byte
	queue   []Event
	err     error
}

// NewSSEReader returns a reader of the event stream r that refuses events
// larger than maxEventSize bytes (DefaultMaxEventSize when zero or less).
func NewSSEReader(r io.Reader, maxEventSize int) *SSEReader {
	return &SSEReader{r: r, decoder: NewSSEDecoder(maxEventSize), buf: make([]byte, 4096)}
}

// Next returns the next block of the stream (see Event). At the clean end
// of the stream it returns io.EOF; otherwise an error wrapping
// ErrEventTooLarge, ErrEventTruncated, ErrEventInvalidUTF8 or the error
// from r. It reads from r only while no complete block is at hand.
func (r *SSEReader) Next() (Event, error) {
	for len(r.queue) == 0 {
		if r.err != nil {
			return Event{}, r.err
		}
		r.read()
	}
	e := r.queue[0]
	r.queue[0] = Event{}
	r.queue = r.queue[1:]
	return e, nil
}

// read reads once from r, queueing the blocks it completes and recording
// how the stream ended, if it did.
func (r *SSEReader) read() {
	n, err := r.r.Read(r.buf)
	if ferr := r.decoder.Feed(r.buf[:n], r.enqueue); ferr != nil {
		r.err = ferr
		return
	}
	switch {
	case errors.Is(err, io.EOF):
		r.err = r.decoder.End()
		if r.err == nil {
			r.err = io.EOF
		}
	case err != nil:
		r.err = fmt.Errorf("reading event stream: %w", err)
	}
}

func (r *SSEReader) enqueue(e Event) error {
	r.queue = append(r.queue, e)
	return nil
}

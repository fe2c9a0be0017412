package mcpmsg

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// sseCases are event streams and what reading them gives; the fuzz target
// starts from their inputs.
var sseCases = []struct {
	name    string
	input   string
	maxSize int
	want    []Event
	wantErr error // nil means a clean io.EOF after want
}{
	{name: "empty stream", input: ""},
	{name: "blank lines only", input: "\n\r\n\r"},
	{
		name:  "LF line ends",
		input: "event: message\nid: 7\ndata: {\"a\":1}\n\n",
		want:  []Event{{Type: "message", ID: "7", HasID: true, Data: `{"a":1}`, HasData: true}},
	},
	{
		name:  "CRLF line ends",
		input: "id: 7\r\ndata: x\r\n\r\n",
		want:  []Event{{ID: "7", HasID: true, Data: "x", HasData: true}},
	},
	{
		name:  "lone CR line ends",
		input: "data: a\rdata: b\r\r",
		want:  []Event{{Data: "a\nb", HasData: true}},
	},
	{
		// A reader that splits on LF only would see one data line
		// "x\revent: injected"; the specification's reader sees a second
		// field, and so does the gateway.
		name:  "lone CR ends a field that an LF-only reader would miss",
		input: "data: x\revent: injected\n\n",
		want:  []Event{{Type: "injected", Data: "x", HasData: true}},
	},
	{
		name:  "mixed line ends",
		input: "data: a\r\ndata: b\rdata: c\n\r\n",
		want:  []Event{{Data: "a\nb\nc", HasData: true}},
	},
	{
		name:  "CR then LF is one line end, not a blank line",
		input: "data: a\r\n\r\ndata: b\n\n",
		want:  []Event{{Data: "a", HasData: true}, {Data: "b", HasData: true}},
	},
	{
		name:  "one optional space stripped",
		input: "data:x\ndata: y\ndata:  z\n\n",
		want:  []Event{{Data: "x\ny\n z", HasData: true}},
	},
	{
		name:  "field without colon has an empty value",
		input: "data\n\n",
		want:  []Event{{HasData: true}},
	},
	{
		name:  "trailing empty data line is kept",
		input: "data: a\ndata:\n\n",
		want:  []Event{{Data: "a\n", HasData: true}},
	},
	{
		name:  "priming event with id and empty data",
		input: "id: s1-0\ndata: \n\n",
		want:  []Event{{ID: "s1-0", HasID: true, HasData: true}},
	},
	{
		name:  "keepalive comment",
		input: ": ping\n\n",
		want:  []Event{{Comments: []string{" ping"}}},
	},
	{
		name:  "comments beside data",
		input: ":a\ndata: x\n:\n\n",
		want:  []Event{{Data: "x", HasData: true, Comments: []string{"a\n"}}},
	},
	{
		name:  "retry alone",
		input: "retry: 3000\n\n",
		want:  []Event{{Retry: "3000"}},
	},
	{
		name:  "retry that is not digits is ignored",
		input: "retry: 3s\n\nretry:\ndata: x\n\n",
		want:  []Event{{Data: "x", HasData: true}},
	},
	{
		name:  "id alone resets the last event id",
		input: "id\n\n",
		want:  []Event{{HasID: true}},
	},
	{
		name:  "id with NUL is ignored",
		input: "id: a\x00b\ndata: x\n\n",
		want:  []Event{{Data: "x", HasData: true}},
	},
	{
		name:  "type without data is not dispatched",
		input: "event: ping\n\n",
	},
	{
		name:  "type of a block without data is dropped",
		input: "event: ping\n: keep\n\n",
		want:  []Event{{Comments: []string{" keep"}}},
	},
	{
		name:  "last field wins",
		input: "event: a\nid: 1\nevent: b\nid: 2\ndata: x\n\n",
		want:  []Event{{Type: "b", ID: "2", HasID: true, Data: "x", HasData: true}},
	},
	{
		name:  "unknown fields are ignored",
		input: "foo: bar\ndata : x\nData: y\ndata: z\n\n",
		want:  []Event{{Data: "z", HasData: true}},
	},
	{
		name:  "leading byte order mark",
		input: "\uFEFFdata: x\n\n",
		want:  []Event{{Data: "x", HasData: true}},
	},
	{
		name:  "second byte order mark is part of the field name",
		input: "\uFEFF\uFEFFdata: x\n\ndata: y\n\n",
		want:  []Event{{Data: "y", HasData: true}},
	},
	{
		name:  "character that starts like a byte order mark",
		input: "\uFEC0: x\ndata: y\n\n",
		want:  []Event{{Data: "y", HasData: true}},
	},
	{
		name:  "several events",
		input: "data: 1\n\n: ping\n\ndata: 2\n\n",
		want: []Event{
			{Data: "1", HasData: true},
			{Comments: []string{" ping"}},
			{Data: "2", HasData: true},
		},
	},
	{
		name:    "event too large",
		input:   "data: 1\n\ndata: 0123456789\n\n",
		maxSize: 16,
		want:    []Event{{Data: "1", HasData: true}},
		wantErr: ErrEventTooLarge,
	},
	{
		name:    "line too large without a line end",
		input:   "data: 0123456789abcdef",
		maxSize: 16,
		wantErr: ErrEventTooLarge,
	},
	{
		name:    "many small lines add up",
		input:   ":\n:\n:\n:\n:\n:\n:\n:\n:\n\n",
		maxSize: 16,
		wantErr: ErrEventTooLarge,
	},
	{
		name:    "event exactly at the limit",
		input:   "data: 0123456\n\n",
		maxSize: 15,
		want:    []Event{{Data: "0123456", HasData: true}},
	},
	{
		name:    "stream ends without the blank line",
		input:   "data: 1\n\ndata: 2\n",
		want:    []Event{{Data: "1", HasData: true}},
		wantErr: ErrEventTruncated,
	},
	{
		name:    "stream ends inside a line",
		input:   "data: 2",
		wantErr: ErrEventTruncated,
	},
	{
		name:    "stream ends inside a byte order mark",
		input:   "\xEF\xBB",
		wantErr: ErrEventTruncated,
	},
	{
		name:    "invalid UTF-8",
		input:   "data: \xff\n\n",
		wantErr: ErrEventInvalidUTF8,
	},
	{
		name:    "broken byte order mark",
		input:   "\xEF\xBBdata: x\n\n",
		wantErr: ErrEventInvalidUTF8,
	},
}

func TestSSEReader(t *testing.T) {
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte at a time", iotest.OneByteReader},
	}
	for _, tt := range sseCases {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				got, err := readEvents(NewSSEReader(rd.wrap(strings.NewReader(tt.input)), tt.maxSize))
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("events of %q:\n got %#v\nwant %#v", tt.input, got, tt.want)
				}
				wantErr := tt.wantErr
				if wantErr == nil {
					wantErr = io.EOF
				}
				if !errors.Is(err, wantErr) {
					t.Errorf("reading %q ended with %v, want %v", tt.input, err, wantErr)
				}
				for _, e := range got {
					checkEventRoundTrip(t, e)
				}
			})
		}
	}
}

// readEvents reads events until an error, which it returns with them.
func readEvents(r *SSEReader) ([]Event, error) {
	var events []Event
	for {
		e, err := r.Next()
		if err != nil {
			return events, err
		}
		events = append(events, e)
	}
}

// checkEventRoundTrip fails t unless e's encoding reads back as e alone.
func checkEventRoundTrip(t *testing.T, e Event) {
	t.Helper()
	encoded := e.Encode()
	got, err := readEvents(NewSSEReader(bytes.NewReader(encoded), 0))
	if !errors.Is(err, io.EOF) || len(got) != 1 || !reflect.DeepEqual(got[0], e) {
		t.Errorf("encoding %#v as %q reads back as %#v, %v", e, encoded, got, err)
	}
}

// TestSSEReaderStreams checks that Next returns an event as soon as its blank
// line has arrived, without waiting for more of the stream.
func TestSSEReaderStreams(t *testing.T) {
	pr, pw := io.Pipe()
	proceed := make(chan struct{})
	go func() {
		_, _ = io.WriteString(pw, "data: 1\n\n")
		<-proceed
		_, _ = io.WriteString(pw, "data: 2\r\r")
		pw.Close()
	}()
	r := NewSSEReader(pr, 0)
	first := make(chan Event)
	go func() {
		e, _ := r.Next()
		first <- e
	}()
	select {
	case e := <-first:
		if e.Data != "1" {
			t.Fatalf("first event has data %q, want %q", e.Data, "1")
		}
	case <-time.After(5 * time.Second):
		close(proceed)
		t.Fatal("Next did not return the first event before the stream went on")
	}
	close(proceed)
	if e, err := r.Next(); err != nil || e.Data != "2" {
		t.Errorf("second Next = %#v, %v; want data %q", e, err, "2")
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("Next at the end = %v, want io.EOF", err)
	}
}

func TestSSEDecoderStopsAtEmitError(t *testing.T) {
	stop := errors.New("stop")
	d := NewSSEDecoder(0)
	var seen []string
	emit := func(e Event) error {
		seen = append(seen, e.Data)
		return stop
	}
	if err := d.Feed([]byte("data: 1\n\ndata: 2\n\n"), emit); !errors.Is(err, stop) {
		t.Errorf("Feed = %v, want the emit error", err)
	}
	if err := d.Feed([]byte("data: 3\n\n"), emit); !errors.Is(err, stop) {
		t.Errorf("Feed after an error = %v, want the same error again", err)
	}
	if err := d.End(); !errors.Is(err, stop) {
		t.Errorf("End after an error = %v, want the same error again", err)
	}
	if !reflect.DeepEqual(seen, []string{"1"}) {
		t.Errorf("emit saw %q, want only the first event", seen)
	}
}

func TestEventEncode(t *testing.T) {
	tests := []struct {
		name  string
		event Event
		want  string
	}{
		{
			name:  "all fields in canonical order",
			event: Event{Comments: []string{" c"}, Data: "x", HasData: true, Retry: "10", ID: "7", HasID: true, Type: "message"},
			want:  "event: message\nid: 7\nretry: 10\n: c\ndata: x\n\n",
		},
		{
			name:  "one data field per line",
			event: Event{Data: "a\nb\n", HasData: true},
			want:  "data: a\ndata: b\ndata:\n\n",
		},
		{
			name:  "CR and CRLF in data start new lines",
			event: Event{Data: "a\rb\r\nc", HasData: true},
			want:  "data: a\ndata: b\ndata: c\n\n",
		},
		{
			name:  "empty data",
			event: Event{HasData: true},
			want:  "data:\n\n",
		},
		{
			name:  "leading space of a value survives",
			event: Event{Data: " x", HasData: true},
			want:  "data:  x\n\n",
		},
		{
			name:  "comment only",
			event: Event{Comments: []string{" ping"}},
			want:  ": ping\n\n",
		},
		{
			name:  "comment with a line break",
			event: Event{Comments: []string{"a\rdata: b"}},
			want:  ":a\n:data: b\n\n",
		},
		{
			name:  "empty id",
			event: Event{HasID: true},
			want:  "id:\n\n",
		},
		{
			name:  "type without data is left out",
			event: Event{Type: "message", ID: "1", HasID: true},
			want:  "id: 1\n\n",
		},
		{
			name:  "single-line fields are cut at a line break",
			event: Event{Type: "a\nid: evil", ID: "b\rdata: evil", HasID: true, Retry: "1\n2", Data: "x", HasData: true},
			want:  "event: a\nid: b\nretry: 1\ndata: x\n\n",
		},
		{
			name:  "values a reader would ignore are left out",
			event: Event{ID: "a\x00", HasID: true, Retry: "soon", Data: "x", HasData: true},
			want:  "data: x\n\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.event.Encode()); got != tt.want {
				t.Errorf("Encode = %q, want %q", got, tt.want)
			}
			if got := string(tt.event.AppendTo([]byte("x"))); got != "x"+tt.want {
				t.Errorf("AppendTo = %q, want %q", got, "x"+tt.want)
			}
		})
	}
}

// FuzzSSEReader checks that reading never panics, that it does not depend
// on how the stream is split into reads, and that every event it returns
// re-encodes to bytes that read back as the same event.
func FuzzSSEReader(f *testing.F) {
	for _, tc := range sseCases {
		f.Add([]byte(tc.input))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxSize = 1 << 10
		whole, wholeErr := readEvents(NewSSEReader(bytes.NewReader(data), maxSize))
		split, splitErr := readEvents(NewSSEReader(iotest.OneByteReader(bytes.NewReader(data)), maxSize))
		if !reflect.DeepEqual(whole, split) || errorKind(wholeErr) != errorKind(splitErr) {
			t.Fatalf("%q reads as %#v, %v whole but as %#v, %v one byte at a time",
				data, whole, wholeErr, split, splitErr)
		}
		if errorKind(wholeErr) == nil {
			t.Fatalf("reading %q ended with unexpected error %v", data, wholeErr)
		}
		for _, e := range whole {
			checkEventRoundTrip(t, e)
		}
	})
}

// errorKind returns which of the errors an SSEReader ends with err is, or nil.
func errorKind(err error) error {
	for _, kind := range []error{io.EOF, ErrEventTooLarge, ErrEventTruncated, ErrEventInvalidUTF8} {
		if errors.Is(err, kind) {
			return kind
		}
	}
	return nil
}

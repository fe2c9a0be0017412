package mcpmsg

import (
	"bytes"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// allocatedBy returns the bytes f allocates: the runtime's count, exact
// and unaffected by the machine's speed.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestCheckCostLinear checks that what the checks of a message cost grows
// with its size, not with its size times its depth or times the names
// they look for: a walk that copied the path to every level it visited
// allocated the square of a deep message's path (3 s and 420 MB for a
// 4 MB tools/call 60 levels deep), and the schema checks made the list of
// keywords anew for every schema and compared every member with each.
func TestCheckCostLinear(t *testing.T) {
	const size = 1 << 20
	chain := func(depth int, bottom string) []byte {
		name := strings.Repeat("a", size/depth)
		return []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":` +
			strings.Repeat(`{"`+name+`":`, depth) + bottom + strings.Repeat("}", depth) + `}}`)
	}
	parse := func(body []byte) func() {
		return func() { _, _ = Parse(body, Limits{}) }
	}
	t.Run("a tools/call whose deepest name folds apart", func(t *testing.T) {
		body, control := chain(60, `{"\u017f":1}`), chain(60, `{"s":1}`)
		if _, err := Parse(body, Limits{}); err == nil || !strings.Contains(err.Error(), "folds to") {
			t.Fatalf("Parse: %v, want the name refused", err)
		}
		// The parse of the same shape, whose names need no walk, is the
		// measure: the walk that finds the name may cost as much again.
		if got, want := allocatedBy(parse(body)), 2*allocatedBy(parse(control)); got > want {
			t.Errorf("parsing allocated %d bytes, want at most %d (twice what the same shape without the name costs)", got, want)
		}
	})

	elicitation := func(t *testing.T, schema string) *Message {
		body, err := Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{"mode":"form","message":"hi","requestedSchema":`+schema+`}}`), Limits{})
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		return &body.Messages[0]
	}
	var properties strings.Builder
	for i := range size / 12 {
		if i > 0 {
			properties.WriteByte(',')
		}
		properties.WriteString(`"p` + strconv.Itoa(i) + `":{}`)
	}
	for _, tt := range []struct {
		name      string
		schema    string
		wantError string
	}{
		{"a requested schema 56 levels deep",
			strings.Repeat(`{"properties":{"`+strings.Repeat("p", size/28)+`":`, 28) + `{"Default":1}` + strings.Repeat("}}", 28), `"Default"`},
		{"a requested schema of many schemas", `{"anyOf":[` + strings.Repeat(`{},`, size/5) + `{}]}`, ""},
		{"a requested schema of many properties", `{"properties":{` + properties.String() + `}}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var m *Message
			parsed := allocatedBy(func() { m = elicitation(t, tt.schema) })
			var err *Error
			allocated := allocatedBy(func() { err = CheckServerRequest(m.Method, m.Params) })
			if (err == nil) != (tt.wantError == "") || err != nil && !strings.Contains(err.Message, tt.wantError) {
				t.Fatalf("CheckServerRequest: %v, want an error containing %q", err, tt.wantError)
			}
			// The check may allocate what the parse did (what sorting each
			// object's names takes is less), no more.
			if allocated > parsed {
				t.Errorf("checking a %d-byte schema allocated %d bytes, want at most the %d its parse did", len(tt.schema), allocated, parsed)
			}
		})
	}
}

// TestCommentLinesCost: an event of many comment lines (keepalives) costs
// about its size: each line kept as a string of its own held eight times
// the bytes it came in (a 4 MB event of ":\n" allocated 189 MB).
func TestCommentLinesCost(t *testing.T) {
	stream := []byte(strings.Repeat(":\n", 1<<20) + "data: x\n\n")
	d := NewSSEDecoder(4 << 20)
	var events []Event
	allocated := allocatedBy(func() {
		for piece := range slices.Chunk(stream, 32<<10) {
			if err := d.Feed(piece, func(e Event) error { events = append(events, e); return nil }); err != nil {
				t.Fatal(err)
			}
		}
	})
	if limit := uint64(4 * len(stream)); allocated > limit {
		t.Errorf("decoding a %d-byte event of comment lines allocated %d bytes, want at most %d", len(stream), allocated, limit)
	}
	if len(events) != 1 || events[0].Data != "x" || len(events[0].Comments) != 1 || len(events[0].Comments[0]) != 1<<20-1 {
		t.Fatalf("decoded %d events; want one, its data and its comment lines", len(events))
	}
	if again := events[0].AppendTo(nil); !bytes.Equal(again, stream) {
		t.Errorf("the event re-encoded is not the event decoded")
	}
}
